// Optimizers over flat arenas: one backend kernel over the whole parameter buffer (threaded on the
// CPU backend). Semantics match torch.optim.SGD and torch.optim.AdamW (decoupled weight decay, bias
// correction).
//
// Every kernel runs on a Backend (engine/backend.h): an optimizer's state arenas come from its
// backend's buffer type, and the arenas passed to Step, ClipGradNorm, ScaleArena and GradAccumulator
// must be memory of that backend (checked). A null backend means the CPU backend, so host arenas work
// as before; the trainer passes the model's backend.
//
// Kernels touch only the elements of each tensor (offset .. offset + numel), never the alignment
// padding between tensors, so padding stays exactly as the arena allocated it (zero) even when the
// gradient padding holds garbage.
// Updates are element-wise, hence bitwise independent of the thread count; ClipGradNorm sums
// fixed-size slices in index order (Backend::SumSquares), so its result is thread-count independent too.
//
// Gradient accumulation over n micro-batches: LlamaModel::Backward(loss_scale) accumulates (+=) into
// the grads arena, so the caller zeroes grads (ZeroGrad) at the start of a window and passes loss_scale
// = 1/n (or a token weight) per micro-batch; no extra arena is needed. A backward pass that overwrites
// grads instead sums micro-batch grads with GradAccumulator and takes the mean. Either way the order
// is: accumulate -> mean -> ClipGradNorm -> Step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/backend.h"

namespace tributary {

struct OptimizerOptions {
  std::string type = "adamw";  // "adamw" | "sgd"
  double weight_decay = 0.0;
  // AdamW
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // SGD
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update: params -= f(grads, state) at learning rate `lr`. Grads are not modified.
  virtual void Step(Arena& params, const Arena& grads, double lr) = 0;
  // Drops all state (a fresh optimizer for a new federated round).
  virtual void Reset() = 0;
  virtual int64_t steps() const = 0;
  // Sets the step counter after restoring state arenas from a checkpoint (AdamW bias correction and
  // SGD's "first step initialises the momentum buffer" both depend on it).
  virtual void RestoreSteps(int64_t steps) = 0;
  // State arenas for checkpointing ("adamw": m, v; "sgd": momentum buffer when momentum > 0).
  virtual Arena* state(int index) = 0;
  virtual int num_states() const = 0;
};

// InvalidArgument naming the field for unknown types or out-of-range hyper-parameters. The state
// arenas live in backend's memory and Step runs there (null: CpuBackend::Shared()).
Result<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options,
                                                   std::shared_ptr<const TensorTable> table,
                                                   std::shared_ptr<Backend> backend = nullptr);

// Scales grads in place so that their global L2 norm is at most max_norm (torch clip_grad_norm_);
// returns the norm before clipping (fp64 accumulation). max_norm <= 0 only measures.
// A non-finite norm leaves grads unchanged (unlike torch, which would fill them with NaN): the
// caller should skip that step. backend: the one whose memory holds grads (null: the CPU backend).
double ClipGradNorm(Arena& grads, double max_norm, Backend* backend = nullptr);

// arena *= factor over tensor elements (padding untouched), as an fp32 multiply by float(factor).
void ScaleArena(Arena& arena, double factor, Backend* backend = nullptr);

// Sums micro-batch gradients for accumulation when the backward pass overwrites grads. The sum arena
// lives in backend's memory (null: the CPU backend).
class GradAccumulator {
 public:
  explicit GradAccumulator(std::shared_ptr<const TensorTable> table, std::shared_ptr<Backend> backend = nullptr);
  // sum += micro_grads (fp32 sum; same table layout, checked).
  void Add(const Arena& micro_grads);
  int64_t count() const { return count_; }
  // Writes sum / count into `grads` and starts a new window. count() must be > 0.
  void TakeMean(Arena& grads);

 private:
  std::shared_ptr<Backend> backend_;
  Arena sum_;
  int64_t count_ = 0;
};

struct LrScheduleOptions {
  std::string type = "constant";  // "constant" | "cosine" | "linear"
  double lr = 1e-4;               // peak learning rate
  int64_t warmup_steps = 0;       // linear warmup from 0 to lr
  int64_t total_steps = 0;        // decay horizon for cosine/linear (required for them)
  double min_lr_ratio = 0.0;      // floor of the decay as a fraction of lr
};

// InvalidArgument naming the field ("lr_schedule.total_steps: ...") for bad options.
Status ValidateLrSchedule(const LrScheduleOptions& options);
// Learning rate at optimizer step `step` (0-based), as HF transformers' get_{constant,cosine,linear}_
// schedule_with_warmup (cosine with num_cycles = 0.5) with a floor: warmup lr*step/warmup_steps, then
// lr*(min_lr_ratio + (1 - min_lr_ratio)*decay), decay going 1 -> 0 over [warmup_steps, total_steps].
// Past total_steps the rate stays at the floor (HF's cosine would rise again). Options must be valid.
double LearningRateAt(const LrScheduleOptions& options, int64_t step);

}  // namespace tributary
