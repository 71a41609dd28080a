// The cluster-mode planner (scheduler/planner.h) against NIC-oblivious round-robin islands and the
// all-fast ideal, simulated with the flow-level model (scheduler/flow_sim.h), from the 8-worker mixed
// topology of B1 to 4,096 workers; plus the planner's own run time.
//
//   build/bench/placement_sim_bench [--max-workers N]
//
// Topology (real-scale rates): sites of 16 workers, each site one class — InfiniBand 100 Gb/s, RoCE
// 50 Gb/s, or Ethernet-only 10 Gb/s LAN — in the ratio 2 : 1 : 1; every site reaches the WAN core at
// 10 Gb/s; the coordinator has 100 Gb/s. Compute: 4000 tokens/s on IB sites, 3000 on RoCE, 2000 on
// Ethernet-only (older GPUs). Job: 1.1e9 values (G = 4.4 GB fp32 gradients), an island batch of 64k
// tokens per inner step, H 100, int8 outer payload (1.1 GB).
// Policies (same H and codec): nic-aware = the planner's islands, rings, leaders and compute shares;
// round-robin = one island per site's worth of workers, dealt as contiguous blocks of the inventory
// (sites interleaved, so islands span sites), index-order rings, equal shares; ideal = every site on a
// 100 Gb/s fabric, planned by the planner. Throughput = tokens of one outer round / its simulated time.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "scheduler/flow_sim.h"
#include "scheduler/planner.h"

