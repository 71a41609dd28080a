// Cluster mode's islands in one outer round (docs/cluster.md): which islands train, with which members,
// under which incarnation, and how an island re-forms when a member dies mid-round. Pure functions
// (no networking, no store): the round driver keeps their result in its open round.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "federation/job_spec.h"
#include "scheduler/planner.h"
#include "scheduler/scheduler.h"

namespace tributary {

// One island of an open round.
struct RoundIsland {
  std::string name;
  uint64_t incarnation = 0;          // unique per (re-)formation; members fence stale peers with it
  std::vector<std::string> members;  // in ring order (the gloo ranks), else ascending; members[0] leads and uploads
  std::string reason;                // why it trains with these members (one line)
  // The planned ring over the island's members (coordinator/cluster_plan.h), empty before planning; a
  // re-formed incarnation keeps the survivors in this order.
  std::vector<std::string> ring;
  // The planned batch (coordinator/cluster_batches.h): sequences per micro-batch of all members together
  // and each member's share of it; 0 = every member trains train.batch_size.
  int64_t batch = 0;
  std::map<std::string, double> shares;
};

// Reorders `members` to follow `ring` (members not in it keep their order, after those that are).
void OrderByRing(const std::vector<std::string>& ring, std::vector<std::string>* members);

// The islands of a round from the spec's membership (cluster.islands, or the planner's islands from the
// workers' fabric identity in `inventory` and the `measured` links) and the round's eligible `participants`: every
// island with a strict majority of its members eligible trains (scheduler/islands.h). Incarnations are
// next_incarnation, +1, ... in island order. FailedPrecondition naming every island's reason when none can train.
Result<std::vector<RoundIsland>> PlanRoundIslands(const JobSpec& spec, const std::vector<WorkerInventory>& inventory,
                                                  const PlanMeasurements& measured,
                                                  const std::vector<std::string>& participants,
                                                  uint64_t next_incarnation);

// What re-forming did to one island.
struct IslandChange {
  std::string name;
  bool dropped = false;  // no majority left: the island sits the round out
  std::string line;      // for the job log
};

// Re-forms every island of `islands` that has a member outside `alive` and whose leader has not reported
// (`reported` ascending): the alive members form a new incarnation (next_incarnation, +1, ...) when they
// are still a strict majority of the island's configured membership, else the island is dropped from the
// round. `configured` is PlanRoundIslands' membership source for the same spec and inventory.
std::vector<IslandChange> ReformIslands(const JobSpec& spec, const std::vector<WorkerInventory>& inventory,
                                        const PlanMeasurements& measured, const std::set<std::string>& alive,
                                        const std::vector<std::string>& reported, uint64_t* next_incarnation,
                                        std::vector<RoundIsland>* islands);

// The island leaders (the round's uploaders), ascending.
std::vector<std::string> IslandLeaders(const std::vector<RoundIsland>& islands);

}  // namespace tributary
