// `tributary demo --base DIR --data DIR`: the demo on a given base model and task directory (the
// learning-quality study's, docs/quality.md) instead of the random model and the embedded word tasks.
// The task directory holds client-NN.jsonl (one client's questions) and heldout.jsonl, instruction
// JSONL (Alpaca or Dolly); the base is an HF model directory with any tokenizer tributary reads.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace tributary::cli {

struct DemoTask {
  std::string base_dir;
  std::string heldout;                       // the task's heldout.jsonl
  std::map<int, std::string> worker_data;    // worker index -> its concatenated client files
  std::map<int, std::string> worker_origin;  // worker index -> "client-00.jsonl + client-04.jsonl"
  std::map<int, int64_t> worker_examples;    // worker index -> examples
  int64_t seq_len = 0;                       // the longest tokenized example, rounded up to 16
};

// NotFound naming the flag and path unless base_dir holds config.json and data_dir heldout.jsonl.
Status CheckDemoTaskDirs(const std::string& base_dir, const std::string& data_dir);

// Checks both directories (NotFound / InvalidArgument naming the path: exit 4) and writes, under
// out_dir/data, worker I's dataset: client files I and I + workers concatenated (those that exist). A
// worker without a client file is left out of the map; none at all is an error.
Result<DemoTask> PrepareDemoTask(const std::string& base_dir, const std::string& data_dir, const std::string& out_dir,
                                 int workers);

// The Ferret job spec for the task: workers read dataset `demo`, the coordinator `demo-heldout`.
std::string DemoTaskJobYaml(const DemoTask& task, int rounds, int workers);

// For the first two held-out questions: the question, the reference, the base's and the tuned model's
// greedy answers (the instruction template jobs train with); then Rouge-L and exact match of both on up
// to 64 held-out questions.
Status PrintBeforeAfter(const std::string& base_dir, const std::string& tuned_dir, const std::string& heldout);

}  // namespace tributary::cli
