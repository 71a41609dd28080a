// The cluster-mode planner (docs/placement.md): a pure function of the workers' inventory, the measured
// links and the job that returns the plan with the reason for every decision, so an operator (and a
// test) can see why the plan is what it is:
//   islands  — fabric identity first (a dense data-parallel group never spans fabrics), then bandwidth
//              clustering inside a fabric (and among workers that report no fabric identity);
//   per island — the ring order (scheduler/ring_order.h), the leader (best measured uplink to the
//              coordinator), batch shares proportional to measured compute, and the batch per inner
//              step scaled by the island's compute so islands finish their H inner steps together;
//   across islands — H and the outer codec from a cost model: the least H, and at it the least lossy
//              codec, whose outer sync costs at most max_outer_fraction of an inner phase.
// Cost model (per island of n members, G = parameters x gradient_bytes_per_value):
//   inner step  = batch_tokens / island tokens_per_s + ring all-reduce,
//   all-reduce  = 2 (n-1)/n G / bottleneck + (n-1) RTT         (bandwidth-optimal ring, α-β model),
//   inner phase = H x inner step,
//   outer sync  = max over leaders (payload / uplink) + max over workers (payload / uplink) + 2 RTT
//                 (upload of the island's pseudo-gradient, then every member fetches the mean).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "scheduler/islands.h"
#include "scheduler/ring_order.h"
#include "scheduler/scheduler.h"

namespace tributary {

struct LinkMeasurement {
  double mbps = 0;    // TCP goodput, Mbit/s
  double rtt_ms = 0;  // round trip, milliseconds
};

// Measured links between workers (kept symmetric: a probe in each direction stores the smaller) and
// from each worker to the coordinator.
class LinkMatrix {
 public:
  // Records a link; a second measurement of the same pair keeps the smaller bandwidth and larger RTT.
  void Set(const std::string& a, const std::string& b, LinkMeasurement link);
  // nullptr when the pair was not measured.
  const LinkMeasurement* Find(const std::string& a, const std::string& b) const;
  void SetUplink(const std::string& worker, LinkMeasurement link);
  const LinkMeasurement* FindUplink(const std::string& worker) const;
  size_t pair_count() const { return links_.size(); }

 private:
  std::map<std::pair<std::string, std::string>, LinkMeasurement> links_;  // key: (smaller id, larger id)
  std::map<std::string, LinkMeasurement> uplinks_;
};

// What the coordinator measured for one job's workers: the links between them and to the
// coordinator (probes) and each worker's compute rate for the job's model (calibration). The running
// job plans with it (coordinator/cluster_round.h); empty members mean "not measured".
struct PlanMeasurements {
  LinkMatrix links;
  std::map<std::string, double> tokens_per_s;  // worker -> tokens/s of the job's model
};

struct PlanWorker {
  WorkerInventory inventory;  // id, NICs (fabric, speed, fabric_id)
  double tokens_per_s = 0;    // measured compute rate for the job's model; 0 = not measured
};

struct OuterCodecChoice {
  std::string name;    // "fp32", "int8", ... (federation/outer_codec.h)
  uint64_t bytes = 0;  // encoded size of one island's pseudo-gradient
};

struct PlanJob {
  int64_t parameters = 0;       // values in the all-reduced gradient and in the pseudo-gradient
  int64_t tokens_per_step = 0;  // an island's batch per inner step, before equalisation
  // All islands' batch per inner step together, shared out by TimeIslands; 0 = tokens_per_step x islands.
  // The running job sets it to what its participants train unplanned (train.batch_size each).
  int64_t total_tokens_per_step = 0;
  double gradient_bytes_per_value = 4;
  int64_t local_steps = 0;  // H fixed by the job; 0 = chosen from {10, 25, 50, 100, 200, 500, 1000}
  int64_t max_local_steps = 500;
  std::vector<OuterCodecChoice> codecs;  // candidates, least lossy first; one entry = fixed by the job
  double max_outer_fraction = 0.05;
  RingObjective ring_objective = RingObjective::kMaxMin;
  // Inside a fabric, workers whose links are this many times slower than the fabric's fastest
  // measured link form separate islands.
  double bandwidth_split = 4.0;
  // Workers that report no fabric identity share an island only over measured links this fast.
  double min_dense_mbps = 1000;
  std::vector<IslandDefinition> islands;  // fixed by the job (cluster.islands); empty = formed here
};

struct IslandPlan {
  std::string name;
  std::string fabric;                // "infiniband:ib-a", or "none" (no fabric identity)
  std::vector<std::string> members;  // ascending
  std::vector<std::string> ring;     // ring order, starting at the leader
  std::string leader;
  std::map<std::string, double> shares;  // member -> fraction of the island's batch (sums to 1)
  double tokens_per_s = 0;               // the members' sum; 0 when any is unmeasured
  int64_t batch_tokens = 0;              // per inner step, scaled so islands finish together
  double bottleneck_mbps = 0;            // the ring's slowest link
  double uplink_mbps = 0;                // the leader's; 0 when not measured
  double step_compute_s = 0, step_allreduce_s = 0, inner_phase_s = 0;
  std::vector<std::string> reasons;
};

struct ClusterPlan {
  std::vector<IslandPlan> islands;  // by name
  int64_t local_steps = 0;
  std::string codec;
  uint64_t outer_payload_bytes = 0;
  double inner_phase_s = 0;   // the slowest island's; 0 when compute is unmeasured
  double outer_sync_s = 0;    // 0 when uplinks are unmeasured
  double outer_fraction = 0;  // outer_sync_s / inner_phase_s; 0 when either is unknown
  bool meets_target = false;  // outer_fraction <= max_outer_fraction (false when unknown)
  std::vector<std::string> reasons;
};

// The islands alone (decisions 1 and 2: fabric identity, then bandwidth clustering; job-given islands
// checked), members ascending: the runtime's membership source (coordinator/cluster_round.h), so the
// running job and `tributary plan` form the same islands. Errors as PlanCluster's for islands.
Result<std::vector<IslandDefinition>> PlanIslands(const std::vector<PlanWorker>& workers, const LinkMatrix& links,
                                                  const PlanJob& job);

// The plan. InvalidArgument naming the field for a bad job (parameters, tokens_per_step, codecs, a
// fraction out of range) or a worker that is not in the inventory; FailedPrecondition saying why for
// an infeasible job: no workers, or a job-given island whose members are on different fabrics (a
// dense group never spans fabrics silently).
Result<ClusterPlan> PlanCluster(const std::vector<PlanWorker>& workers, const LinkMatrix& links, const PlanJob& job);

}  // namespace tributary
