// Fine-tuning datasets: JSONL instruction sets (Alpaca, Dolly) and plain text, prompt templating,
// tokenisation with a response-only loss mask, packing / truncation into fixed-length rows, batches,
// deterministic shuffling and splits (train / held-out, non-IID across clients).
//
// Every random choice uses std::mt19937_64 (whose output sequence is fixed by the C++ standard) with
// hand-written Fisher-Yates / uniform / gamma sampling, so results are identical on every platform.
// Errors name the file and line: "data.jsonl:17: missing field 'output'".
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/text/tokenizer.h"

namespace tributary {

enum class DatasetFormat {
  kAuto,       // JSONL: Dolly when the first record has "response", Alpaca when it has "output";
               // other files: plain text, one document per line
  kAlpaca,     // {"instruction", "input" (optional), "output"}
  kDolly,      // {"instruction", "context" (optional), "response", "category" (optional)}
  kTextLines,  // one document per non-empty line
  kTextWhole,  // the whole file is one document
};

// Parses "auto", "alpaca", "dolly", "text_lines", "text" (whole file).
Result<DatasetFormat> ParseDatasetFormat(const std::string& name);

struct Example {
  // Instruction data (Dolly "context" -> input, "response" -> output).
  std::string instruction;
  std::string input;
  std::string output;
  std::string category;
  // Plain text documents (loss on every token).
  std::string text;
  bool is_text = false;
  std::string source;  // "data.jsonl:17" for error messages
};

Result<std::vector<Example>> LoadExamples(const std::string& path, DatasetFormat format = DatasetFormat::kAuto);
// Same from in-memory contents; `source` names the data in errors.
Result<std::vector<Example>> ParseExamples(const std::string& contents, const std::string& source,
                                           DatasetFormat format);

// Prompt template with {instruction} and {input} placeholders; `without_input` is used when the
// example's input is empty. The response follows the prompt directly.
struct PromptTemplate {
  std::string with_input = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
  std::string without_input = "### Instruction:\n{instruction}\n\n### Response:\n";
};
std::string FormatPrompt(const PromptTemplate& tmpl, const Example& example);

struct TokenizeOptions {
  PromptTemplate prompt_template;
  bool add_bos = true;  // prepend the tokenizer's BOS (when it has one)
  bool add_eos = true;  // append EOS after the response / document (trained on)
};

// tokens[i] and loss_mask[i]: 1 when token i is a prediction target (response tokens, their EOS,
// every token of a plain document except a leading BOS).
struct TokenizedExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss_mask;
};

// Prompt and response are encoded separately (so the mask boundary is exact) and concatenated.
// InvalidArgument when add_eos is set and the tokenizer has no EOS.
Result<std::vector<TokenizedExample>> TokenizeExamples(const std::vector<Example>& examples, const Tokenizer& tokenizer,
                                                       const TokenizeOptions& options);

// A row of max_seq_len + 1 tokens: inputs are tokens[0, T), targets tokens[1, T].
struct SequenceRow {
  std::vector<int32_t> tokens;     // T + 1 (padded with pad_id)
  std::vector<uint8_t> loss_mask;  // T + 1, same indexing as tokens
};

// pack=false: one example per row, truncated to T + 1 tokens. pack=true: whole examples are placed
// greedily, in order, into rows while they fit (an example longer than a row is truncated into a row
// of its own); examples in one row attend to each other (no document masking). Padding positions have
// mask 0 and token pad_id (any valid id: tokenizer.pad_id(), or e.g. EOS when it has none).
std::vector<SequenceRow> BuildRows(const std::vector<TokenizedExample>& examples, int64_t max_seq_len, bool pack,
                                   int32_t pad_id);

// A [B, T] batch, row-major. targets[b][t] = row tokens[t + 1]; loss_mask[b][t] = row mask[t + 1]
// (whether that target counts). Padded targets hold pad_id with mask 0.
struct Batch {
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;
  std::vector<int32_t> targets;
  std::vector<uint8_t> loss_mask;
  int64_t NumTargets() const;  // sum of loss_mask
};

// Rows [first, first + batch_size) (wrapping around the end). rows must be non-empty and equally long.
Batch MakeBatch(const std::vector<SequenceRow>& rows, int64_t first, int64_t batch_size);

// Uniform integer in [0, bound) by rejection (no modulo bias; bound > 0).
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound);
// Fisher-Yates permutation of [0, n) for `seed`.
std::vector<size_t> ShuffledIndices(size_t n, uint64_t seed);
// Examples in the order of ShuffledIndices(examples.size(), seed).
std::vector<Example> ShuffleExamples(const std::vector<Example>& examples, uint64_t seed);

struct TrainHeldOut {
  std::vector<Example> train;
  std::vector<Example> held_out;
};
// Shuffles with `seed` and holds out round(fraction * n) examples (fraction in [0, 1]).
Result<TrainHeldOut> SplitTrainHeldOut(const std::vector<Example>& examples, double held_out_fraction, uint64_t seed);

enum class NonIIDMode {
  kContiguous,         // client c gets examples [c n / N, (c + 1) n / N)
  kDirichletCategory,  // per category, client shares ~ Dirichlet(alpha) (FedML partition_idx_labeldir)
};

struct NonIIDOptions {
  NonIIDMode mode = NonIIDMode::kDirichletCategory;
  double alpha = 0.5;
  uint64_t seed = 0;
  // Dirichlet mode: redraw until every client has at least this many examples (as in FedML).
  int64_t min_per_client = 1;
  int max_attempts = 1000;
};

// Partitions examples across num_clients clients; every example goes to exactly one client.
Result<std::vector<std::vector<Example>>> SplitNonIID(const std::vector<Example>& examples, int64_t num_clients,
                                                      const NonIIDOptions& options);

// Gamma(shape, 1) sample (Marsaglia-Tsang), platform-independent given the generator.
double SampleGamma(std::mt19937_64& rng, double shape);

}  // namespace tributary
