// Hyper-parameters of a LLaMA-family decoder (HF LlamaForCausalLM / Qwen2ForCausalLM config.json
// fields) and the canonical parameter layout shared by the model, model I/O, PEFT and checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/arena.h"

namespace tributary {

struct RopeScaling {
  // "" (none) or "llama3" (Llama 3.1 frequency-dependent scaling).
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";  // or "Qwen2ForCausalLM"
  std::string model_type = "llama";               // or "qwen2"
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 172;
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 2;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // config.json gave RoPE as transformers 5's `rope_parameters` object (rope_theta, rope_type and the
  // scaling fields in one place) rather than top-level rope_theta / rope_scaling; written back alike.
  bool rope_in_parameters = false;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2: true)
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  int64_t HeadDim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // InvalidArgument naming the field when the numbers do not fit together.
  Status Validate() const;
};

// The parameter table in HF named_parameters() order:
//   model.embed_tokens.weight [V, H]
//   per layer i: model.layers.i.input_layernorm.weight [H]
//                model.layers.i.self_attn.{q,k,v,o}_proj.weight (+ q/k/v bias when attention_bias)
//                model.layers.i.post_attention_layernorm.weight [H]
//                model.layers.i.mlp.{gate,up,down}_proj.weight
//   model.norm.weight [H]
//   lm_head.weight [V, H]   (absent when tie_word_embeddings)
// Exact order (matching HF): embed; per layer: self_attn.q,(q bias),k,(k bias),v,(v bias),o,
// mlp.gate,up,down, input_layernorm, post_attention_layernorm; then norm, lm_head.
std::shared_ptr<TensorTable> BuildLlamaTensorTable(const LlamaConfig& config);

}  // namespace tributary
