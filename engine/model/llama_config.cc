#include "engine/model/llama_config.h"

namespace tributary {

Status LlamaConfig::Validate() const {
  auto bad = [](const char* field, const std::string& why) {
    return Status::InvalidArgument(std::string("model config field '") + field + "': " + why);
  };
  if (vocab_size <= 0) return bad("vocab_size", "must be > 0");
  if (hidden_size <= 0) return bad("hidden_size", "must be > 0");
  if (intermediate_size <= 0) return bad("intermediate_size", "must be > 0");
  if (num_hidden_layers <= 0) return bad("num_hidden_layers", "must be > 0");
  if (num_attention_heads <= 0) return bad("num_attention_heads", "must be > 0");
  if (num_key_value_heads <= 0 || num_attention_heads % num_key_value_heads != 0)
    return bad("num_key_value_heads", "must be > 0 and divide num_attention_heads");
  if (head_dim == 0 && hidden_size % num_attention_heads != 0)
    return bad("hidden_size", "must be divisible by num_attention_heads when head_dim is not set");
  if (HeadDim() % 2 != 0) return bad("head_dim", "must be even for rotary embeddings");
  if (rms_norm_eps <= 0) return bad("rms_norm_eps", "must be > 0");
  if (rope_theta <= 0) return bad("rope_theta", "must be > 0");
  if (!rope_scaling.type.empty() && rope_scaling.type != "llama3")
    return bad("rope_scaling.rope_type", "unsupported '" + rope_scaling.type + "' (supported: llama3)");
  return Status::OK();
}

std::shared_ptr<TensorTable> BuildLlamaTensorTable(const LlamaConfig& c) {
  auto table = std::make_shared<TensorTable>();
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t q_out = c.num_attention_heads * D, kv_out = c.num_key_value_heads * D;
  table->Add("model.embed_tokens.weight", {V, H});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    table->Add(p + "self_attn.q_proj.weight", {q_out, H});
    if (c.attention_bias) table->Add(p + "self_attn.q_proj.bias", {q_out});
    table->Add(p + "self_attn.k_proj.weight", {kv_out, H});
    if (c.attention_bias) table->Add(p + "self_attn.k_proj.bias", {kv_out});
    table->Add(p + "self_attn.v_proj.weight", {kv_out, H});
    if (c.attention_bias) table->Add(p + "self_attn.v_proj.bias", {kv_out});
    table->Add(p + "self_attn.o_proj.weight", {H, q_out});
    table->Add(p + "mlp.gate_proj.weight", {I, H});
    table->Add(p + "mlp.up_proj.weight", {I, H});
    table->Add(p + "mlp.down_proj.weight", {H, I});
    table->Add(p + "input_layernorm.weight", {H});
    table->Add(p + "post_attention_layernorm.weight", {H});
  }
  table->Add("model.norm.weight", {H});
  if (!c.tie_word_embeddings) table->Add("lm_head.weight", {V, H});
  return table;
}

}  // namespace tributary
