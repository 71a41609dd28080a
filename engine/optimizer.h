// Optimizers over flat arenas: one loop over the whole parameter buffer, threaded.
// Semantics match torch.optim.SGD and torch.optim.AdamW (decoupled weight decay, bias correction).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/arena.h"
#include "engine/status.h"

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
  // State arenas for checkpointing ("adamw": m, v; "sgd": momentum buffer when momentum > 0).
  virtual Arena* state(int index) = 0;
  virtual int num_states() const = 0;
};

// InvalidArgument naming the field for unknown types or out-of-range hyper-parameters.
Result<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options,
                                                   std::shared_ptr<const TensorTable> table);

// Scales grads in place so that their global L2 norm is at most max_norm (torch clip_grad_norm_);
// returns the norm before clipping (fp64 accumulation). max_norm <= 0 only measures.
double ClipGradNorm(Arena& grads, double max_norm);

struct LrScheduleOptions {
  std::string type = "constant";  // "constant" | "cosine" | "linear"
  double lr = 1e-4;               // peak learning rate
  int64_t warmup_steps = 0;       // linear warmup from 0 to lr
  int64_t total_steps = 0;        // decay horizon for cosine/linear (required for them)
  double min_lr_ratio = 0.0;      // floor of the decay as a fraction of lr
};

Status ValidateLrSchedule(const LrScheduleOptions& options);
// Learning rate at optimizer step `step` (0-based).
double LearningRateAt(const LrScheduleOptions& options, int64_t step);

}  // namespace tributary
