// A stand-in accelerator for tests: a buffer type whose memory is host RAM but which reports
// IsHost() false, and a backend that runs the CpuBackend's kernels on it. Code that allocates from
// the wrong buffer type trips the buffer-type identity checks (TRIB_CHECK), and host-only paths must
// take their staging branches, so a test can check that model, generation, LoRA and optimizer code
// work on non-host memory and give the CPU backend's bits. Header-only: tests/peft uses it too.
#pragma once

#include <atomic>
#include <cstdlib>
#include <memory>

#include "engine/backend.h"
#include "engine/cpu/cpu_backend.h"

namespace tributary {

class FakeDeviceBufferType final : public BufferType {
 public:
  static const FakeDeviceBufferType& Get() {
    static const FakeDeviceBufferType type;
    return type;
  }
  const char* Name() const override { return "fake-device"; }
  bool IsHost() const override { return false; }
  size_t Alignment() const override { return 256; }
  void* Allocate(size_t bytes) const override { return std::aligned_alloc(256, bytes); }
  void Free(void* ptr) const override { std::free(ptr); }
  void Memset(void* dst, int value, size_t bytes) const override { HostBufferType().Memset(dst, value, bytes); }
  void CopyFromHost(void* dst, const void* src, size_t bytes) const override {
    host_copies += 1;
    HostBufferType().CopyFromHost(dst, src, bytes);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) const override {
    host_copies += 1;
    HostBufferType().CopyToHost(dst, src, bytes);
  }
  void Copy(void* dst, const void* src, size_t bytes) const override { HostBufferType().Copy(dst, src, bytes); }

  mutable std::atomic<int64_t> host_copies{0};  // transfers across the host boundary
};

class FakeDeviceBackend final : public Backend {
 public:
  const char* Name() const override { return "fake-device"; }
  const BufferType& buffer_type() const override { return FakeDeviceBufferType::Get(); }
  void Memset(void* dst, int value, size_t bytes) override { cpu_.Memset(dst, value, bytes); }
  void CopyHostToBackend(void* dst, const void* src, size_t bytes) override {
    ++host_copies_;
    cpu_.CopyHostToBackend(dst, src, bytes);
  }
  void CopyBackendToHost(void* dst, const void* src, size_t bytes) override {
    ++host_copies_;
    cpu_.CopyBackendToHost(dst, src, bytes);
  }
  void CopyBackendToBackend(void* dst, const void* src, size_t bytes) override {
    cpu_.CopyBackendToBackend(dst, src, bytes);
  }
  void Synchronize() override {}
  int64_t host_copies() const { return host_copies_; }

  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
            int64_t ldb, float beta, float* c, int64_t ldc) override {
    cpu_.Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void EmbeddingForward(const int32_t* tokens, int64_t rows, const float* table, int64_t dim, float* out) override {
    cpu_.EmbeddingForward(tokens, rows, table, dim, out);
  }
  void EmbeddingBackward(const int32_t* tokens, int64_t rows, const float* dout, int64_t dim, float* dtable) override {
    cpu_.EmbeddingBackward(tokens, rows, dout, dim, dtable);
  }
  void RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
                      float* rstd) override {
    cpu_.RmsNormForward(x, w, rows, dim, eps, out, rstd);
  }
  void RmsNormBackward(const float* dout, const float* x, const float* w, const float* rstd, int64_t rows, int64_t dim,
                       float* dx, float* dw) override {
    cpu_.RmsNormBackward(dout, x, w, rstd, rows, dim, dx, dw);
  }
  void RopeForward(float* x, int64_t rows, int64_t stride, int64_t heads, int64_t dim, const int32_t* pos,
                   const float* cos, const float* sin) override {
    cpu_.RopeForward(x, rows, stride, heads, dim, pos, cos, sin);
  }
  void RopeBackward(float* dx, int64_t rows, int64_t stride, int64_t heads, int64_t dim, const int32_t* pos,
                    const float* cos, const float* sin) override {
    cpu_.RopeBackward(dx, rows, stride, heads, dim, pos, cos, sin);
  }
  void AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                        float* out) override {
    cpu_.AttentionForward(s, q, k, v, probs, out);
  }
  void AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                         const float* dout, float* dprobs, float* dq, float* dk, float* dv) override {
    cpu_.AttentionBackward(s, q, k, v, probs, dout, dprobs, dq, dk, dv);
  }
  void SwiGluForward(const float* gate, const float* up, int64_t n, float* h) override {
    cpu_.SwiGluForward(gate, up, n, h);
  }
  void SwiGluBackward(const float* dh, const float* gate, const float* up, int64_t n, float* dgate,
                      float* dup) override {
    cpu_.SwiGluBackward(dh, gate, up, n, dgate, dup);
  }
  void Add(const float* a, const float* b, int64_t n, float* out) override { cpu_.Add(a, b, n, out); }
  void BiasForward(float* y, const float* bias, int64_t rows, int64_t cols) override {
    cpu_.BiasForward(y, bias, rows, cols);
  }
  void BiasBackward(const float* dy, int64_t rows, int64_t cols, float* dbias) override {
    cpu_.BiasBackward(dy, rows, cols, dbias);
  }
  double CrossEntropyForward(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t rows,
                             int64_t vocab, float* lse, float* loss) override {
    return cpu_.CrossEntropyForward(logits, targets, mask, rows, vocab, lse, loss);
  }
  void CrossEntropyBackward(const float* logits, const float* lse, const int32_t* targets, const uint8_t* mask,
                            int64_t rows, int64_t vocab, float scale, float* dlogits) override {
    cpu_.CrossEntropyBackward(logits, lse, targets, mask, rows, vocab, scale, dlogits);
  }
  void Dropout(const float* x, int64_t n, uint64_t stream, double p, float* out) override {
    cpu_.Dropout(x, n, stream, p, out);
  }
  void AdamWStep(const TensorTable& layout, const AdamWStepArgs& args, float* p, const float* g, float* m,
                 float* v) override {
    cpu_.AdamWStep(layout, args, p, g, m, v);
  }
  void SgdStep(const TensorTable& layout, const SgdStepArgs& args, float* p, const float* g, float* buf) override {
    cpu_.SgdStep(layout, args, p, g, buf);
  }
  double SumSquares(const TensorTable& layout, const float* x) override { return cpu_.SumSquares(layout, x); }
  void Scale(const TensorTable& layout, float* x, float factor) override { cpu_.Scale(layout, x, factor); }
  void Accumulate(const TensorTable& layout, const float* x, float* sum) override { cpu_.Accumulate(layout, x, sum); }
  void MeanAndClear(const TensorTable& layout, float* sum, int64_t count, float* out) override {
    cpu_.MeanAndClear(layout, sum, count, out);
  }

 private:
  CpuBackend cpu_;
  int64_t host_copies_ = 0;
};

}  // namespace tributary
