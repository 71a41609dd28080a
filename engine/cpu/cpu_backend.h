// CPU implementation of the Backend: memory is host RAM (HostBufferType(), 64-byte aligned), memory
// operations are memset/memcpy and synchronous; GEMMs go through OpenBLAS cblas_sgemm (threaded by
// OpenBLAS), every other kernel is threaded over rows, columns or elements with base/parallel.h.
//
// Determinism: every reduction runs in a fixed order for a fixed thread count (per-chunk partials
// summed in chunk order), so two runs with the same inputs and NumThreads() give the same bits.
#pragma once

#include <memory>
#include <string>

#include "engine/backend.h"

namespace tributary {

class CpuBackend final : public Backend {
 public:
  // A process-wide instance (the backend is stateless): the default wherever a backend is optional.
  static std::shared_ptr<Backend> Shared();

  const char* Name() const override { return "cpu"; }

  // OpenBLAS's runtime kernel choice (openblas_get_corename), for logs and benchmark reports.
  static std::string BlasCoreName();
  // Threads OpenBLAS uses (its own pool, configured by OpenBLAS itself).
  static int BlasThreads();

  const BufferType& buffer_type() const override { return HostBufferType(); }
  void Memset(void* dst, int value, size_t bytes) override;
  void CopyHostToBackend(void* dst, const void* host_src, size_t bytes) override;
  void CopyBackendToHost(void* host_dst, const void* src, size_t bytes) override;
  void CopyBackendToBackend(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override {}

  void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override;
  void EmbeddingForward(const int32_t* tokens, int64_t rows, const float* table, int64_t dim, float* out) override;
  void EmbeddingBackward(const int32_t* tokens, int64_t rows, const float* dout, int64_t dim, float* dtable) override;
  void RmsNormForward(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
                      float* rstd) override;
  void RmsNormBackward(const float* dout, const float* x, const float* weight, const float* rstd, int64_t rows,
                       int64_t dim, float* dx, float* dweight) override;
  void RopeForward(float* x, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                   const int32_t* positions, const float* cos, const float* sin) override;
  void RopeBackward(float* dx, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                    const int32_t* positions, const float* cos, const float* sin) override;
  void AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                        float* out) override;
  void AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                         const float* dout, float* dprobs_scratch, float* dq, float* dk, float* dv) override;
  void SwiGluForward(const float* gate, const float* up, int64_t n, float* h) override;
  void SwiGluBackward(const float* dh, const float* gate, const float* up, int64_t n, float* dgate,
                      float* dup) override;
  void Add(const float* a, const float* b, int64_t n, float* out) override;
  void BiasForward(float* y, const float* bias, int64_t rows, int64_t cols) override;
  void BiasBackward(const float* dy, int64_t rows, int64_t cols, float* dbias) override;
  double CrossEntropyForward(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t rows,
                             int64_t vocab, float* lse, float* loss) override;
  void CrossEntropyBackward(const float* logits, const float* lse, const int32_t* targets, const uint8_t* mask,
                            int64_t rows, int64_t vocab, float scale, float* dlogits) override;

  void Dropout(const float* x, int64_t n, uint64_t stream, double p, float* out) override;
  void AdamWStep(const TensorTable& layout, const AdamWStepArgs& args, float* params, const float* grads, float* m,
                 float* v) override;
  void SgdStep(const TensorTable& layout, const SgdStepArgs& args, float* params, const float* grads,
               float* momentum_buf) override;
  double SumSquares(const TensorTable& layout, const float* x) override;
  void Scale(const TensorTable& layout, float* x, float factor) override;
  void Accumulate(const TensorTable& layout, const float* x, float* sum) override;
  void MeanAndClear(const TensorTable& layout, float* sum, int64_t count, float* out) override;
};

}  // namespace tributary
