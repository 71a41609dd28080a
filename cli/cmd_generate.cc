// `tributary generate` (try a model: stream its answer to a prompt) and `tributary eval` (score a model
// on a dataset: loss, perplexity, Rouge-L, exact match). Both take an HF model directory and,
// optionally, a PEFT LoRA adapter directory on top of it.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/json_envelope.h"
#include "cli/model_refs.h"
#include "engine/io/model_dir.h"
#include "engine/model/generate.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "peft/lora.h"

namespace tributary::cli {
namespace {

struct ModelFlags {
  std::string model;    // HF directory or job:ID[@ROUND]
  std::string adapter;  // PEFT LoRA directory ("" = none)
  std::string store;    // a stopped coordinator's data directory, for job: references
};

struct GenerateFlags : ModelFlags {
  std::string prompt;
  std::string prompt_file;
  bool template_prompt = false;
  int64_t max_new_tokens = 128;
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

struct EvalFlags : ModelFlags {
  std::string data_file;
  std::string data_format = "auto";
  int64_t seq_len = 256;
  int64_t batch = 4;
  int64_t generations = 32;
  int64_t max_new_tokens = 48;
  std::string format = "text";
};

// A model ready to run: weights, tokenizer and (when given) adapters attached.
struct ReadyModel {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LoraAdapters> adapters;
};

Result<ReadyModel> LoadReadyModel(const ModelFlags& f) {
  ModelRefs refs(f.store);  // a job's round is exported to a temporary directory, removed after loading
  TRIB_ASSIGN_OR_RETURN(const std::string dir, refs.Resolve(f.model));
  TRIB_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(dir));
  ReadyModel ready;
  TRIB_ASSIGN_OR_RETURN(ready.tokenizer, LoadTokenizer(dir));
  if (ready.tokenizer->vocab_size() > loaded.config.vocab_size)
    return Status::InvalidArgument(f.model + ": tokenizer has " + std::to_string(ready.tokenizer->vocab_size()) +
                                   " tokens but config.json vocab_size is " + std::to_string(loaded.config.vocab_size));
  TRIB_ASSIGN_OR_RETURN(ready.model, LlamaModel::Create(loaded.config));
  ready.model->params().CopyFrom(loaded.params);
  if (!f.adapter.empty()) {
    TRIB_ASSIGN_OR_RETURN(ready.adapters, LoraAdapters::Load(f.adapter, loaded.config));
    ready.adapters->Attach(*ready.model);
  }
  return ready;
}

// Prints the text of `ids` beyond the `printed` bytes already shown; returns false (stop) once a stop
// string appears, printing only what precedes it. Until `final`, the last (longest stop - 1) bytes are
// held back: they may be the start of a stop string that the next token completes.
bool StreamText(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, const std::vector<std::string>& stop,
                bool final, size_t* printed) {
  const Result<std::string> text = tokenizer.Decode(ids);
  if (!text.ok()) return true;
  size_t end = text->size(), hold = 0;
  bool stopped = false;
  for (const std::string& s : stop) {
    const size_t at = s.empty() ? std::string::npos : text->find(s);
    if (at != std::string::npos && at < end) end = at, stopped = true;
    if (!s.empty()) hold = std::max(hold, s.size() - 1);
  }
  if (!stopped && !final) end = end > hold ? end - hold : 0;
  if (end > *printed) {
    std::fwrite(text->data() + *printed, 1, end - *printed, stdout);
    std::fflush(stdout);
    *printed = end;
  }
  return !stopped;
}

Status RunGenerate(const GenerateFlags& f) {
  if (f.prompt.empty() == f.prompt_file.empty())
    return Status::InvalidArgument("give one of --prompt or --prompt-file");
  std::string prompt = f.prompt;
  if (!f.prompt_file.empty()) {
    TRIB_ASSIGN_OR_RETURN(prompt, ReadFileToString(f.prompt_file));
  }
  if (f.template_prompt) {
    Example example;
    example.instruction = prompt;
    prompt = FormatPrompt(PromptTemplate{}, example);
  }
  TRIB_ASSIGN_OR_RETURN(ReadyModel ready, LoadReadyModel(f));
  std::vector<int32_t> ids = ready.tokenizer->Encode(prompt, /*add_special_tokens=*/true);
  GenerateOptions options;
  options.max_new_tokens = f.max_new_tokens;
  options.temperature = static_cast<float>(f.temperature);
  options.top_p = static_cast<float>(f.top_p);
  options.top_k = f.top_k;
  options.seed = f.seed;
  options.eos_token_id = ready.tokenizer->eos_id() >= 0 ? ready.tokenizer->eos_id() : -2;
  std::vector<int32_t> generated;
  size_t printed = 0;
  bool stopped = false;
  options.on_token = [&](int32_t token) {
    if (token == options.eos_token_id) return false;
    generated.push_back(token);
    stopped = !StreamText(*ready.tokenizer, generated, f.stop, /*final=*/false, &printed);
    return !stopped;
  };
  TRIB_RETURN_IF_ERROR(Generate(*ready.model, ids, options).status());
  if (!stopped) StreamText(*ready.tokenizer, generated, f.stop, /*final=*/true, &printed);
  std::printf("\n");
  return Status::OK();
}

Status RunEval(const EvalFlags& f) {
  TRIB_ASSIGN_OR_RETURN(ReadyModel ready, LoadReadyModel(f));
  const LlamaConfig& config = ready.model->config();
  if (f.seq_len > config.max_position_embeddings)
    return Status::InvalidArgument("--seq-len " + std::to_string(f.seq_len) + " exceeds the model's " +
                                   "max_position_embeddings " + std::to_string(config.max_position_embeddings));
  TRIB_ASSIGN_OR_RETURN(DatasetFormat format, ParseDatasetFormat(f.data_format));
  TRIB_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(f.data_file, format));
  if (examples.empty()) return Status::InvalidArgument(f.data_file + ": no examples");
  const TokenizeOptions tok_options;
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> tokenized,
                        TokenizeExamples(examples, *ready.tokenizer, tok_options));
  const int32_t pad = ready.tokenizer->pad_id() >= 0 ? ready.tokenizer->pad_id() : 0;
  const std::vector<SequenceRow> rows = BuildRows(tokenized, f.seq_len, /*pack=*/false, pad);
  TRIB_ASSIGN_OR_RETURN(LossEval loss, EvaluateLoss(*ready.model, rows, f.batch));
  GenerateOptions gen;
  gen.max_new_tokens = std::min<int64_t>(f.max_new_tokens, config.max_position_embeddings - 1);
  TRIB_ASSIGN_OR_RETURN(GenerationEval generation,
                        EvaluateGeneration(*ready.model, *ready.tokenizer, examples, tok_options, f.generations, gen));
  const nlohmann::json summary = {{"model", f.model},
                                  {"adapter", f.adapter},
                                  {"data", f.data_file},
                                  {"examples", examples.size()},
                                  {"loss", loss.mean_loss},
                                  {"perplexity", loss.perplexity},
                                  {"tokens", loss.tokens},
                                  {"rouge_l", generation.rouge_l},
                                  {"exact_match", generation.exact_match},
                                  {"generated_examples", generation.examples}};
  if (f.format == "json") {
    PrintJsonOk("eval", summary);
    return Status::OK();
  }
  std::printf("loss %.4f (perplexity %.2f) over %lld tokens of %zu examples\n", loss.mean_loss, loss.perplexity,
              static_cast<long long>(loss.tokens), examples.size());
  if (generation.examples > 0)
    std::printf("generation: Rouge-L %.4f, exact match %.4f over %lld examples (greedy, %lld new tokens at most)\n",
                generation.rouge_l, generation.exact_match, static_cast<long long>(generation.examples),
                static_cast<long long>(gen.max_new_tokens));
  return Status::OK();
}

