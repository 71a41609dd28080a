#include "engine/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "base/parallel.h"

namespace tributary {
namespace {

// Element-wise kernels are memory bound; chunks below this run inline.
constexpr int64_t kMinChunk = 1 << 14;
// ClipGradNorm reduces per slice of this many arena elements, then sums the slices in order.
constexpr int64_t kNormSlice = 1 << 13;

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

void CheckSameLayout(const Arena& a, const Arena& b) {
  TRIB_CHECK(a.size() == b.size());
  TRIB_CHECK(a.table().size() == b.table().size());
}

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

Status OutOfRange(const std::string& field, const std::string& expected, double got) {
  return Status::InvalidArgument("optimizer." + field + ": must be " + expected + ", got " + FormatNumber(got));
}

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerOptions& options, const std::shared_ptr<const TensorTable>& table)
      : options_(options), m_(table), v_(table) {}

  void Step(Arena& params, const Arena& grads, double lr) override {
    CheckSameLayout(params, grads);
    CheckSameLayout(params, m_);
    TRIB_CHECK(std::isfinite(lr) && lr >= 0);
    ++steps_;
    const double t = static_cast<double>(steps_);
    const double beta1 = options_.beta1, beta2 = options_.beta2, eps = options_.eps;
    const double decay = 1.0 - lr * options_.weight_decay;
    const double bias_c1 = 1.0 - std::pow(beta1, t);
    const double bias_c2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
    const double step_size = lr / bias_c1;
    float* p = params.data();
    const float* g = grads.data();
    float* m = m_.data();
    float* v = v_.data();
    ParallelOverTensors(params.table(), [&](int64_t lo, int64_t hi) {
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

  void Reset() override {
    m_.Zero();
    v_.Zero();
    steps_ = 0;
  }
  int64_t steps() const override { return steps_; }
  void RestoreSteps(int64_t steps) override {
    TRIB_CHECK(steps >= 0);
    steps_ = steps;
  }
  Arena* state(int index) override { return index == 0 ? &m_ : index == 1 ? &v_ : nullptr; }
  int num_states() const override { return 2; }

 private:
  OptimizerOptions options_;
  Arena m_, v_;
  int64_t steps_ = 0;
};

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& options, std::shared_ptr<const TensorTable> table) : options_(options) {
    if (options_.momentum > 0) momentum_buffer_ = Arena(std::move(table));
  }

  void Step(Arena& params, const Arena& grads, double lr) override {
    CheckSameLayout(params, grads);
    TRIB_CHECK(std::isfinite(lr) && lr >= 0);
    const double wd = options_.weight_decay;
    const double momentum = options_.momentum;
    const double damp = 1.0 - options_.dampening;
    const bool nesterov = options_.nesterov;
    // torch initialises the buffer to d_p on its first step (no dampening applied).
    const bool first = steps_ == 0;
    float* p = params.data();
    const float* g = grads.data();
    float* buf = momentum > 0 ? momentum_buffer_.data() : nullptr;
    if (buf) CheckSameLayout(params, momentum_buffer_);
    ParallelOverTensors(params.table(), [&](int64_t lo, int64_t hi) {
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
    ++steps_;
  }

  void Reset() override {
    if (options_.momentum > 0) momentum_buffer_.Zero();
    steps_ = 0;
  }
  int64_t steps() const override { return steps_; }
  void RestoreSteps(int64_t steps) override {
    TRIB_CHECK(steps >= 0);
    steps_ = steps;
  }
  Arena* state(int index) override { return index == 0 && options_.momentum > 0 ? &momentum_buffer_ : nullptr; }
  int num_states() const override { return options_.momentum > 0 ? 1 : 0; }

 private:
  OptimizerOptions options_;
  Arena momentum_buffer_;
  int64_t steps_ = 0;
};

Status ValidateOptimizer(const OptimizerOptions& o) {
  if (o.type != "adamw" && o.type != "sgd") {
    return Status::InvalidArgument("optimizer.type: unknown optimizer '" + o.type + "' (expected adamw or sgd)");
  }
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0) {
    return OutOfRange("weight_decay", "a finite number >= 0", o.weight_decay);
  }
  if (o.type == "adamw") {
    if (!(o.beta1 >= 0 && o.beta1 < 1)) return OutOfRange("beta1", "in [0, 1)", o.beta1);
    if (!(o.beta2 >= 0 && o.beta2 < 1)) return OutOfRange("beta2", "in [0, 1)", o.beta2);
    if (!std::isfinite(o.eps) || o.eps < 0) return OutOfRange("eps", "a finite number >= 0", o.eps);
  } else {
    if (!std::isfinite(o.momentum) || o.momentum < 0) return OutOfRange("momentum", "a finite number >= 0", o.momentum);
    if (!(o.dampening >= 0 && o.dampening <= 1)) return OutOfRange("dampening", "in [0, 1]", o.dampening);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
      return Status::InvalidArgument("optimizer.nesterov: requires momentum > 0 and dampening = 0 (momentum " +
                                     FormatNumber(o.momentum) + ", dampening " + FormatNumber(o.dampening) + ")");
    }
  }
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options,
                                                   std::shared_ptr<const TensorTable> table) {
  TRIB_CHECK(table != nullptr);
  TRIB_RETURN_IF_ERROR(ValidateOptimizer(options));
  std::unique_ptr<Optimizer> optimizer;
  if (options.type == "adamw") {
    optimizer = std::make_unique<AdamW>(options, std::move(table));
  } else {
    optimizer = std::make_unique<Sgd>(options, std::move(table));
  }
  return optimizer;
}

double ClipGradNorm(Arena& grads, double max_norm) {
  const TensorTable& table = grads.table();
  const int64_t total = table.total_elems();
  const int64_t num_slices = (total + kNormSlice - 1) / kNormSlice;
  std::vector<double> partial(static_cast<size_t>(num_slices), 0.0);
  const float* g = grads.data();
  ParallelFor(0, num_slices, 1, [&](int64_t first_slice, int64_t last_slice) {
    for (int64_t s = first_slice; s < last_slice; ++s) {
      double sum = 0.0;
      ForEachTensorRun(table, s * kNormSlice, std::min(total, (s + 1) * kNormSlice), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      });
      partial[static_cast<size_t>(s)] = sum;
    }
  });
  double sum_sq = 0.0;
  for (double s : partial) sum_sq += s;  // fixed order: thread-count independent
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) ScaleArena(grads, coef);
  }
  return norm;
}

