// Shortcuts for tests that play a worker or a replica by hand: the job's method built for a model's
// trainable state on the spot (product code builds it once per replica).
#pragma once

#include <cstdint>
#include <span>

#include "federation/method.h"
#include "federation/tasklet.h"

namespace tributary::testutil {

// RunTasklet with the spec's method for a model that trains its own parameters.
inline Result<TaskletResult> RunModelTasklet(const TaskletInput& input, LlamaModel& model) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<FederatedMethod> method, CreateMethod(input.spec, model.params().table_ptr()));
  return RunTasklet(input, *method, model);
}

// The spec's method applying a committed aggregate to `state`.
inline Status ApplyRound(const JobSpec& spec, uint32_t round, std::span<const uint8_t> aggregate, Arena* state) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<FederatedMethod> method, CreateMethod(spec, state->table_ptr()));
  return method->Apply(aggregate, round, state);
}

}  // namespace tributary::testutil
