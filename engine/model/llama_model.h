// A decoder-only LLaMA transformer (HF LlamaForCausalLM; Qwen2ForCausalLM when attention_bias) with an
// explicit fp32 forward and backward pass over flat arenas, computed through a Backend.
//
// Memory. Everything the kernels touch is memory of the backend's buffer type (engine/buffer.h):
// parameters and gradients are two Arenas with the BuildLlamaTensorTable layout; the caller's token
// ids, targets and loss mask are copied in through the backend at each Forward, next to the row
// positions; the RoPE tables are built on the host once and copied in. Activations
// live in ONE flat buffer sized for (B, T) and reallocated only when a call needs more. With
// N = B*T tokens, H hidden, Q = n_heads*head_dim, K = n_kv_heads*head_dim, I intermediate, V vocab,
// L layers, NH heads, the buffer holds (in floats):
//   per layer (kept for backward):  N*(4H + 2Q + 2K + 2I + 2) + B*NH*T*T
//     residual input x, ln1 output, q and k (after RoPE), v, attention output (pre o_proj),
//     residual after attention, ln2 output, gate and up (pre-activation), two rstd rows,
//     and the softmax probabilities [B, NH, T, T]: attention stores the probabilities instead of
//     recomputing them (at T <= a few hundred they cost about as much as the MLP activations).
//     silu(gate)*up is recomputed in backward rather than stored.
//   final:   N*(2H + V + 3)   (last residual, final-norm output, logits, logsumexp, per-token loss)
//   scratch: N*(2H + I + Q + 2K) + B*NH*T*T  (shared by all layers: projection output / residual
//            gradient, normed-input gradient, MLP hidden, dq, dk, dv, score gradient)
// ActivationFloats() computes exactly this. Backward consumes the buffer in place (logits become
// their gradient, probabilities become score gradients, gate/up become their gradients), so it can run
// once per Forward.
//
// LoRA hook: every projection (q, k, v, o, gate, up, down, lm_head) runs through LinearForward and
// LinearBackward, the one place where an adapter adds its low-rank term.
//
// Tensor lookup: the element offsets of every layer's tensors are resolved once in the constructor, so
// LayerTensors and MakeLinear on the hot path are pointer arithmetic, not name lookups.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/backend.h"
#include "engine/model/linear_adapter.h"  // LoRA hook
#include "engine/model/llama_config.h"

namespace tributary {

// Rotary inverse frequencies (head_dim/2 of them) in fp64, including llama3 rope scaling.
std::vector<double> RopeInvFreq(const LlamaConfig& config);
// cos/sin tables [num_positions, head_dim/2] of position * inv_freq (angles in fp64, stored fp32).
void BuildRopeTables(const LlamaConfig& config, int64_t num_positions, std::vector<float>* cos,
                     std::vector<float>* sin);

// Which projection a linear layer is (for adapters and naming).
enum class ProjKind { kQ, kK, kV, kO, kGate, kUp, kDown, kLmHead };

// One linear layer y = x W^T + b, W [out, in]. Gradients may be null for a frozen layer.
struct Linear {
  ProjKind kind = ProjKind::kQ;
  int64_t layer = -1;  // -1 for lm_head
  int64_t in = 0, out = 0;
  const float* weight = nullptr;
  const float* bias = nullptr;  // null when absent
  float* weight_grad = nullptr;
  float* bias_grad = nullptr;
};

// Pointers of one decoder layer's tensors inside an arena (params or grads).
struct LlamaLayerTensors {
  float* input_norm = nullptr;
  float* q = nullptr;
  float* q_bias = nullptr;
  float* k = nullptr;
  float* k_bias = nullptr;
  float* v = nullptr;
  float* v_bias = nullptr;
  float* o = nullptr;
  float* post_norm = nullptr;
  float* gate = nullptr;
  float* up = nullptr;
  float* down = nullptr;
};

class LlamaModel {
 public:
  // Validates the config; parameters start at zero (call InitRandom or load weights into params()).
  // backend null: a CpuBackend. params() and grads() live in the backend's memory, so host-only
  // loaders (engine/io/model_dir.h) need a backend whose buffer type is host memory.
  static Result<std::unique_ptr<LlamaModel>> Create(const LlamaConfig& config,
                                                    std::shared_ptr<Backend> backend = nullptr);

  const LlamaConfig& config() const { return config_; }
  Backend& backend() { return *backend_; }
  Arena& params() { return params_; }
  const Arena& params() const { return params_; }
  Arena& grads() { return grads_; }
  const Arena& grads() const { return grads_; }

  // HF-style init: linears and embeddings ~ N(0, stddev), norm weights 1, biases 0. Deterministic.
  void InitRandom(uint64_t seed, float stddev = 0.02f);

  // tokens, targets [B, T] row-major HOST arrays (copied to the backend); loss_mask [B, T] (null: every
  // token counts). loss_out receives
  // the mean cross-entropy over counted tokens (0 when none count). targets null: logits only (no
  // loss, no backward). Errors: out-of-range ids, T > max_position_embeddings, B or T < 1.
  Status Forward(const int32_t* tokens, const uint8_t* loss_mask, const int32_t* targets, int64_t B, int64_t T,
                 float* loss_out);
  Status ForwardLogits(const int32_t* tokens, int64_t B, int64_t T) {
    return Forward(tokens, nullptr, nullptr, B, T, nullptr);
  }
  // Accumulates d(loss_scale * loss)/d(params) into grads() for the last Forward with targets.
  // Token-weighted accumulation over micro-batches: loss_scale = count_i / sum(count).
  Status Backward(float loss_scale = 1.0f);
  void ZeroGrad() { grads_.Zero(); }

