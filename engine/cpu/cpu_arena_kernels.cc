// The CpuBackend's arena kernels (optimizer steps, gradient norm, scaling, accumulation) and LoRA's
// dropout mask: the arithmetic engine/train/optimizer.cc and peft/lora.cc ran on host pointers before
// they went through the Backend, with the same element order and fp64 intermediates, so results are
// bit-identical to it.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "base/parallel.h"
#include "engine/cpu/cpu_backend.h"

namespace tributary {
namespace {

// Element-wise kernels are memory bound; chunks below this run inline.
constexpr int64_t kMinChunk = 1 << 14;

// Calls fn(lo, hi) for every maximal run of tensor elements (never padding) inside [begin, end).
void ForEachTensorRun(const TensorTable& table, int64_t begin, int64_t end,
                      const std::function<void(int64_t, int64_t)>& fn) {
  const auto& entries = table.entries();
  // Entries are laid out in order, so their end offsets are sorted too.
  auto it = std::upper_bound(entries.begin(), entries.end(), begin,
                             [](int64_t v, const TensorEntry& e) { return v < e.offset + e.numel; });
  for (; it != entries.end() && it->offset < end; ++it) {
    const int64_t lo = std::max(begin, it->offset);
    const int64_t hi = std::min(end, it->offset + it->numel);
    if (lo < hi) fn(lo, hi);
  }
}

// One threaded loop over the tensor elements of an arena layout.
void ParallelOverTensors(const TensorTable& table, const std::function<void(int64_t, int64_t)>& fn) {
  ParallelFor(0, table.total_elems(), kMinChunk,
              [&](int64_t begin, int64_t end) { ForEachTensorRun(table, begin, end, fn); });
}

}  // namespace

void CpuBackend::Dropout(const float* x, int64_t n, uint64_t stream, double p, float* out) {
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  ParallelFor(0, n, kMinChunk, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      // The top 53 bits of the hash as a uniform in [0, 1).
      const double u = static_cast<double>(SplitMix64(stream + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
      out[i] = u >= p ? x[i] * keep_scale : 0.0f;
    }
  });
}

void CpuBackend::AdamWStep(const TensorTable& layout, const AdamWStepArgs& args, float* p, const float* g, float* m,
                           float* v) {
  const double t = static_cast<double>(args.step);
  const double beta1 = args.beta1, beta2 = args.beta2, eps = args.eps;
  const double decay = 1.0 - args.lr * args.weight_decay;
  const double bias_c1 = 1.0 - std::pow(beta1, t);
  const double bias_c2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
  const double step_size = args.lr / bias_c1;
  ParallelOverTensors(layout, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const double gi = g[i];
      const double mi = beta1 * m[i] + (1.0 - beta1) * gi;
      const double vi = beta2 * v[i] + (1.0 - beta2) * gi * gi;
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
      const double denom = std::sqrt(static_cast<double>(v[i])) / bias_c2_sqrt + eps;
      const double pi = static_cast<double>(p[i]) * decay;
      p[i] = static_cast<float>(pi - step_size * static_cast<double>(m[i]) / denom);
    }
  });
}

void CpuBackend::SgdStep(const TensorTable& layout, const SgdStepArgs& args, float* p, const float* g, float* buf) {
  const double lr = args.lr, wd = args.weight_decay, momentum = args.momentum;
  const double damp = 1.0 - args.dampening;
  const bool nesterov = args.nesterov, first = args.first_step;
  ParallelOverTensors(layout, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const double pi = p[i];
      double d_p = static_cast<double>(g[i]) + wd * pi;
      if (buf) {
        const double b = first ? d_p : momentum * static_cast<double>(buf[i]) + damp * d_p;
        buf[i] = static_cast<float>(b);
        d_p = nesterov ? d_p + momentum * static_cast<double>(buf[i]) : static_cast<double>(buf[i]);
      }
      p[i] = static_cast<float>(pi - lr * d_p);
    }
  });
}

double CpuBackend::SumSquares(const TensorTable& layout, const float* x) {
  const int64_t total = layout.total_elems();
  const int64_t num_slices = (total + kSumSquaresSlice - 1) / kSumSquaresSlice;
  std::vector<double> partial(static_cast<size_t>(num_slices), 0.0);
  ParallelFor(0, num_slices, 1, [&](int64_t first_slice, int64_t last_slice) {
    for (int64_t s = first_slice; s < last_slice; ++s) {
      double sum = 0.0;
      ForEachTensorRun(layout, s * kSumSquaresSlice, std::min(total, (s + 1) * kSumSquaresSlice),
                       [&](int64_t lo, int64_t hi) {
                         for (int64_t i = lo; i < hi; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
                       });
      partial[static_cast<size_t>(s)] = sum;
    }
  });
  double sum_sq = 0.0;
  for (double s : partial) sum_sq += s;  // fixed order: thread-count independent
  return sum_sq;
}

void CpuBackend::Scale(const TensorTable& layout, float* x, float factor) {
  ParallelOverTensors(layout, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] *= factor;
  });
}

void CpuBackend::Accumulate(const TensorTable& layout, const float* x, float* sum) {
  ParallelOverTensors(layout, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) sum[i] += x[i];
  });
}

void CpuBackend::MeanAndClear(const TensorTable& layout, float* sum, int64_t count, float* out) {
  const double inv = 1.0 / static_cast<double>(count);
  ParallelOverTensors(layout, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<float>(static_cast<double>(sum[i]) * inv);
      sum[i] = 0.0f;
    }
  });
}

}  // namespace tributary