namespace tributary {
namespace {

constexpr double kValues = 1.1e9;
constexpr int64_t kIslandBatch = 65536;
constexpr int64_t kLocalSteps = 100;

struct Topology {
  SimCluster sim;
  std::vector<PlanWorker> inventory;
};

PlanWorker InventoryWorker(const SimWorker& w) {
  PlanWorker p;
  p.inventory.worker_id = w.id;
  p.inventory.alive = true;
  NicInfo eth{"eth0", NicFabric::kEthernet, static_cast<int64_t>(w.eth_mbps), true, "lan-" + w.site};
  p.inventory.nics.push_back(eth);
  if (!w.fabric.empty()) {
    const bool ib = w.fabric.rfind("ib", 0) == 0;
    p.inventory.nics.push_back(
        {"fab0", ib ? NicFabric::kInfiniband : NicFabric::kRoce, static_cast<int64_t>(w.fabric_mbps), true, w.fabric});
  }
  p.tokens_per_s = w.tokens_per_s;
  return p;
}

void AddSite(Topology* t, const std::string& site, const char* kind, int workers) {
  t->sim.sites.push_back({site, 10000, 5});
  for (int i = 0; i < workers; ++i) {
    SimWorker w;
    w.id = site + "-" + std::to_string(i);
    w.site = site;
    w.eth_mbps = 10000;
    if (std::strcmp(kind, "ib") == 0) w.fabric = "ib-" + site, w.fabric_mbps = 100000, w.tokens_per_s = 4000;
    if (std::strcmp(kind, "roce") == 0) w.fabric = "roce-" + site, w.fabric_mbps = 50000, w.tokens_per_s = 3000;
    if (std::strcmp(kind, "eth") == 0) w.tokens_per_s = 2000;
    t->sim.workers.push_back(w);
  }
}

// Sites of 16 (B1's mix for 8 workers: IB 4, RoCE 2, Ethernet 2), workers listed sites interleaved.
Topology MakeTopology(int workers) {
  Topology t;
  t.sim.coordinator_mbps = 100000;
  t.sim.coordinator_latency_ms = 1;
  if (workers == 8) {
    AddSite(&t, "s0", "ib", 4);
    AddSite(&t, "s1", "roce", 2);
    AddSite(&t, "s2", "eth", 2);
  } else {
    const char* kinds[4] = {"ib", "ib", "roce", "eth"};
    for (int s = 0; s < workers / 16; ++s) AddSite(&t, "s" + std::to_string(s), kinds[s % 4], 16);
  }
  std::vector<std::vector<const SimWorker*>> by_site(t.sim.sites.size());
  for (const SimWorker& w : t.sim.workers) by_site[std::stoi(w.site.substr(1))].push_back(&w);
  for (size_t k = 0; t.inventory.size() < t.sim.workers.size(); ++k)
    for (const auto& site : by_site)
      if (k < site.size()) t.inventory.push_back(InventoryWorker(*site[k]));
  return t;
}

SimRound RoundOf(const ClusterPlan& plan) {
  SimRound round;
  for (const IslandPlan& island : plan.islands)
    round.islands.push_back({island.ring, island.shares, island.batch_tokens});
  round.local_steps = kLocalSteps;
  round.gradient_bytes = kValues * 4;
  round.payload_bytes = kValues;
  return round;
}

// Contiguous blocks of the interleaved inventory (Megatron's default mapping over the host list), so
// every island spans sites and fabrics.
SimRound RoundRobin(const Topology& t, size_t islands) {
  SimRound round = {};
  round.islands.resize(islands);
  for (size_t i = 0; i < t.inventory.size(); ++i)
    round.islands[i * islands / t.inventory.size()].ring.push_back(t.inventory[i].inventory.worker_id);
  for (SimIsland& island : round.islands) {
    for (const std::string& id : island.ring) island.shares[id] = 1.0 / static_cast<double>(island.ring.size());
    island.batch_tokens = kIslandBatch;
  }
  round.local_steps = kLocalSteps;
  round.gradient_bytes = kValues * 4;
  round.payload_bytes = kValues;
  return round;
}

int Run(int max_workers) {
  std::printf("%-8s %-9s %-10s %-12s %-12s %-12s %-14s %-14s %s\n", "workers", "islands", "plan_ms", "nic-aware",
              "round-robin", "ideal", "aware/ideal", "aware/rr", "outer/inner (aware)");
  for (int workers : {8, 64, 256, 1024, 4096}) {
    if (workers > max_workers) break;
    const Topology t = MakeTopology(workers);
    PlanJob job;
    job.parameters = static_cast<int64_t>(kValues);
    job.tokens_per_step = kIslandBatch;
    job.local_steps = kLocalSteps;
    job.codecs = {{"int8", static_cast<uint64_t>(kValues)}};
    const auto start = std::chrono::steady_clock::now();
    Result<ClusterPlan> plan = PlanCluster(t.inventory, LinkMatrix(), job);
    const double plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!plan.ok()) {
      std::fprintf(stderr, "plan: %s\n", plan.status().ToString().c_str());
      return 1;
    }
    // The ideal: every site on a 100 Gb/s fabric, planned the same way.
    Topology ideal = t;
    for (SimWorker& w : ideal.sim.workers) w.fabric = "ib-ideal-" + w.site, w.fabric_mbps = 100000;
    ideal.inventory.clear();
    for (const SimWorker& w : ideal.sim.workers) ideal.inventory.push_back(InventoryWorker(w));
    Result<ClusterPlan> ideal_plan = PlanCluster(ideal.inventory, LinkMatrix(), job);
    if (!ideal_plan.ok()) return 1;
    Result<SimResult> aware = SimulateRound(t.sim, RoundOf(*plan));
    Result<SimResult> rr = SimulateRound(t.sim, RoundRobin(t, ideal_plan->islands.size()));
    Result<SimResult> best = SimulateRound(ideal.sim, RoundOf(*ideal_plan));
    if (!aware.ok() || !rr.ok() || !best.ok()) {
      std::fprintf(stderr, "simulate: %s %s %s\n", aware.status().ToString().c_str(), rr.status().ToString().c_str(),
                   best.status().ToString().c_str());
      return 1;
    }
    std::printf("%-8d %-9zu %-10.1f %-12.0f %-12.0f %-12.0f %-14.3f %-14.2f %.3f\n", workers, plan->islands.size(),
                plan_ms, aware->tokens_per_s, rr->tokens_per_s, best->tokens_per_s,
                aware->tokens_per_s / best->tokens_per_s, aware->tokens_per_s / rr->tokens_per_s,
                aware->outer_sync_s / aware->inner_phase_s);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  int max_workers = 4096;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--max-workers") max_workers = std::stoi(argv[i + 1]);
  return tributary::Run(max_workers);
}
