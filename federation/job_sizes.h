// The sizes a job spec derives by multiplying its fields (job_spec.h: kMaxMicroBatchTokens,
// kMaxRoundTokens, CheckJobSizesForModel), computed with overflow checks. Internal to the federation
// library: ParseJobSpec calls CheckDerivedSizes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "federation/job_spec.h"

namespace tributary {

// Tokens per micro-batch (seq_len x batch_size) and per round (x grad_accum x local_steps) within their
// bounds, else InvalidArgument "SOURCE: field 'F': FACTORS is more than N tokens per ..." naming the field
// to lower; `describe(field, value)` renders each factor (with where it was set).
Status CheckDerivedSizes(const JobSpec& spec, const std::string& source,
                         const std::function<std::string(const char* field, int64_t value)>& describe);

}  // namespace tributary
