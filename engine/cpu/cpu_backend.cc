#include "engine/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/parallel.h"

namespace tributary {
namespace {

// Rows per parallel chunk scale with the row length so tiny calls run inline.
int64_t MinRows(int64_t row_len) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_len));
}

constexpr int64_t kElemChunk = 32768;

// Runs fn(row_begin, row_end, chunk_index) over a fixed number of chunks (one per thread) and
// returns the chunk count, so callers can keep per-chunk partial sums and add them in order.
int64_t ChunkedRows(int64_t rows, int64_t min_rows, const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(NumThreads(), (rows + min_rows - 1) / min_rows));
  const int64_t base = rows / chunks, extra = rows % chunks;
  ParallelTasks(chunks, [&](int64_t c) {
    const int64_t lo = c * base + std::min(c, extra);
    fn(lo, lo + base + (c < extra ? 1 : 0), c);
  });
  return chunks;
}

}  // namespace

std::shared_ptr<Backend> CpuBackend::Shared() {
  static const std::shared_ptr<Backend> shared = std::make_shared<CpuBackend>();
  return shared;
}

// Host memory: the operations are plain memset/memcpy and complete on return (Synchronize is a no-op).
void CpuBackend::Memset(void* dst, int value, size_t bytes) {
  if (bytes > 0) std::memset(dst, value, bytes);
}

void CpuBackend::CopyHostToBackend(void* dst, const void* host_src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, host_src, bytes);
}

void CpuBackend::CopyBackendToHost(void* host_dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(host_dst, src, bytes);
}

void CpuBackend::CopyBackendToBackend(void* dst, const void* src, size_t bytes) {
  if (bytes > 0 && dst != src) std::memcpy(dst, src, bytes);
}

std::string CpuBackend::BlasCoreName() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

int CpuBackend::BlasThreads() {
  return openblas_get_num_threads();
}

void CpuBackend::Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                      int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void CpuBackend::EmbeddingForward(const int32_t* tokens, int64_t rows, const float* table, int64_t dim, float* out) {
  ParallelFor(0, rows, MinRows(dim), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      std::memcpy(out + r * dim, table + static_cast<int64_t>(tokens[r]) * dim, sizeof(float) * dim);
  });
}

void CpuBackend::EmbeddingBackward(const int32_t* tokens, int64_t rows, const float* dout, int64_t dim, float* dtable) {
  // Split by columns: each thread owns a column range for every token, so repeated tokens never race
  // and the sum order (row order) is fixed.
  ParallelFor(0, dim, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = dtable + static_cast<int64_t>(tokens[r]) * dim;
      const float* src = dout + r * dim;
      for (int64_t c = lo; c < hi; ++c) dst[c] += src[c];
    }
  });
}

void CpuBackend::RmsNormForward(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
                                float* rstd) {
  ParallelFor(0, rows, MinRows(dim), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = x + r * dim;
      float* yr = out + r * dim;
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      rstd[r] = s;
      for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * s) * weight[i];
    }
  });
}

void CpuBackend::RmsNormBackward(const float* dout, const float* x, const float* weight, const float* rstd,
                                 int64_t rows, int64_t dim, float* dx, float* dweight) {
  // y_i = x_i r w_i, r = (mean(x^2) + eps)^-1/2:
  //   dx_i = r w_i dy_i - x_i r^3 / dim * sum_j w_j dy_j x_j;   dw_i = sum_rows dy_i x_i r
  const int64_t max_chunks = NumThreads();
  std::vector<float> partial(static_cast<size_t>(max_chunks * dim), 0.0f);
  const int64_t chunks = ChunkedRows(rows, MinRows(dim), [&](int64_t lo, int64_t hi, int64_t c) {
    float* dw = partial.data() + c * dim;
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dout + r * dim;
      float* dxr = dx + r * dim;
      const float s = rstd[r];
      double dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(weight[i] * dyr[i]) * xr[i];
      const float coef = static_cast<float>(dot * s * s * s / static_cast<double>(dim));
      for (int64_t i = 0; i < dim; ++i) {
        dxr[i] += s * (weight[i] * dyr[i]) - xr[i] * coef;
        dw[i] += dyr[i] * (xr[i] * s);
      }
    }
  });
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < dim; ++i) dweight[i] += partial[c * dim + i];
}

