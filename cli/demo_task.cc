#include "cli/demo_task.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "base/file_util.h"
#include "cli/demo_data.h"
#include "engine/io/model_dir.h"
#include "engine/model/generate.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"

namespace tributary::cli {
namespace {

namespace fs = std::filesystem;

// Answers are short (a capital, an element, a word): 32 tokens show whether a model stops.
constexpr int64_t kMaxNewTokens = 32;
constexpr int64_t kScoredQuestions = 64;

std::string ClientFileName(int index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "client-%02d.jsonl", index);
  return buf;
}

struct ReadyModel {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

Result<ReadyModel> LoadReady(const std::string& dir) {
  TRIB_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(dir));
  ReadyModel ready;
  TRIB_ASSIGN_OR_RETURN(ready.tokenizer, LoadTokenizer(dir));
  TRIB_ASSIGN_OR_RETURN(ready.model, LlamaModel::Create(loaded.config));
  ready.model->params().CopyFrom(loaded.params);
  return ready;
}

// The greedy answer to `ex` as EvaluateGeneration builds it (BOS, the training template).
Result<std::string> Answer(ReadyModel& m, const Example& ex) {
  std::vector<int32_t> prompt;
  if (m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  const std::vector<int32_t> body = m.tokenizer->Encode(FormatPrompt(PromptTemplate{}, ex), false);
  prompt.insert(prompt.end(), body.begin(), body.end());
  GenerateOptions options;
  options.max_new_tokens =
      std::min<int64_t>(kMaxNewTokens, m.model->config().max_position_embeddings - static_cast<int64_t>(prompt.size()));
  if (options.max_new_tokens < 1) return std::string("(the question fills the context)");
  options.eos_token_id = m.tokenizer->eos_id() >= 0 ? m.tokenizer->eos_id() : -2;
  TRIB_ASSIGN_OR_RETURN(std::vector<int32_t> answer, Generate(*m.model, prompt, options));
  return m.tokenizer->Decode(answer, /*skip_special_tokens=*/true);
}

// One line: newlines and control bytes escaped, so a rambling answer stays on its line.
std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Status CheckDemoTaskDirs(const std::string& base_dir, const std::string& data_dir) {
  if (!fs::is_directory(base_dir)) return Status::NotFound("--base " + base_dir + ": not a directory");
  if (!fs::is_regular_file(fs::path(base_dir) / "config.json"))
    return Status::NotFound("--base " + base_dir + ": no config.json (not an HF model directory)");
  if (!fs::is_directory(data_dir)) return Status::NotFound("--data " + data_dir + ": not a directory");
  if (!fs::is_regular_file(fs::path(data_dir) / "heldout.jsonl"))
    return Status::NotFound("--data " + data_dir + ": no heldout.jsonl (not a task directory)");
  return Status::OK();
}

Result<DemoTask> PrepareDemoTask(const std::string& base_dir, const std::string& data_dir, const std::string& out_dir,
                                 int workers) {
  TRIB_RETURN_IF_ERROR(CheckDemoTaskDirs(base_dir, data_dir));
  TRIB_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig((fs::path(base_dir) / "config.json").string()));
  Result<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(base_dir);
  if (!tokenizer.ok()) return Status::InvalidArgument("--base " + base_dir + ": " + tokenizer.status().message());

  DemoTask task;
  task.base_dir = base_dir;
  task.heldout = (fs::path(data_dir) / "heldout.jsonl").string();
  TRIB_ASSIGN_OR_RETURN(std::vector<Example> heldout, LoadExamples(task.heldout));
  std::vector<Example> all = heldout;
  std::error_code ec;
  fs::create_directories(fs::path(out_dir) / "data", ec);
  // Worker i holds every client file whose number is i modulo the workers (i and i + 4 of the study's 8).
  int max_index = -1;
  for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
    int index = -1;
    const std::string name = entry.path().filename().string();
    if (std::sscanf(name.c_str(), "client-%d.jsonl", &index) == 1 && ClientFileName(index) == name)
      max_index = std::max(max_index, index);
  }
  for (int w = 0; w < workers; ++w) {
    std::vector<Example> shard;
    std::string origin;
    for (int i = w; i <= max_index; i += workers) {
      const fs::path path = fs::path(data_dir) / ClientFileName(i);
      if (!fs::is_regular_file(path)) continue;
      TRIB_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(path.string()));
      shard.insert(shard.end(), examples.begin(), examples.end());
      origin += (origin.empty() ? "" : " + ") + ClientFileName(i);
    }
    if (shard.empty()) continue;
    const int slot = static_cast<int>(task.worker_data.size());
    const std::string path = (fs::path(out_dir) / "data" / ("worker-" + std::to_string(slot + 1) + ".jsonl")).string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, ExamplesToDollyJsonl(shard)));
    task.worker_data[slot] = path;
    task.worker_origin[slot] = origin;
    task.worker_examples[slot] = static_cast<int64_t>(shard.size());
    all.insert(all.end(), shard.begin(), shard.end());
  }
  if (task.worker_data.empty()) return Status::NotFound("--data " + data_dir + ": no client-NN.jsonl files");

  // Rows as long as the longest question + answer (in this tokenizer's tokens), not the context:
  // training packs rows and held-out rows are padded, so a tight length is what makes rounds fast.
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> tokenized, TokenizeExamples(all, **tokenizer, {}));
  int64_t longest = 1;
  for (const TokenizedExample& t : tokenized) longest = std::max<int64_t>(longest, t.tokens.size());
  task.seq_len = std::min<int64_t>((longest + 15) / 16 * 16, config.max_position_embeddings);
  return task;
}

