#include "engine/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace tributary {
namespace {

void CheckSameLayout(const Arena& a, const Arena& b) {
  TRIB_CHECK(a.size() == b.size());
  TRIB_CHECK(a.table().size() == b.table().size());
}

// The arena is memory the backend computes on (engine/buffer.h: buffer types compare by identity).
void CheckOnBackend(const Arena& arena, const Backend& backend) {
  TRIB_CHECK(&arena.buffer_type() == &backend.buffer_type());
}

Backend& OrCpu(Backend* backend) {
  return backend != nullptr ? *backend : *CpuBackend::Shared();
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
  AdamW(const OptimizerOptions& options, const std::shared_ptr<const TensorTable>& table,
        std::shared_ptr<Backend> backend)
      : options_(options),
        backend_(std::move(backend)),
        m_(table, backend_->buffer_type()),
        v_(table, backend_->buffer_type()) {}

  void Step(Arena& params, const Arena& grads, double lr) override {
    CheckSameLayout(params, grads);
    CheckSameLayout(params, m_);
    CheckOnBackend(params, *backend_);
    CheckOnBackend(grads, *backend_);
    TRIB_CHECK(std::isfinite(lr) && lr >= 0);
    ++steps_;
    AdamWStepArgs args;
    args.lr = lr;
    args.beta1 = options_.beta1;
    args.beta2 = options_.beta2;
    args.eps = options_.eps;
    args.weight_decay = options_.weight_decay;
    args.step = steps_;
    backend_->AdamWStep(params.table(), args, params.data(), grads.data(), m_.data(), v_.data());
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
  std::shared_ptr<Backend> backend_;
  Arena m_, v_;
  int64_t steps_ = 0;
};

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& options, std::shared_ptr<const TensorTable> table, std::shared_ptr<Backend> backend)
      : options_(options), backend_(std::move(backend)) {
    if (options_.momentum > 0) momentum_buffer_ = Arena(std::move(table), backend_->buffer_type());
  }

  void Step(Arena& params, const Arena& grads, double lr) override {
    CheckSameLayout(params, grads);
    CheckOnBackend(params, *backend_);
    CheckOnBackend(grads, *backend_);
    TRIB_CHECK(std::isfinite(lr) && lr >= 0);
    SgdStepArgs args;
    args.lr = lr;
    args.weight_decay = options_.weight_decay;
    args.momentum = options_.momentum;
    args.dampening = options_.dampening;
    args.nesterov = options_.nesterov;
    // torch initialises the buffer to d_p on its first step (no dampening applied).
    args.first_step = steps_ == 0;
    float* buf = options_.momentum > 0 ? momentum_buffer_.data() : nullptr;
    if (buf) CheckSameLayout(params, momentum_buffer_);
    backend_->SgdStep(params.table(), args, params.data(), grads.data(), buf);
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
  std::shared_ptr<Backend> backend_;
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
                                                   std::shared_ptr<const TensorTable> table,
                                                   std::shared_ptr<Backend> backend) {
  TRIB_CHECK(table != nullptr);
  TRIB_RETURN_IF_ERROR(ValidateOptimizer(options));
  if (!backend) backend = CpuBackend::Shared();
  std::unique_ptr<Optimizer> optimizer;
  if (options.type == "adamw") {
    optimizer = std::make_unique<AdamW>(options, std::move(table), std::move(backend));
  } else {
    optimizer = std::make_unique<Sgd>(options, std::move(table), std::move(backend));
  }
  return optimizer;
}

double ClipGradNorm(Arena& grads, double max_norm, Backend* backend) {
  Backend& be = OrCpu(backend);
  CheckOnBackend(grads, be);
  const double norm = std::sqrt(be.SumSquares(grads.table(), grads.data()));
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) ScaleArena(grads, coef, &be);
  }
  return norm;
}

void ScaleArena(Arena& arena, double factor, Backend* backend) {
  Backend& be = OrCpu(backend);
  CheckOnBackend(arena, be);
  be.Scale(arena.table(), arena.data(), static_cast<float>(factor));
}

GradAccumulator::GradAccumulator(std::shared_ptr<const TensorTable> table, std::shared_ptr<Backend> backend)
    : backend_(backend ? std::move(backend) : CpuBackend::Shared()), sum_(std::move(table), backend_->buffer_type()) {}

void GradAccumulator::Add(const Arena& micro_grads) {
  CheckSameLayout(sum_, micro_grads);
  CheckOnBackend(micro_grads, *backend_);
  backend_->Accumulate(sum_.table(), micro_grads.data(), sum_.data());
  ++count_;
}

void GradAccumulator::TakeMean(Arena& grads) {
  TRIB_CHECK(count_ > 0);
  CheckSameLayout(sum_, grads);
  CheckOnBackend(grads, *backend_);
  backend_->MeanAndClear(sum_.table(), sum_.data(), count_, grads.data());
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