namespace {

void Rotate(float* x, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t* positions,
            const float* cos, const float* sin, float sin_sign) {
  const int64_t half = head_dim / 2;
  ParallelFor(0, rows, MinRows(n_heads * head_dim), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* cr = cos + static_cast<int64_t>(positions[r]) * half;
      const float* sr = sin + static_cast<int64_t>(positions[r]) * half;
      for (int64_t h = 0; h < n_heads; ++h) {
        float* x1 = x + r * row_stride + h * head_dim;
        float* x2 = x1 + half;
        for (int64_t j = 0; j < half; ++j) {
          const float a = x1[j], b = x2[j], c = cr[j], s = sin_sign * sr[j];
          x1[j] = a * c - b * s;
          x2[j] = b * c + a * s;
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::RopeForward(float* x, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                             const int32_t* positions, const float* cos, const float* sin) {
  Rotate(x, rows, row_stride, n_heads, head_dim, positions, cos, sin, 1.0f);
}

void CpuBackend::RopeBackward(float* dx, int64_t rows, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                              const int32_t* positions, const float* cos, const float* sin) {
  Rotate(dx, rows, row_stride, n_heads, head_dim, positions, cos, sin, -1.0f);
}

void CpuBackend::AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* probs,
                                  float* out) {
  const int64_t B = s.batch, Tq = s.q_len, Tk = s.kv_len, D = s.head_dim, NH = s.n_heads;
  const int64_t group = NH / s.n_kv_heads, offset = Tk - Tq;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  // Scores for every (batch, head) as one large GEMM each, then one threaded softmax pass over all rows.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const float* qh = q + b * Tq * s.q_row_stride + h * D;
      const float* kh = k + b * s.kv_batch_stride + (h / group) * D;
      Gemm(false, true, Tq, Tk, D, scale, qh, s.q_row_stride, kh, s.kv_row_stride, 0.0f, probs + (b * NH + h) * Tq * Tk,
           Tk);
    }
  ParallelFor(0, B * NH * Tq, MinRows(Tk), [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      float* p = probs + row * Tk;
      const int64_t visible = offset + (row % Tq) + 1;  // keys 0..visible-1
      float mx = p[0];
      for (int64_t j = 1; j < visible; ++j) mx = std::max(mx, p[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < visible; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < visible; ++j) p[j] *= inv;
      for (int64_t j = visible; j < Tk; ++j) p[j] = 0.0f;
    }
  });
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const float* vh = v + b * s.kv_batch_stride + (h / group) * D;
      Gemm(false, false, Tq, D, Tk, 1.0f, probs + (b * NH + h) * Tq * Tk, Tk, vh, s.kv_row_stride, 0.0f,
           out + b * Tq * NH * D + h * D, NH * D);
    }
}

void CpuBackend::AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v,
                                   float* probs, const float* dout, float* dprobs, float* dq, float* dk, float* dv) {
  const int64_t B = s.batch, T = s.q_len, D = s.head_dim, NH = s.n_heads;
  const int64_t group = NH / s.n_kv_heads;
  const int64_t qs = s.q_row_stride, ks = s.kv_row_stride;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  // dP = dO V^T and dV = sum over the group's heads of P^T dO.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t kv_off = b * s.kv_batch_stride + (h / group) * D;
      const float* doh = dout + b * T * qs + h * D;
      const float* p = probs + (b * NH + h) * T * T;
      Gemm(false, true, T, T, D, 1.0f, doh, qs, v + kv_off, ks, 0.0f, dprobs + (b * NH + h) * T * T, T);
      Gemm(true, false, T, D, T, 1.0f, p, T, doh, qs, h % group == 0 ? 0.0f : 1.0f, dv + kv_off, ks);
    }
  // dS = P * (dP - rowsum(dP * P)) * scale, written over P.
  ParallelFor(0, B * NH * T, MinRows(T), [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      float* p = probs + row * T;
      const float* dp = dprobs + row * T;
      const int64_t visible = (row % T) + 1;
      double dot = 0.0;
      for (int64_t j = 0; j < visible; ++j) dot += static_cast<double>(p[j]) * dp[j];
      const float d = static_cast<float>(dot);
      for (int64_t j = 0; j < visible; ++j) p[j] = p[j] * (dp[j] - d) * scale;
    }
  });
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t kv_off = b * s.kv_batch_stride + (h / group) * D;
      const float* ds = probs + (b * NH + h) * T * T;
      Gemm(false, false, T, D, T, 1.0f, ds, T, k + kv_off, ks, 0.0f, dq + b * T * qs + h * D, qs);
      Gemm(true, false, T, D, T, 1.0f, ds, T, q + b * T * qs + h * D, qs, h % group == 0 ? 0.0f : 1.0f, dk + kv_off,
           ks);
    }
}

