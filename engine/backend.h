// The compute boundary: the memory a backend computes on and every numerical kernel the model's
// forward and backward pass, LoRA (peft/lora.cc) and the optimizers (engine/train/optimizer.cc) need.
// Model, generation, LoRA, optimizer and trainer code call only this interface and allocate only from
// buffer_type(), so a CUDA backend plugs in as engine/cuda/ by implementing it over device pointers.
//
// Memory (engine/buffer.h holds BufferType and the owning Buffer):
//  - every pointer a kernel takes is memory of buffer_type() (arenas, activations, token ids, RoPE
//    tables, the KV cache, LoRA scratch), except where a parameter is named host_*;
//  - kernels and the memory operations below run in issue order; they may run asynchronously except
//    those that return a value to the host (CrossEntropyForward, SumSquares) and CopyBackendToHost,
//    which return with the result complete. Synchronize() waits for everything issued.
//
// Conventions for every kernel:
//  - all matrices are row-major fp32; a "row" of an activation is one token;
//  - "accumulate" outputs are added to (+=), never overwritten; other outputs are overwritten;
//  - sizes are element counts; nothing here fails on valid sizes (the model validates inputs);
//  - arena kernels take the arena's TensorTable and touch only tensor elements, never the alignment
//    padding between tensors, so padding stays zero whatever it is fed (tests/engine/optimizer_test.cc
//    poisons gradient padding to check this);
//  - results are bitwise reproducible for a given thread count; element-wise kernels and SumSquares
//    are bitwise independent of it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/hash.h"  // SplitMix64, the dropout mask's counter hash (host and device)
#include "base/tensor_table.h"
#include "engine/buffer.h"

namespace tributary {

// One torch.optim.AdamW step (decoupled weight decay, bias correction) at 1-based step `step`.
struct AdamWStepArgs {
  double lr = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  int64_t step = 1;
};

// One torch.optim.SGD step. first_step: the momentum buffer is initialised to d_p (torch's first step).
struct SgdStepArgs {
  double lr = 0;
  double weight_decay = 0;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  bool first_step = false;
};

// SumSquares reduces per slice of this many arena elements and adds the slices in order, which makes
// the global gradient norm independent of the thread count.
inline constexpr int64_t kSumSquaresSlice = int64_t{1} << 13;

// Shape of one causal grouped-query attention call.
//   q    [B*Tq rows, q_row_stride]   heads packed per row: head h at columns [h*D, (h+1)*D)
//   k, v [B, Tk rows, kv_row_stride] batch b starts at b*kv_batch_stride; kv head g at [g*D, (g+1)*D)
// Query i of a batch sits at absolute position (Tk - Tq) + i and sees keys 0..(Tk - Tq) + i, so
// training uses Tq == Tk and an incremental decode with a KV cache uses Tq == 1.
struct AttentionShape {
  int64_t batch = 0;
  int64_t q_len = 0;   // Tq
  int64_t kv_len = 0;  // Tk
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // divides n_heads; query head h uses kv head h / (n_heads / n_kv_heads)
  int64_t head_dim = 0;
  int64_t q_row_stride = 0;     // n_heads * head_dim for packed rows
  int64_t kv_row_stride = 0;    // n_kv_heads * head_dim for packed rows
  int64_t kv_batch_stride = 0;  // kv_len * kv_row_stride for packed batches; cache capacity * row stride
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* Name() const = 0;

  // ---- Memory. Allocate from buffer_type(); these move bytes in issue order with the kernels.
  virtual const BufferType& buffer_type() const = 0;
  virtual void Memset(void* dst, int value, size_t bytes) = 0;
  // host_src may be reused as soon as the call returns.
  virtual void CopyHostToBackend(void* dst, const void* host_src, size_t bytes) = 0;
  // Complete when the call returns (waits for the kernels that write src).
  virtual void CopyBackendToHost(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void CopyBackendToBackend(void* dst, const void* src, size_t bytes) = 0;
  // Waits for every kernel and copy issued so far (before host code reads host-accessible memory).
  virtual void Synchronize() = 0;

  // ---- Model kernels.

  // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. op(X) = X^T when trans_x; lda/ldb/ldc are
  // the row strides of A, B, C as stored. beta == 0 ignores the old contents of C (may be NaN).
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) = 0;

  // out[i, :] = table[tokens[i], :]   (table [vocab, dim])
  virtual void EmbeddingForward(const int32_t* tokens, int64_t rows, const float* table, int64_t dim, float* out) = 0;
  // dtable[tokens[i], :] += dout[i, :]   (accumulate; repeated tokens sum)
  virtual void EmbeddingBackward(const int32_t* tokens, int64_t rows, const float* dout, int64_t dim,
                                 float* dtable) = 0;

