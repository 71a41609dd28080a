// The training loop shared by centralized fine-tuning (`tributary train`) and a worker's local
// steps in a federated round: micro-batches with gradient accumulation, global-norm clipping,
// an LR schedule and one optimizer step per accumulation window; plus held-out evaluation
// (mean loss, perplexity) and generation-based evaluation (Rouge-L, exact match).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/model/generate.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/optimizer.h"

namespace tributary {

// The arenas one training step clips and steps. Both null (the default): the model's own
// params/grads. Set both to train something that keeps its parameters outside the model, e.g.
// adapters attached as the model's LinearAdapter with the base frozen; the optimizer must have been
// created for params' table. Every step zeroes the model's grads and, when distinct, these grads.
// All arenas and the optimizer live on the model's backend (clipping runs there; checked).
struct TrainTarget {
  Arena* params = nullptr;
  Arena* grads = nullptr;
};

// The seam between backward and the optimizer step: called once per optimizer step with the step's
// accumulated gradients (the arena that is clipped and stepped), before clipping. Cluster mode's island
// all-reduce plugs in here so every member clips and steps identical gradients; a lone worker has none.
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Replaces `grads` by the reduced gradients of step `step` (1-based within the TrainSteps call).
  // `grads` lives in the model backend's memory (engine/arena.h: host or device).
  virtual Status Reduce(Arena& grads, int64_t step) = 0;
  // The same with the step's target tokens (the tokens its loss counted): a reducer that weights members
  // by them (cluster/island_reducer.h) overrides this; the default ignores them.
  virtual Status ReduceStep(Arena& grads, int64_t step, int64_t /*target_tokens*/) { return Reduce(grads, step); }
};

struct TrainLoopOptions {
  int64_t steps = 0;           // optimizer steps
  int64_t batch_size = 4;      // rows per micro-batch
  int64_t grad_accum = 1;      // micro-batches per optimizer step
  double max_grad_norm = 1.0;  // <= 0: no clipping
  LrScheduleOptions schedule;  // lr at each optimizer step
  int64_t first_step = 0;      // schedule offset (resumed training)
  TrainTarget target;          // what is stepped (default: the model's parameters)
  // Optional; called with the 1-based step before its first forward pass (e.g. to set per-step
  // state such as a dropout seed). on_step is the matching hook after the optimizer step.
  std::function<void(int64_t step)> before_step;
  GradientReducer* reducer = nullptr;  // not owned; null: no reduction
};

struct StepStats {
  int64_t step = 0;  // 1-based optimizer step within this call
  double loss = 0;   // token-weighted mean loss over the step's micro-batches
  double lr = 0;
  double grad_norm = 0;       // before clipping
  int64_t tokens = 0;         // input tokens processed in this step (B*T*accum)
  int64_t target_tokens = 0;  // tokens that counted in the loss
  double seconds = 0;         // wall time of this step
};

// Runs options.steps optimizer steps, reading rows cyclically starting at *next_row (advanced).
// on_step (optional) is called after every step. Fails on a non-finite loss (naming the step) and
// on a half-set or mismatched options.target.
Status TrainSteps(LlamaModel& model, Optimizer& optimizer, const std::vector<SequenceRow>& rows,
                  const TrainLoopOptions& options, int64_t* next_row,
                  const std::function<void(const StepStats&)>& on_step = nullptr);

struct LossEval {
  double mean_loss = 0;  // token-weighted over all rows
  double perplexity = 1;
  int64_t tokens = 0;  // counted target tokens
};

// Mean loss over every row (batched; the last partial batch is evaluated without wrapping).
Result<LossEval> EvaluateLoss(LlamaModel& model, const std::vector<SequenceRow>& rows, int64_t batch_size);

struct GenerationEval {
  double rouge_l = 0;      // mean Rouge-L F (rouge 1.0.1 semantics)
  double exact_match = 0;  // fraction
  int64_t examples = 0;
};

// Greedy (or sampled) answers for up to max_examples instruction examples, scored against their
// reference outputs. Plain-text examples are skipped.
Result<GenerationEval> EvaluateGeneration(LlamaModel& model, const Tokenizer& tokenizer,
                                          const std::vector<Example>& examples, const TokenizeOptions& tokenize,
                                          int64_t max_examples, const GenerateOptions& generate);

}  // namespace tributary
