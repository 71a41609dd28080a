#include "engine/train/trainer.h"

#include <chrono>
#include <cmath>
#include <string>

#include "engine/text/metrics.h"

namespace tributary {

Status TrainSteps(LlamaModel& model, Optimizer& optimizer, const std::vector<SequenceRow>& rows,
                  const TrainLoopOptions& options, int64_t* next_row,
                  const std::function<void(const StepStats&)>& on_step) {
  if (rows.empty()) return Status::InvalidArgument("training data: no rows (the dataset is empty after tokenization)");
  if (options.batch_size < 1) return Status::InvalidArgument("batch_size must be >= 1");
  if (options.grad_accum < 1) return Status::InvalidArgument("grad_accum must be >= 1");
  TRIB_RETURN_IF_ERROR(ValidateLrSchedule(options.schedule));
  if ((options.target.params == nullptr) != (options.target.grads == nullptr))
    return Status::InvalidArgument("train target: params and grads must be set together");
  Arena& params = options.target.params != nullptr ? *options.target.params : model.params();
  Arena& grads = options.target.grads != nullptr ? *options.target.grads : model.grads();
  if (params.size() != grads.size())
    return Status::InvalidArgument("train target: params hold " + std::to_string(params.size()) +
                                   " values but grads hold " + std::to_string(grads.size()));
  const bool separate_grads = &grads != &model.grads();
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  for (int64_t step = 1; step <= options.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    if (options.before_step) options.before_step(step);
    // Build the window's batches first: the loss weights need the total target count.
    std::vector<Batch> batches;
    int64_t window_targets = 0;
    for (int64_t m = 0; m < options.grad_accum; ++m) {
      batches.push_back(MakeBatch(rows, *next_row % n_rows, options.batch_size));
      *next_row = (*next_row + options.batch_size) % n_rows;
      window_targets += batches.back().NumTargets();
    }
    // The model's grads are zeroed even when they are not stepped: backward still accumulates into
    // whatever parts of it stay trainable.
    model.ZeroGrad();
    if (separate_grads) grads.Zero();
    StepStats stats;
    stats.step = step;
    double loss_sum = 0;
    for (const Batch& batch : batches) {
      float loss = 0;
      TRIB_RETURN_IF_ERROR(model.Forward(batch.tokens.data(), batch.loss_mask.data(), batch.targets.data(),
                                         batch.batch_size, batch.seq_len, &loss));
      const int64_t counted = batch.NumTargets();
      stats.tokens += batch.batch_size * batch.seq_len;
      stats.target_tokens += counted;
      if (counted == 0) continue;  // nothing to learn from an all-padding batch
      if (!std::isfinite(loss))
        return Status::FailedPrecondition("training diverged: loss is " + std::to_string(loss) + " at step " +
                                          std::to_string(options.first_step + step));
      loss_sum += static_cast<double>(loss) * counted;
      TRIB_RETURN_IF_ERROR(model.Backward(static_cast<float>(static_cast<double>(counted) / window_targets)));
    }
    stats.loss = window_targets > 0 ? loss_sum / window_targets : 0.0;
    if (options.reducer != nullptr)
      TRIB_RETURN_IF_ERROR(
          options.reducer->ReduceStep(grads, step, window_targets)
              .WithContext("reducing the gradients of step " + std::to_string(options.first_step + step)));
    stats.grad_norm = ClipGradNorm(grads, options.max_grad_norm, &model.backend());
    if (!std::isfinite(stats.grad_norm))
      return Status::FailedPrecondition("training diverged: gradient norm is not finite at step " +
                                        std::to_string(options.first_step + step));
    stats.lr = LearningRateAt(options.schedule, options.first_step + step - 1);
    optimizer.Step(params, grads, stats.lr);
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_step) on_step(stats);
  }
  return Status::OK();
}

Result<LossEval> EvaluateLoss(LlamaModel& model, const std::vector<SequenceRow>& rows, int64_t batch_size) {
  LossEval eval;
  if (rows.empty()) return eval;
  if (batch_size < 1) return Status::InvalidArgument("eval batch_size must be >= 1");
  double loss_sum = 0;
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  for (int64_t first = 0; first < n_rows; first += batch_size) {
    const int64_t b = std::min(batch_size, n_rows - first);
    Batch batch = MakeBatch(rows, first, b);
    float loss = 0;
    TRIB_RETURN_IF_ERROR(model.Forward(batch.tokens.data(), batch.loss_mask.data(), batch.targets.data(),
                                       batch.batch_size, batch.seq_len, &loss));
    const int64_t counted = batch.NumTargets();
    loss_sum += static_cast<double>(loss) * counted;
    eval.tokens += counted;
  }
  eval.mean_loss = eval.tokens > 0 ? loss_sum / eval.tokens : 0.0;
  eval.perplexity = PerplexityFromMeanLoss(eval.mean_loss);
  return eval;
}

Result<GenerationEval> EvaluateGeneration(LlamaModel& model, const Tokenizer& tokenizer,
                                          const std::vector<Example>& examples, const TokenizeOptions& tokenize,
                                          int64_t max_examples, const GenerateOptions& generate) {
  MetricsAccumulator metrics;
  const int64_t max_positions = model.config().max_position_embeddings;
  for (const Example& ex : examples) {
    if (metrics.generations() >= max_examples) break;
    if (ex.is_text) continue;
    std::vector<int32_t> prompt;
    if (tokenize.add_bos && tokenizer.bos_id() >= 0) prompt.push_back(tokenizer.bos_id());
    const std::vector<int32_t> body = tokenizer.Encode(FormatPrompt(tokenize.prompt_template, ex), false);
    prompt.insert(prompt.end(), body.begin(), body.end());
    // Keep the prompt's tail when prompt + answer would not fit the context.
    const int64_t keep = max_positions - generate.max_new_tokens;
    if (keep < 1) return Status::InvalidArgument("max_new_tokens leaves no room for a prompt");
    if (static_cast<int64_t>(prompt.size()) > keep) prompt.erase(prompt.begin(), prompt.end() - keep);
    TRIB_ASSIGN_OR_RETURN(std::vector<int32_t> answer, Generate(model, prompt, generate));
    TRIB_ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(answer, /*skip_special_tokens=*/true));
    metrics.AddGeneration(text, ex.output);
  }
  GenerationEval eval;
  eval.examples = metrics.generations();
  eval.rouge_l = metrics.mean_rouge_l();
  eval.exact_match = metrics.exact_match_rate();
  return eval;
}

}  // namespace tributary
