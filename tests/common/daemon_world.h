// What the daemon tests share (the coordinator against scripted workers, the worker against a scripted
// coordinator): a tiny base model saved as an HF directory, a jsonl word dataset, and the rows and
// replicas an in-process oracle trains with, built as a worker builds them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "tests/common/temp_dir.h"

namespace tributary::testutil {

struct DaemonWorld {
  // The model's context is seq_len; rows are packed to seq_len with the byte tokenizer.
  explicit DaemonWorld(int64_t seq_len);

  // A replica of the base model.
  std::unique_ptr<LlamaModel> Replica() const;

  TempDir dir;
  std::string model_dir;  // dir/model: config.json, weights, tokenizer
  std::string data_path;  // dir/letters.jsonl: 18 instruction examples over six words
  LlamaConfig config;
  std::unique_ptr<LlamaModel> base;
  std::vector<SequenceRow> rows;
  int64_t num_examples = 0;
};

}  // namespace tributary::testutil