  // LoRA hook: an adapter adds its term inside LinearForward / LinearBackward (null: none). Not owned;
  // it must outlive its use by this model.
  void SetLinearAdapter(LinearAdapter* adapter) { adapter_ = adapter; }
  LinearAdapter* linear_adapter() const { return adapter_; }
  // LoRA hook: false freezes the projection weights and biases (Backward computes no gradient for
  // them); embedding and norm gradients are still accumulated into grads() and must be ignored.
  void SetBaseTrainable(bool trainable) { base_trainable_ = trainable; }
  bool base_trainable() const { return base_trainable_; }

  // [B*T, V] logits of the last Forward (valid until Backward, which overwrites them), in the
  // backend's memory: host code may read them directly only when backend().buffer_type().IsHost();
  // ReadLogits copies them to the host on any backend.
  const float* Logits() const { return logits_; }
  // Copies logits rows [first_row, first_row + rows) of the last Forward into host_dst [rows, V].
  void ReadLogits(int64_t first_row, int64_t rows, float* host_dst) const;
  // Tokens counted in the last loss.
  int64_t LastLossTokens() const { return loss_tokens_; }

  static int64_t ActivationFloats(const LlamaConfig& config, int64_t B, int64_t T);
  int64_t ActivationBytes() const { return act_capacity_ * static_cast<int64_t>(sizeof(float)); }

  // Per-layer tensors in an arena with this model's table (offsets precomputed; absent biases null).
  LlamaLayerTensors LayerTensors(Arena& arena, int64_t layer) const;
  Linear MakeLinear(ProjKind kind, int64_t layer, bool with_grads);
  // y[rows, out] = beta * y + x W^T (+ bias).
  void LinearForward(const Linear& lin, const float* x, int64_t rows, float* y, float beta = 0.0f);
  // weight/bias grads += from (x, dy) FIRST, then dx = dx_beta * dx + dy W, so dx may alias x.
  // dx null: no input gradient.
  void LinearBackward(const Linear& lin, const float* x, const float* dy, int64_t rows, float* dx,
                      float dx_beta = 0.0f);

  // RoPE tables covering positions [0, num_positions) (grown on demand), in the backend's memory.
  void EnsureRope(int64_t num_positions);
  const float* rope_cos() const { return rope_.as<float>(); }
  const float* rope_sin() const { return rope_.as<float>() + rope_positions_ * (config_.HeadDim() / 2); }

  // Input validation shared with generation: ids in [0, vocab), T within max_position_embeddings.
  Status ValidateTokens(const int32_t* tokens, int64_t n, const char* what) const;

 private:
  LlamaModel(const LlamaConfig& config, std::shared_ptr<Backend> backend);
  void EnsureActivations(int64_t B, int64_t T);
  // Copies the host inputs of a Forward into inputs_ (positions only when the shape changed).
  void CopyInputs(const int32_t* tokens, const int32_t* targets, const uint8_t* loss_mask, int64_t B, int64_t T);

  struct LayerActs {
    float *x, *rstd1, *ln1, *q, *k, *v, *probs, *attn, *xmid, *rstd2, *ln2, *gate, *up;
  };
  // Element offsets of one layer's tensors in an arena with table_ (-1: absent).
  struct LayerOffsets {
    int64_t input_norm, q, q_bias, k, k_bias, v, v_bias, o, post_norm, gate, up, down;
  };

  LlamaConfig config_;
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<TensorTable> table_;
  Arena params_;
  Arena grads_;
  size_t lm_head_index_ = 0;  // the embedding when tied
  size_t norm_index_ = 0;     // model.norm.weight
  std::vector<LayerOffsets> layer_offsets_;

  // Activation buffer and its carve-up for the current (B, T).
  Buffer act_;
  int64_t act_capacity_ = 0;
  int64_t B_ = 0, T_ = 0;
  std::vector<LayerActs> layer_acts_;
  float *x_final_ = nullptr, *rstd_final_ = nullptr, *ln_final_ = nullptr, *logits_ = nullptr;
  float *lse_ = nullptr, *row_loss_ = nullptr;
  float *scratch_h_ = nullptr, *scratch_dln_ = nullptr, *scratch_mlp_ = nullptr, *scratch_dq_ = nullptr;
  float *scratch_dk_ = nullptr, *scratch_dv_ = nullptr, *scratch_dprobs_ = nullptr;

  // Backend copies of the last Forward's inputs: tokens, positions, targets [B*T] and the mask.
  Buffer inputs_;
  int32_t *tokens_ = nullptr, *positions_ = nullptr, *targets_ = nullptr;
  uint8_t* mask_ = nullptr;
  int64_t positions_shape_[2] = {0, 0};  // (B, T) that positions_ holds
  std::vector<int32_t> host_targets_;    // staging: masked targets replaced by 0
  bool has_mask_ = false;
  bool backward_ready_ = false;
  int64_t loss_tokens_ = 0;

  Buffer rope_;  // cos [rope_positions_, D/2] then sin [rope_positions_, D/2]
  int64_t rope_positions_ = 0;

  LinearAdapter* adapter_ = nullptr;  // LoRA hook
  bool base_trainable_ = true;        // LoRA hook
};

}  // namespace tributary