// Measured on the study's base (scripts/quality/pretrain, 11M parameters, BPE 4096): SGD at lr 0.05,
// 4 steps of 8 questions, K = 64 takes the held-out loss 6.61 -> 5.74 in 10 rounds and 5.54 in 20; at
// lr 0.1 it reached only 5.94 in 10 (with K this small the projection's noise grows with the step). K and
// the 4 steps keep a round (training, projection, reconstruction on 5 replicas, the held-out loss of
// 242 questions) at about 20 s on 2 cores shared with other work; quieter cores do better.
std::string DemoTaskJobYaml(const DemoTask& task, int rounds, int workers) {
  return "# The demo's Ferret job on a task directory (tributary demo --base --data). Every key: docs/job-spec.md\n"
         "name: demo ferret on the study task\n"
         "model:\n"
         "  base: " +
         nlohmann::json(task.base_dir).dump() +
         "\n"
         "data:\n"
         "  dataset: demo\n"
         "  seq_len: " +
         std::to_string(task.seq_len) +
         "\n"
         "federation:\n"
         "  mode: ferret\n"
         "  rounds: " +
         std::to_string(rounds) +
         "\n"
         "  client_fraction: 1.0\n"
         "  min_clients: " +
         std::to_string(workers) +
         "\n"
         "  quorum: 0.75\n"
         "  deadline_floor_s: 30\n"
         "  deadline_ceiling_s: 300\n"
         "  seed: 7\n"
         "train:\n"
         "  local_steps: 4\n"
         "  batch_size: 8\n"
         "  lr: 0.05\n"
         "  optimizer: sgd\n"
         "  max_grad_norm: 1.0\n"
         "  server_lr: 1.0\n"
         "ferret:\n"
         "  k: 64\n"
         "eval:\n"
         "  dataset: demo-heldout\n"
         "  every: 1\n"
         "checkpoint:\n"
         "  snapshot_every: 4\n";
}

Status PrintBeforeAfter(const std::string& base_dir, const std::string& tuned_dir, const std::string& heldout) {
  TRIB_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(heldout));
  std::vector<Example> questions;
  for (const Example& ex : examples)
    if (!ex.is_text) questions.push_back(ex);
  TRIB_ASSIGN_OR_RETURN(ReadyModel base, LoadReady(base_dir));
  TRIB_ASSIGN_OR_RETURN(ReadyModel tuned, LoadReady(tuned_dir));
  std::printf("\nbefore/after (greedy, the training template, %lld new tokens at most):\n",
              static_cast<long long>(kMaxNewTokens));
  for (size_t i = 0; i < std::min<size_t>(2, questions.size()); ++i) {
    const Example& ex = questions[i];
    TRIB_ASSIGN_OR_RETURN(std::string before, Answer(base, ex));
    TRIB_ASSIGN_OR_RETURN(std::string after, Answer(tuned, ex));
    std::printf("  question:  %s%s%s\n", ex.instruction.c_str(), ex.input.empty() ? "" : " / ", ex.input.c_str());
    std::printf("  reference: %s\n", Quote(ex.output).c_str());
    std::printf("  before:    %s\n", Quote(before).c_str());
    std::printf("  after:     %s\n\n", Quote(after).c_str());
    std::fflush(stdout);
  }
  GenerateOptions gen;
  gen.max_new_tokens = std::min<int64_t>(kMaxNewTokens, base.model->config().max_position_embeddings - 1);
  TRIB_ASSIGN_OR_RETURN(GenerationEval b,
                        EvaluateGeneration(*base.model, *base.tokenizer, questions, {}, kScoredQuestions, gen));
  TRIB_ASSIGN_OR_RETURN(GenerationEval t,
                        EvaluateGeneration(*tuned.model, *tuned.tokenizer, questions, {}, kScoredQuestions, gen));
  std::printf("held-out answers (%lld questions): Rouge-L %.4f -> %.4f, exact match %.4f -> %.4f (base -> tuned)\n",
              static_cast<long long>(t.examples), b.rouge_l, t.rouge_l, b.exact_match, t.exact_match);
  return Status::OK();
}

}  // namespace tributary::cli
