// Cluster mode's batch per member in one outer round (docs/placement.md, "The running job's plan"): the
// plan's island batch split among the members by their measured compute, so the members finish each inner
// step together. Pure functions; the round driver keeps the result in its open round's islands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "coordinator/cluster_round.h"
#include "federation/job_spec.h"
#include "scheduler/planner.h"

namespace tributary {

// `island_batch` sequences split in proportion to `shares` (any positive scale): largest remainders (ties to
// the earlier member) keep the total, then every member with none takes one from the largest batch, so each
// trains at least one. An island batch below the member count is raised to it (one each). InvalidArgument
// for no members or a share that is not finite and > 0.
Result<std::vector<int64_t>> SplitIslandBatch(int64_t island_batch, const std::vector<double>& shares);

// Sets every island's batch and shares from `plan` when all its islands' compute is measured and some member
// would train other than train.batch_size; else clears them (every member trains train.batch_size, as an
// unplanned round). An island's batch is its planned tokens over seq_len x grad_accum. Returns why, one line.
std::string ApplyPlanBatches(const ClusterPlan& plan, const JobSpec& spec, std::vector<RoundIsland>* islands);

// The batch of each member of `island` in its members' order (its shares renormalised over the members it
// has now, so a re-formed island keeps its batch); empty when the island has no planned batch.
Result<std::vector<int64_t>> MemberBatches(const RoundIsland& island);

// "island a: w1 3, w2 1; island b: w3 4" for the job log; "" when no island has a planned batch.
std::string MemberBatchesText(const std::vector<RoundIsland>& islands);

}  // namespace tributary
