// Islands for cluster mode (docs/cluster.md): which workers train together as one data-parallel group in
// an outer round. Pure functions of the configured membership and the round's eligible workers, each
// decision with its reason (the NIC-aware planner replaces IslandsByFabric as the membership source).
#pragma once

#include <string>
#include <vector>

#include "scheduler/scheduler.h"

namespace tributary {

// An island's configured membership: the workers that belong to it, whether or not they are alive.
struct IslandDefinition {
  std::string name;
  std::vector<std::string> workers;
};

// A worker's fabric for placement: its fastest placeable NIC (scheduler/nic.h) that names its network,
// InfiniBand before RoCE before Ethernet; nullptr when none does.
const NicInfo* PrimaryFabricNic(const WorkerInventory& worker);
// That NIC's fabric as "infiniband:ib-a" (type:fabric_id); "" when there is none.
std::string PrimaryFabric(const WorkerInventory& worker);

// Islands from the workers' reported fabric identity: the workers whose primary fabric NIC
// (PrimaryFabricNic) has the same fabric_id form island "fabric:<id>"; a worker with none is an island
// of its own, named after it. Islands and members in ascending order.
std::vector<IslandDefinition> IslandsByFabric(const std::vector<WorkerInventory>& workers);

// Whether an island trains in a round, with whom, and why (not).
struct IslandDecision {
  std::string name;
  std::vector<std::string> members;  // eligible members, ascending: members[0] leads (uploads)
  bool trains = false;
  std::string reason;  // one line: "2 of 2 members eligible" / "1 of 3 members eligible: no majority"
};

// Decides every configured island: it trains with its eligible members when they are a strict majority
// of its configured members, or exactly half of them including the first configured member (so of two
// halves of a partitioned island at most one ever trains, and a 2-member island survives losing its
// second member); it sits out otherwise. `eligible` need not be sorted; workers of no island are ignored.
std::vector<IslandDecision> DecideIslands(const std::vector<IslandDefinition>& islands,
                                          const std::vector<std::string>& eligible);

}  // namespace tributary
