// Compute calibration (docs/placement.md, "Compute calibration"): how many tokens per second this
// worker trains for one job's model, so the cluster planner can split batches by measured compute.
// A real forward+backward of one micro-batch of the job's shape (batch_size x seq_len tokens from the
// worker's own rows), one warm-up, then timed passes until a time or step bound; a warm-up that alone
// took the whole time budget is the measurement (a second pass would double the wait for little). No
// optimizer step runs, so the trainable state is unchanged; only the rate leaves the worker.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "peft/lora.h"

namespace tributary {

// `tributary worker` fills these from worker.calibrate, worker.tokens_per_s and the bounds below.
struct CalibrationOptions {
  bool enabled = true;      // false: no calibration and nothing reported
  double tokens_per_s = 0;  // > 0: reported for every job instead of measuring (an operator's override)
  // Timed passes stop after this many seconds or passes, whichever comes first (at least one runs).
  double max_seconds = 2.0;
  int64_t max_steps = 8;
};

struct ComputeRate {
  double tokens_per_s = 0;
  int64_t steps = 0;   // timed forward+backward passes
  int64_t tokens = 0;  // input tokens in the timed passes
  double seconds = 0;  // their wall time
};

// Times forward+backward passes of `model` (with `adapters` attached and the base frozen when not
// null, as a lora round trains) on rows [0, batch_size) of `rows`, wrapping. The model's and the
// adapters' gradients are zero afterwards; their parameters are untouched. Errors: no rows, a batch
// size below 1, bounds that are not positive, and the model's own (out-of-range ids).
Result<ComputeRate> MeasureComputeRate(LlamaModel& model, LoraAdapters* adapters, const std::vector<SequenceRow>& rows,
                                       int64_t batch_size, const CalibrationOptions& options);

}  // namespace tributary
