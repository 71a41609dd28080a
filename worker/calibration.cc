#include "worker/calibration.h"

#include <chrono>
#include <cmath>
#include <string>

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;

// One forward+backward of `batch`; every target counts (the mask would only skip padding's loss, not
// its compute).
Status ForwardBackward(LlamaModel& model, const Batch& batch) {
  float loss = 0;
  TRIB_RETURN_IF_ERROR(
      model.Forward(batch.tokens.data(), nullptr, batch.targets.data(), batch.batch_size, batch.seq_len, &loss));
  return model.Backward(1.0f);
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Status TimedPasses(LlamaModel& model, const Batch& batch, const CalibrationOptions& options, ComputeRate* rate) {
  const auto warm_up = Clock::now();
  TRIB_RETURN_IF_ERROR(ForwardBackward(model, batch));  // first touch of activations and caches
  const double warm_up_seconds = SecondsSince(warm_up);
  if (warm_up_seconds >= options.max_seconds) {
    // One pass already took the whole budget: compute dominates it, and a second would double the wait.
    rate->steps = 1;
    rate->seconds = warm_up_seconds;
    rate->tokens = batch.batch_size * batch.seq_len;
    return Status::OK();
  }
  const auto started = Clock::now();
  while (rate->steps < options.max_steps) {
    TRIB_RETURN_IF_ERROR(ForwardBackward(model, batch));
    ++rate->steps;
    rate->seconds = SecondsSince(started);
    if (rate->seconds >= options.max_seconds) break;
  }
  rate->tokens = rate->steps * batch.batch_size * batch.seq_len;
  return Status::OK();
}

}  // namespace

Result<ComputeRate> MeasureComputeRate(LlamaModel& model, LoraAdapters* adapters, const std::vector<SequenceRow>& rows,
                                       int64_t batch_size, const CalibrationOptions& options) {
  if (rows.empty()) return Status::InvalidArgument("calibration: no training rows");
  if (batch_size < 1) return Status::InvalidArgument("calibration: batch_size " + std::to_string(batch_size) + " < 1");
  if (!(options.max_seconds > 0) || options.max_steps < 1)
    return Status::InvalidArgument("calibration: max_seconds and max_steps must be positive");
  const Batch batch = MakeBatch(rows, 0, batch_size);
  if (adapters != nullptr) adapters->Attach(model);
  ComputeRate rate;
  Status timed = TimedPasses(model, batch, options, &rate);
  if (adapters != nullptr) {
    LoraAdapters::Detach(model);
    model.SetBaseTrainable(true);
    adapters->ZeroGrad();
  }
  model.ZeroGrad();
  TRIB_RETURN_IF_ERROR(timed.WithContext("calibration"));
  // A clock too coarse to see the passes gives no rate rather than an infinite one.
  if (!(rate.seconds > 0)) return Status::FailedPrecondition("calibration: the timed passes took no measurable time");
  rate.tokens_per_s = static_cast<double>(rate.tokens) / rate.seconds;
  return rate;
}

}  // namespace tributary
