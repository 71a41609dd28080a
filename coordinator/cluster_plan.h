// Cluster mode's plan as the running job and `tributary plan` use it (docs/placement.md): the planner's
// inputs from a job spec and its model, the plan in the wire's view (status, /api, the CLI's table), and
// what changed between two outer rounds' plans (the job log's re-planning line).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/tensor_table.h"
#include "federation/job_spec.h"
#include "scheduler/planner.h"
#include "transport/message.h"

namespace tributary {

// What the plan may choose instead of taking it from the spec (the spec's own auto values choose too).
struct PlanChoices {
  std::string codec;         // "" = the spec's cluster.codec; "auto" = the cost model picks (AutoOuterCodecs)
  int64_t local_steps = -1;  // -1 = the spec's train.local_steps (0: auto); 0 = the cost model picks H; N = fixed
  RingObjective ring_objective = RingObjective::kMaxMin;
};

// The planner's job for `spec` whose trained state has the tensors of `table`: parameters, tokens per inner
// step (batch_size x grad_accum x seq_len), each candidate codec's encoded size of one pseudo-gradient, H
// and the spec's islands. InvalidArgument naming the field for a spec that is not cluster mode, a bad
// codec or H, or bad islands.
Result<PlanJob> PlanJobForSpec(const JobSpec& spec, const TensorTable& table, const PlanChoices& choices);

// What a running job does without a plan (the planner failed) for train.local_steps / cluster.codec auto:
// the planner's own choice when nothing is measured.
inline constexpr int64_t kFallbackLocalSteps = 100;
inline constexpr const char* kFallbackCodec = "fp32";

// One outer round's H and codec: the spec's where fixed; where auto, the plan's, or without a plan the
// fallback above, with the reason.
struct RoundOuter {
  int64_t local_steps = 0;
  std::string codec;   // "" = the spec's cluster.codec (fixed)
  std::string reason;  // "" when nothing is auto
};
RoundOuter ChooseRoundOuter(const JobSpec& spec, const ClusterPlan* plan);

// The plan as GetJobReply.plan carries it; `round` is the outer round it was made for (0: none).
v1::ClusterPlanView ClusterPlanToView(const ClusterPlan& plan, uint64_t round);
// Its JSON object: the view's fields by their proto names (shares an object of member -> fraction).
nlohmann::json ClusterPlanJson(const v1::ClusterPlanView& plan);
// A table (one row per island: fabric, leader, batch, bottleneck, step and inner-phase times, ring with
// shares), then H, codec and the predicted times, then every reason; lines end in '\n'.
std::string ClusterPlanText(const v1::ClusterPlanView& plan);

// What a worker would notice changed from `before` to `after`: islands formed or gone, members, ring order,
// leader, H, codec; "" when none did. One line, e.g. "island a: ring w2 > w1 (was w1 > w2); H 50 (was 25)".
std::string DescribePlanChange(const ClusterPlan& before, const ClusterPlan& after);

}  // namespace tributary
