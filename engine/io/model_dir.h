// HF model directories: config.json + model.safetensors (or shards with model.safetensors.index.json)
// + tokenizer files, read into / written from a parameter Arena laid out by BuildLlamaTensorTable.
//
// Loading policy (strict, so a wrong checkpoint is never half-loaded silently):
//   - every tensor of the table must be present exactly once with the table's shape (any stored dtype
//     F32/F16/BF16/F64 is converted to fp32);
//   - tensors the table does not know are errors, except buffers HF itself ignores
//     ("*.rotary_emb.inv_freq") and "lm_head.weight" in a tied model, which are skipped;
//   - error messages name the file and the tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/io/safetensors.h"
#include "engine/model/llama_config.h"

namespace tributary {

class Tokenizer;

// Parses HF config.json text. Accepts LlamaForCausalLM / MistralForCausalLM (model_type llama or
// mistral) and Qwen2ForCausalLM (model_type qwen2, which implies q/k/v biases). `source` names the
// file in errors ("config.json: field 'hidden_size': ...").
Result<LlamaConfig> ParseLlamaConfigJson(const std::string& text, const std::string& source);
// Reads and parses a config.json file.
Result<LlamaConfig> ReadLlamaConfig(const std::string& config_json_path);
// The HF config.json text for `config` (everything transformers needs to instantiate the model).
// `torch_dtype` is the stored weight dtype ("float32", "bfloat16" or "float16").
std::string LlamaConfigToJson(const LlamaConfig& config, const std::string& torch_dtype = "float32");

struct LoadedModel {
  LlamaConfig config;
  Arena params;
  std::vector<std::string> skipped_tensors;                // ignored on purpose (inv_freq buffers, tied lm_head)
  SafetensorsDType stored_dtype = SafetensorsDType::kF32;  // what its weights were stored in: save it alike
};

// Reads dir/config.json and the weights into a fresh arena.
Result<LoadedModel> LoadModelDir(const std::string& dir);
// Reads the weights of `dir` into `params` (whose table must be BuildLlamaTensorTable(config)'s layout).
// `skipped` (optional) receives the names of ignored tensors; `stored_dtype` (optional) the dtype the
// weights were stored in (F32 when they mix dtypes or are F64). Host arenas only (checked): for a model
// on another backend, load into a host Arena and CopyFrom it.
Status LoadModelWeights(const std::string& dir, const LlamaConfig& config, Arena* params,
                        std::vector<std::string>* skipped = nullptr, SafetensorsDType* stored_dtype = nullptr);

struct SaveModelOptions {
  // Weights are split into model-0000i-of-0000n.safetensors + index.json when they exceed this size.
  int64_t max_shard_bytes = 5ll << 30;
  // Stored dtype: F32 (default, bit-exact), BF16 or F16.
  SafetensorsDType dtype = SafetensorsDType::kF32;
  // When set, its tokenizer.json / tokenizer_config.json are written into the directory.
  const Tokenizer* tokenizer = nullptr;
  // When non-empty (and `tokenizer` is null), tokenizer files found in this directory are copied.
  std::string copy_tokenizer_from;
  // When non-empty, generation_config.json (eos ids, sampling defaults) is copied from this directory
  // if it has one (copy_tokenizer_from copies it too).
  std::string copy_generation_config_from;
};

// Creates `dir` if needed and writes config.json + weights (+ tokenizer files) in HF layout, each file
// atomically. A tied model stores no lm_head.weight (as HF does). params: a host arena (checked).
Status SaveModelDir(const std::string& dir, const LlamaConfig& config, const Arena& params,
                    const SaveModelOptions& options = {});

}  // namespace tributary