  // out = x * rstd * weight with rstd[r] = 1 / sqrt(mean(x[r]^2) + eps) (HF LlamaRMSNorm in fp32).
  virtual void RmsNormForward(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
                              float* rstd) = 0;
  // dx += d(out)/dx^T dout (accumulate, so a residual gradient can be passed as dx), dweight += ...
  virtual void RmsNormBackward(const float* dout, const float* x, const float* weight, const float* rstd, int64_t rows,
                               int64_t dim, float* dx, float* dweight) = 0;

  // Rotary embedding in place (HF rotate_half convention: pairs (j, j + D/2)) on x [rows, n_heads*D]
  // with row stride row_stride; row r is at position positions[r]. cos/sin: [max_pos, D/2] tables.
  virtual void RopeForward(float* x, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                           const int32_t* positions, const float* cos, const float* sin) = 0;
  // The transpose rotation, in place on the gradient.
  virtual void RopeBackward(float* dx, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                            const int32_t* positions, const float* cos, const float* sin) = 0;

  // out [B*Tq, n_heads*D] (packed) = softmax(q k^T / sqrt(D) + causal mask) v.
  // probs [B, n_heads, Tq, Tk] receives the softmax probabilities (zeros above the diagonal); the
  // backward pass reuses them instead of recomputing.
  virtual void AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                                float* out) = 0;
  // Training shape only (Tq == Tk, packed strides). dq/dk/dv are overwritten (same layouts as q/k/v);
  // dq may alias dout. probs is consumed: it is overwritten with the score gradient; dprobs_scratch
  // has probs' size.
  virtual void AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                                 const float* dout, float* dprobs_scratch, float* dq, float* dk, float* dv) = 0;

  // h = silu(gate) * up, elementwise over n (h may alias gate or up).
  virtual void SwiGluForward(const float* gate, const float* up, int64_t n, float* h) = 0;
  // dgate, dup from dh; dgate may alias gate and dup may alias up (computed in place).
  virtual void SwiGluBackward(const float* dh, const float* gate, const float* up, int64_t n, float* dgate,
                              float* dup) = 0;

  // out = a + b, elementwise over n (out may alias a or b).
  virtual void Add(const float* a, const float* b, int64_t n, float* out) = 0;

  // y[r, :] += bias for each of rows rows (y [rows, cols]).
  virtual void BiasForward(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
  // dbias += sum over rows of dy (accumulate).
  virtual void BiasBackward(const float* dy, int64_t rows, int64_t cols, float* dbias) = 0;

  // Per row: lse[r] = logsumexp(logits[r]); loss[r] = mask[r] ? lse[r] - logits[r, targets[r]] : 0.
  // mask may be null (all rows count). Returns the sum of loss over counted rows in fp64.
  virtual double CrossEntropyForward(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t rows,
                                     int64_t vocab, float* lse, float* loss) = 0;
  // dlogits[r] = scale * mask[r] * (softmax(logits[r]) - onehot(targets[r])); dlogits may alias
  // logits (the model turns its logits buffer into the gradient in place). scale is dloss / count.
  virtual void CrossEntropyBackward(const float* logits, const float* lse, const int32_t* targets, const uint8_t* mask,
                                    int64_t rows, int64_t vocab, float scale, float* dlogits) = 0;

  // ---- LoRA kernels (GEMMs go through Gemm; adding the input gradient through Add).
  // out[i] = keep(i) ? x[i] * float(1 / (1 - p)) : 0 over n elements (out may alias x), with
  // keep(i) = (SplitMix64(stream + i) >> 11) * 2^-53 >= p: PEFT's inverted dropout with a counter mask.
  virtual void Dropout(const float* x, int64_t n, uint64_t stream, double p, float* out) = 0;

  // ---- Arena kernels over the tensor elements of `layout` (padding untouched), in fp64 intermediates.
  // AdamW: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2 (stored fp32, then re-read); params =
  // params (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  virtual void AdamWStep(const TensorTable& layout, const AdamWStepArgs& args, float* params, const float* grads,
                         float* m, float* v) = 0;
  // SGD: d_p = g + wd p; with momentum (buf non-null) buf = first ? d_p : mu buf + (1 - dampening) d_p,
  // d_p = nesterov ? d_p + mu buf : buf; params -= lr d_p.
  virtual void SgdStep(const TensorTable& layout, const SgdStepArgs& args, float* params, const float* grads,
                       float* momentum_buf) = 0;
  // Sum of x^2 in fp64: per slice of kSumSquaresSlice arena elements, slices added in index order.
  virtual double SumSquares(const TensorTable& layout, const float* x) = 0;
  // x *= factor (fp32 multiply).
  virtual void Scale(const TensorTable& layout, float* x, float factor) = 0;
  // sum += x (fp32).
  virtual void Accumulate(const TensorTable& layout, const float* x, float* sum) = 0;
  // out = float(double(sum) * (1.0 / count)); then sum = 0 (a gradient accumulator's mean).
  virtual void MeanAndClear(const TensorTable& layout, float* sum, int64_t count, float* out) = 0;
};

}  // namespace tributary