void CpuBackend::SwiGluForward(const float* gate, const float* up, int64_t n, float* h) {
  ParallelFor(0, n, kElemChunk, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float g = gate[i];
      h[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
  });
}

void CpuBackend::SwiGluBackward(const float* dh, const float* gate, const float* up, int64_t n, float* dgate,
                                float* dup) {
  ParallelFor(0, n, kElemChunk, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float g = gate[i], u = up[i], d = dh[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      const float silu = g * sig;
      dgate[i] = d * u * (sig * (1.0f + g * (1.0f - sig)));
      dup[i] = d * silu;
    }
  });
}

void CpuBackend::Add(const float* a, const float* b, int64_t n, float* out) {
  ParallelFor(0, n, kElemChunk, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

void CpuBackend::BiasForward(float* y, const float* bias, int64_t rows, int64_t cols) {
  ParallelFor(0, rows, MinRows(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
  });
}

void CpuBackend::BiasBackward(const float* dy, int64_t rows, int64_t cols, float* dbias) {
  ParallelFor(0, cols, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = lo; c < hi; ++c) dbias[c] += dy[r * cols + c];
  });
}

double CpuBackend::CrossEntropyForward(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t rows,
                                       int64_t vocab, float* lse, float* loss) {
  std::vector<double> partial(static_cast<size_t>(NumThreads()), 0.0);
  const int64_t chunks = ChunkedRows(rows, MinRows(vocab), [&](int64_t lo, int64_t hi, int64_t c) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = logits + r * vocab;
      float mx = x[0];
      for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, x[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(x[j] - mx);
      const double l = static_cast<double>(mx) + std::log(sum);
      lse[r] = static_cast<float>(l);
      const bool counted = mask == nullptr || mask[r] != 0;
      const double row_loss = counted ? l - static_cast<double>(x[targets[r]]) : 0.0;
      loss[r] = static_cast<float>(row_loss);
      partial[c] += row_loss;
    }
  });
  double total = 0.0;
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

void CpuBackend::CrossEntropyBackward(const float* logits, const float* lse, const int32_t* targets,
                                      const uint8_t* mask, int64_t rows, int64_t vocab, float scale, float* dlogits) {
  ParallelFor(0, rows, MinRows(vocab), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = logits + r * vocab;
      float* d = dlogits + r * vocab;
      if (mask != nullptr && mask[r] == 0) {
        std::memset(d, 0, sizeof(float) * vocab);
        continue;
      }
      const float l = lse[r];
      for (int64_t j = 0; j < vocab; ++j) d[j] = scale * std::exp(x[j] - l);
      d[targets[r]] -= scale;
    }
  });
}

}  // namespace tributary
