#include "coordinator/cluster_round.h"

#include <algorithm>

#include "scheduler/islands.h"
#include "scheduler/planner.h"

namespace tributary {
namespace {

// The configured membership: the spec's explicit islands (validated when the spec was parsed), or the
// planner's islands from the workers' fabric identity and the measured links (scheduler/planner.h).
std::vector<IslandDefinition> ConfiguredIslands(const JobSpec& spec, const std::vector<WorkerInventory>& inventory,
                                                const PlanMeasurements& measured) {
  if (spec.cluster.islands.empty()) {
    std::vector<PlanWorker> workers;
    for (const WorkerInventory& worker : inventory) {
      auto rate = measured.tokens_per_s.find(worker.worker_id);
      workers.push_back({worker, rate == measured.tokens_per_s.end() ? 0 : rate->second});
    }
    Result<std::vector<IslandDefinition>> planned = PlanIslands(workers, measured.links, PlanJob());
    return planned.ok() ? *planned : IslandsByFabric(inventory);
  }
  std::vector<IslandDefinition> islands;
  auto parsed = ParseIslands(spec.cluster.islands);
  if (!parsed.ok()) return islands;
  for (IslandSpec& island : *parsed) islands.push_back({island.name, std::move(island.workers)});
  return islands;
}

const IslandDefinition* FindDefinition(const std::vector<IslandDefinition>& islands, const std::string& name) {
  for (const IslandDefinition& island : islands)
    if (island.name == name) return &island;
  return nullptr;
}

}  // namespace

Result<std::vector<RoundIsland>> PlanRoundIslands(const JobSpec& spec, const std::vector<WorkerInventory>& inventory,
                                                  const PlanMeasurements& measured,
                                                  const std::vector<std::string>& participants,
                                                  uint64_t next_incarnation) {
  std::vector<RoundIsland> islands;
  std::string reasons;
  for (const IslandDecision& d : DecideIslands(ConfiguredIslands(spec, inventory, measured), participants)) {
    reasons += (reasons.empty() ? "" : "; ") + d.name + ": " + d.reason;
    if (d.trains) islands.push_back({d.name, next_incarnation++, d.members, d.reason, {}, 0, {}});
  }
  if (islands.empty())
    return Status::FailedPrecondition("no island can train (" + (reasons.empty() ? "no islands" : reasons) + ")");
  return islands;
}

std::vector<IslandChange> ReformIslands(const JobSpec& spec, const std::vector<WorkerInventory>& inventory,
                                        const PlanMeasurements& measured, const std::set<std::string>& alive,
                                        const std::vector<std::string>& reported, uint64_t* next_incarnation,
                                        std::vector<RoundIsland>* islands) {
  const std::vector<IslandDefinition> configured = ConfiguredIslands(spec, inventory, measured);
  std::vector<IslandChange> changes;
  std::vector<RoundIsland> kept;
  for (RoundIsland& island : *islands) {
    const bool done = std::binary_search(reported.begin(), reported.end(), island.members.front());
    std::vector<std::string> lost;
    for (const std::string& m : island.members)
      if (alive.count(m) == 0) lost.push_back(m);
    if (done || lost.empty()) {
      kept.push_back(std::move(island));
      continue;
    }
    std::string lost_names;
    for (const std::string& m : lost) lost_names += (lost_names.empty() ? "" : ", ") + m;
    const IslandDefinition* definition = FindDefinition(configured, island.name);
    std::vector<IslandDecision> decision =
        DecideIslands({definition ? *definition : IslandDefinition{island.name, island.members}},
                      std::vector<std::string>(alive.begin(), alive.end()));
    IslandChange change;
    change.name = island.name;
    if (!decision.front().trains) {
      change.dropped = true;
      change.line =
          "island " + island.name + " lost " + lost_names + " and sits the round out (" + decision.front().reason + ")";
    } else {
      island.members = decision.front().members;
      OrderByRing(island.ring, &island.members);
      island.incarnation = (*next_incarnation)++;
      island.reason = decision.front().reason;
      change.line = "island " + island.name + " lost " + lost_names + ": re-formed as incarnation " +
                    std::to_string(island.incarnation) + " with " + std::to_string(island.members.size()) +
                    " member(s), led by " + island.members.front();
      kept.push_back(std::move(island));
    }
    changes.push_back(std::move(change));
  }
  *islands = std::move(kept);
  return changes;
}

void OrderByRing(const std::vector<std::string>& ring, std::vector<std::string>* members) {
  auto position = [&ring](const std::string& m) {
    return static_cast<size_t>(std::find(ring.begin(), ring.end(), m) - ring.begin());
  };
  std::stable_sort(members->begin(), members->end(),
                   [&](const std::string& a, const std::string& b) { return position(a) < position(b); });
}

std::vector<std::string> IslandLeaders(const std::vector<RoundIsland>& islands) {
  std::vector<std::string> leaders;
  for (const RoundIsland& island : islands) leaders.push_back(island.members.front());
  std::sort(leaders.begin(), leaders.end());
  return leaders;
}

}  // namespace tributary