void AddModelOptions(CLI::App* cmd, ModelFlags* f) {
  cmd->add_option("--model", f->model, "HF model directory, or job:ID[@ROUND] with --store")->required();
  cmd->add_option("--adapter", f->adapter, "PEFT LoRA adapter directory to apply on top of --model");
  cmd->add_option("--store", f->store, "A stopped coordinator's data directory, for --model job:ID[@ROUND]");
}

}  // namespace

void RegisterGenerateCommands(CLI::App& app, CommandRegistry& registry) {
  auto g = std::make_shared<GenerateFlags>();
  CLI::App* generate = app.add_subcommand("generate", "Stream a model's continuation of a prompt");
  AddModelOptions(generate, g.get());
  generate->add_option("--prompt", g->prompt, "Prompt text");
  generate->add_option("--prompt-file", g->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  generate->add_flag("--template", g->template_prompt, "Wrap the prompt in the instruction template jobs train with");
  generate->add_option("--max-new-tokens", g->max_new_tokens, "Tokens to generate at most")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  generate->add_option("--temperature", g->temperature, "0: greedy; > 0: sampling")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  generate->add_option("--top-p", g->top_p, "Nucleus sampling mass in (0, 1]")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  generate->add_option("--top-k", g->top_k, "Sample among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  generate->add_option("--seed", g->seed, "Sampling seed")->capture_default_str();
  generate->add_option("--stop", g->stop, "Stop before this string (repeatable)");
  registry.handlers["generate"] = [g](CommandContext&) -> Status { return RunGenerate(*g); };

  auto e = std::make_shared<EvalFlags>();
  CLI::App* eval = app.add_subcommand("eval", "Score a model on a dataset: loss, perplexity, Rouge-L, exact match");
  AddModelOptions(eval, e.get());
  eval->add_option("--data", e->data_file, "JSONL instruction set (Alpaca or Dolly) or plain text")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--data-format", e->data_format, "auto|alpaca|dolly|text_lines|text")->capture_default_str();
  eval->add_option("--seq-len", e->seq_len, "Tokens per row")->check(CLI::PositiveNumber)->capture_default_str();
  eval->add_option("--batch", e->batch, "Rows per batch")->check(CLI::PositiveNumber)->capture_default_str();
  eval->add_option("--generations", e->generations, "Instruction examples to answer for Rouge-L / exact match")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  eval->add_option("--max-new-tokens", e->max_new_tokens, "Answer length limit")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  AddFormatOption(eval, e->format, "text|json summary on stdout (json: one envelope object)");
  registry.handlers["eval"] = WithJsonErrors("eval", std::shared_ptr<const std::string>(e, &e->format),
                                             [e](CommandContext&) -> Status { return RunEval(*e); });
}

}  // namespace tributary::cli
