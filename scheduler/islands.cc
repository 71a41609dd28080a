#include "scheduler/islands.h"

#include <algorithm>
#include <map>
#include <set>

namespace tributary {

namespace {

int FabricRank(NicFabric fabric) {
  switch (fabric) {
    case NicFabric::kInfiniband: return 0;
    case NicFabric::kRoce: return 1;
    case NicFabric::kEthernet: return 2;
    default: return 3;
  }
}

}  // namespace

const NicInfo* PrimaryFabricNic(const WorkerInventory& worker) {
  const NicInfo* best = nullptr;
  for (const NicInfo& nic : worker.nics) {
    if (nic.fabric_id.empty() || !IsPlaceable(nic)) continue;
    if (best == nullptr || FabricRank(nic.fabric) < FabricRank(best->fabric) ||
        (FabricRank(nic.fabric) == FabricRank(best->fabric) && nic.speed_mbps > best->speed_mbps))
      best = &nic;
  }
  return best;
}

std::string PrimaryFabric(const WorkerInventory& worker) {
  const NicInfo* nic = PrimaryFabricNic(worker);
  return nic == nullptr ? "" : std::string(NicFabricName(nic->fabric)) + ":" + nic->fabric_id;
}

std::vector<IslandDefinition> IslandsByFabric(const std::vector<WorkerInventory>& workers) {
  std::map<std::string, std::vector<std::string>> by_name;
  for (const WorkerInventory& worker : workers) {
    const NicInfo* nic = PrimaryFabricNic(worker);
    by_name[nic == nullptr ? worker.worker_id : "fabric:" + nic->fabric_id].push_back(worker.worker_id);
  }
  std::vector<IslandDefinition> islands;
  for (auto& [name, members] : by_name) {
    std::sort(members.begin(), members.end());
    islands.push_back({name, std::move(members)});
  }
  return islands;
}

std::vector<IslandDecision> DecideIslands(const std::vector<IslandDefinition>& islands,
                                          const std::vector<std::string>& eligible) {
  const std::set<std::string> ok(eligible.begin(), eligible.end());
  std::vector<IslandDecision> decisions;
  for (const IslandDefinition& island : islands) {
    IslandDecision d;
    d.name = island.name;
    for (const std::string& worker : island.workers)
      if (ok.count(worker) > 0) d.members.push_back(worker);
    std::sort(d.members.begin(), d.members.end());
    const size_t configured = island.workers.size();
    const bool has_first = !island.workers.empty() && ok.count(island.workers.front()) > 0;
    const bool tie = 2 * d.members.size() == configured;
    d.trains = 2 * d.members.size() > configured || (tie && has_first);
    d.reason = std::to_string(d.members.size()) + " of " + std::to_string(configured) + " members eligible";
    if (d.trains && tie) d.reason += ", with its first member (a tie)";
    if (!d.trains) d.reason += ": no majority";
    decisions.push_back(std::move(d));
  }
  return decisions;
}

}  // namespace tributary