void ScaleArena(Arena& arena, double factor) {
  const float f = static_cast<float>(factor);
  float* x = arena.data();
  ParallelOverTensors(arena.table(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] *= f;
  });
}

GradAccumulator::GradAccumulator(std::shared_ptr<const TensorTable> table) : sum_(std::move(table)) {}

void GradAccumulator::Add(const Arena& micro_grads) {
  CheckSameLayout(sum_, micro_grads);
  float* s = sum_.data();
  const float* g = micro_grads.data();
  ParallelOverTensors(sum_.table(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) s[i] += g[i];
  });
  ++count_;
}

void GradAccumulator::TakeMean(Arena& grads) {
  TRIB_CHECK(count_ > 0);
  CheckSameLayout(sum_, grads);
  const double inv = 1.0 / static_cast<double>(count_);
  float* s = sum_.data();
  float* out = grads.data();
  ParallelOverTensors(sum_.table(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<float>(static_cast<double>(s[i]) * inv);
      s[i] = 0.0f;
    }
  });
  count_ = 0;
}

Status ValidateLrSchedule(const LrScheduleOptions& o) {
  const bool decays = o.type == "cosine" || o.type == "linear";
  if (!decays && o.type != "constant") {
    return Status::InvalidArgument("lr_schedule.type: unknown schedule '" + o.type +
                                   "' (expected constant, cosine or linear)");
  }
  if (!std::isfinite(o.lr) || o.lr <= 0) {
    return Status::InvalidArgument("lr_schedule.lr: must be a finite number > 0, got " + FormatNumber(o.lr));
  }
  if (o.warmup_steps < 0) {
    return Status::InvalidArgument("lr_schedule.warmup_steps: must be >= 0, got " + std::to_string(o.warmup_steps));
  }
  if (o.total_steps < 0) {
    return Status::InvalidArgument("lr_schedule.total_steps: must be >= 0, got " + std::to_string(o.total_steps));
  }
  if (decays && o.total_steps <= 0) {
    return Status::InvalidArgument("lr_schedule.total_steps: must be > 0 for the '" + o.type + "' schedule, got " +
                                   std::to_string(o.total_steps));
  }
  if (decays && o.warmup_steps > o.total_steps) {
    return Status::InvalidArgument("lr_schedule.warmup_steps: " + std::to_string(o.warmup_steps) +
                                   " exceeds lr_schedule.total_steps " + std::to_string(o.total_steps));
  }
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) {
    return Status::InvalidArgument("lr_schedule.min_lr_ratio: must be in [0, 1], got " + FormatNumber(o.min_lr_ratio));
  }
  return Status::OK();
}

double LearningRateAt(const LrScheduleOptions& o, int64_t step) {
  step = std::max<int64_t>(step, 0);
  if (step < o.warmup_steps) {
    return o.lr * static_cast<double>(step) / static_cast<double>(o.warmup_steps);
  }
  if (o.type == "constant") return o.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
  const double decay = o.type == "cosine" ? 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) : 1.0 - progress;
  return o.lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * decay);
}

}  // namespace tributary
