#include "scheduler/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <set>

namespace tributary {
namespace {

std::pair<std::string, std::string> PairKey(const std::string& a, const std::string& b) {
  return a < b ? std::make_pair(a, b) : std::make_pair(b, a);
}

std::string Num(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

// Bandwidth between two workers: measured, else the slower of their fabric NICs when they share a
// fabric, else 0 (unknown). *measured tells which.
double PairMbps(const PlanWorker& a, const PlanWorker& b, const LinkMatrix& links, bool* measured) {
  const LinkMeasurement* link = links.Find(a.inventory.worker_id, b.inventory.worker_id);
  *measured = link != nullptr;
  if (link != nullptr) return link->mbps;
  const NicInfo* na = PrimaryFabricNic(a.inventory);
  const NicInfo* nb = PrimaryFabricNic(b.inventory);
  if (na == nullptr || nb == nullptr || PrimaryFabric(a.inventory) != PrimaryFabric(b.inventory)) return 0;
  return static_cast<double>(std::min(na->speed_mbps, nb->speed_mbps));
}

// Connected components of `members` (indices into workers) over pairs for which `joined` holds.
std::vector<std::vector<int>> Components(const std::vector<int>& members, const std::function<bool(int, int)>& joined) {
  std::vector<int> parent(members.size());
  std::iota(parent.begin(), parent.end(), 0);
  std::function<int(int)> root = [&](int x) { return parent[x] == x ? x : parent[x] = root(parent[x]); };
  for (size_t i = 0; i < members.size(); ++i)
    for (size_t j = i + 1; j < members.size(); ++j)
      if (joined(members[i], members[j])) parent[root(static_cast<int>(i))] = root(static_cast<int>(j));
  std::map<int, std::vector<int>> groups;
  for (size_t i = 0; i < members.size(); ++i) groups[root(static_cast<int>(i))].push_back(members[i]);
  std::vector<std::vector<int>> out;
  for (auto& [r, g] : groups) out.push_back(std::move(g));
  return out;
}

struct FormedIsland {
  std::string name, fabric;
  std::vector<int> members;  // indices into workers
  std::string reason;
};

// Splits one fabric's workers where measured links fall below its fastest link / bandwidth_split.
void SplitFabric(const std::string& fabric, const std::vector<int>& members, const std::vector<PlanWorker>& workers,
                 const LinkMatrix& links, const PlanJob& job, std::vector<FormedIsland>* out) {
  double fastest = 0;
  for (size_t i = 0; i < members.size(); ++i)
    for (size_t j = i + 1; j < members.size(); ++j)
      if (const LinkMeasurement* l =
              links.Find(workers[members[i]].inventory.worker_id, workers[members[j]].inventory.worker_id))
        fastest = std::max(fastest, l->mbps);
  const double floor = fastest / job.bandwidth_split;
  auto joined = [&](int a, int b) {
    const LinkMeasurement* l = links.Find(workers[a].inventory.worker_id, workers[b].inventory.worker_id);
    return l == nullptr || l->mbps >= floor;  // the fabric says they reach each other unless measured slow
  };
  const std::vector<std::vector<int>> parts = Components(members, joined);
  const std::string id = fabric.substr(fabric.find(':') + 1);
  for (size_t k = 0; k < parts.size(); ++k) {
    FormedIsland island{"fabric:" + id + (parts.size() > 1 ? "/" + std::to_string(k + 1) : ""), fabric, parts[k], ""};
    island.reason = "fabric " + fabric;
    if (parts.size() > 1)
      island.reason += ", split by measured bandwidth (links below " + Num(floor) + " Mbit/s = fastest " +
                       Num(fastest) + " / " + Num(job.bandwidth_split) + ")";
    out->push_back(std::move(island));
  }
}

// Workers without a fabric identity: islands over measured links >= min_dense_mbps; alone otherwise.
void GroupUnidentified(const std::vector<int>& members, const std::vector<PlanWorker>& workers, const LinkMatrix& links,
                       const PlanJob& job, std::vector<FormedIsland>* out) {
  auto joined = [&](int a, int b) {
    const LinkMeasurement* l = links.Find(workers[a].inventory.worker_id, workers[b].inventory.worker_id);
    return l != nullptr && l->mbps >= job.min_dense_mbps;
  };
  for (const std::vector<int>& part : Components(members, joined)) {
    FormedIsland island{workers[part.front()].inventory.worker_id, "none", part, ""};
    island.reason = part.size() == 1
                        ? "no fabric identity and no measured link >= " + Num(job.min_dense_mbps) + " Mbit/s: alone"
                        : "no fabric identity: grouped by measured links >= " + Num(job.min_dense_mbps) + " Mbit/s";
    if (part.size() > 1) island.name = "net:" + island.name;
    out->push_back(std::move(island));
  }
}

Result<std::vector<FormedIsland>> FormIslands(const std::vector<PlanWorker>& workers, const LinkMatrix& links,
                                              const PlanJob& job) {
  std::map<std::string, int> index;
  for (size_t i = 0; i < workers.size(); ++i) index[workers[i].inventory.worker_id] = static_cast<int>(i);
  std::vector<FormedIsland> out;
  if (!job.islands.empty()) {
    for (const IslandDefinition& def : job.islands) {
      FormedIsland island{def.name, "", {}, "given by the job (cluster.islands)"};
      for (const std::string& id : def.workers) {
        auto it = index.find(id);
        if (it == index.end())
          return Status::InvalidArgument("cluster.islands: island '" + def.name + "': worker '" + id +
                                         "' is not in the inventory");
        const std::string fabric = PrimaryFabric(workers[it->second].inventory);
        const std::string shown = fabric.empty() ? "no fabric identity" : fabric;
        if (!island.members.empty() && fabric != island.fabric)
          return Status::FailedPrecondition("cluster.islands: island '" + def.name +
                                            "': " + workers[island.members.front()].inventory.worker_id + " is on " +
                                            (island.fabric.empty() ? "no fabric identity" : island.fabric) + " and " +
                                            id + " on " + shown + "; a dense data-parallel group never spans fabrics");
        island.fabric = fabric;
        island.members.push_back(it->second);
      }
      if (island.fabric.empty()) island.fabric = "none";
      out.push_back(std::move(island));
    }
    return out;
  }
  std::map<std::string, std::vector<int>> by_fabric;
  for (size_t i = 0; i < workers.size(); ++i)
    by_fabric[PrimaryFabric(workers[i].inventory)].push_back(static_cast<int>(i));
  for (const auto& [fabric, members] : by_fabric) {
    if (fabric.empty())
      GroupUnidentified(members, workers, links, job, &out);
    else
      SplitFabric(fabric, members, workers, links, job, &out);
  }
  return out;
}

// The member with the fastest measured uplink to the coordinator (then lower RTT, then id).
void ChooseLeader(IslandPlan* plan, const LinkMatrix& links) {
  const LinkMeasurement* best = nullptr;
  for (const std::string& member : plan->members) {
    const LinkMeasurement* up = links.FindUplink(member);
    if (up == nullptr) continue;
    if (best == nullptr || up->mbps > best->mbps || (up->mbps == best->mbps && up->rtt_ms < best->rtt_ms)) {
      best = up;
      plan->leader = member;
    }
  }
  if (best == nullptr) {
    plan->leader = plan->members.front();
    plan->reasons.push_back("leader " + plan->leader + ": no uplink measured, the first member");
    return;
  }
  plan->uplink_mbps = best->mbps;
  plan->reasons.push_back("leader " + plan->leader + ": best uplink to the coordinator, " + Num(best->mbps) +
                          " Mbit/s");
}

// Shares of the island's batch proportional to measured compute (equal when any member is unmeasured).
void AssignShares(IslandPlan* plan, const std::vector<int>& members, const std::vector<PlanWorker>& workers) {
  double total = 0;
  bool all_measured = true;
  for (int m : members) {
    total += workers[m].tokens_per_s;
    all_measured = all_measured && workers[m].tokens_per_s > 0;
  }
  plan->tokens_per_s = all_measured ? total : 0;
  for (size_t i = 0; i < members.size(); ++i)
    plan->shares[plan->members[i]] =
        all_measured ? workers[members[i]].tokens_per_s / total : 1.0 / static_cast<double>(members.size());
  plan->reasons.push_back(all_measured ? "shares proportional to measured compute (" + Num(total) + " tokens/s)"
                                       : "equal shares: compute not measured on every member");
}

// Ring, leader and shares of one island; compute and all-reduce times of one step.
IslandPlan PlanIsland(const FormedIsland& formed, const std::vector<PlanWorker>& workers, const LinkMatrix& links,
                      const PlanJob& job) {
  IslandPlan plan;
  plan.name = formed.name;
  plan.fabric = formed.fabric;
  plan.reasons.push_back(formed.reason);
  std::vector<int> members = formed.members;
  std::sort(members.begin(), members.end(),
            [&](int a, int b) { return workers[a].inventory.worker_id < workers[b].inventory.worker_id; });
  for (int m : members) plan.members.push_back(workers[m].inventory.worker_id);

  const size_t n = members.size();
  BandwidthMatrix mbps(n, std::vector<double>(n, 0));
  int estimated = 0;
  double rtt_sum = 0;
  int rtt_count = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      bool measured = false;
      double w = PairMbps(workers[members[i]], workers[members[j]], links, &measured);
      if (!measured) ++estimated;
      if (w <= 0) w = 1;  // job-given islands without any bandwidth information: treat as equal links
      mbps[i][j] = mbps[j][i] = w;
      if (const LinkMeasurement* l = links.Find(plan.members[i], plan.members[j])) rtt_sum += l->rtt_ms, ++rtt_count;
    }
  }
  const RingOrder ring = SolveRingOrder(mbps, job.ring_objective);
  plan.bottleneck_mbps = ring.bottleneck_mbps;
  plan.reasons.push_back(
      ring.reason +
      (estimated > 0 ? "; " + std::to_string(estimated) + " link(s) not measured, taken from NIC speeds" : ""));
  ChooseLeader(&plan, links);
  for (size_t k = 0; k < ring.order.size(); ++k) plan.ring.push_back(plan.members[ring.order[k]]);
  std::rotate(plan.ring.begin(), std::find(plan.ring.begin(), plan.ring.end(), plan.leader), plan.ring.end());
  AssignShares(&plan, members, workers);
  const double rtt_s = rtt_count > 0 ? rtt_sum / rtt_count / 1000.0 : 0;
  const double bytes = static_cast<double>(job.parameters) * job.gradient_bytes_per_value;
  if (n > 1) plan.step_allreduce_s = 2.0 * (n - 1) / n * bytes * 8 / (plan.bottleneck_mbps * 1e6) + (n - 1) * rtt_s;
  return plan;
}

}  // namespace

namespace {

// Sets each island's batch so every island's inner step (its compute plus its all-reduce) takes the
// same time T, with the islands' batches summing to total_tokens: T = (total + sum tps_k ar_k) / sum
// tps_k, batch_k = tps_k (T - ar_k). Without measured compute the batch is the job's, unscaled.
void TimeIslands(int64_t total_tokens, std::vector<IslandPlan>* islands, std::vector<std::string>* reasons) {
  double tps = 0, weighted_ar = 0;
  bool all_measured = true;
  for (const IslandPlan& island : *islands) {
    all_measured = all_measured && island.tokens_per_s > 0;
    tps += island.tokens_per_s;
    weighted_ar += island.tokens_per_s * island.step_allreduce_s;
  }
  if (!all_measured) {
    for (IslandPlan& island : *islands) island.batch_tokens = total_tokens / static_cast<int64_t>(islands->size());
    reasons->push_back("compute not measured on every worker: island batches equal, inner phase unknown");
    return;
  }
  const double step = (static_cast<double>(total_tokens) + weighted_ar) / tps;
  for (IslandPlan& island : *islands) {
    island.batch_tokens = std::max<int64_t>(1, std::llround(island.tokens_per_s * (step - island.step_allreduce_s)));
    island.step_compute_s = static_cast<double>(island.batch_tokens) / island.tokens_per_s;
  }
  reasons->push_back("island batches set so every island's inner step (compute + all-reduce) takes " + Num(step) +
                     " s");
}

// A planner-formed island whose ring all-reduce per step would exceed its compute at the job's batch
// is not worth a dense group: its members train alone and meet the others only at the outer sync.
bool CommBound(const IslandPlan& island, const PlanJob& job) {
  return island.members.size() > 1 && island.tokens_per_s > 0 &&
         island.step_allreduce_s > static_cast<double>(job.tokens_per_step) / island.tokens_per_s;
}

std::vector<FormedIsland> SplitIsland(const FormedIsland& island, const IslandPlan& plan,
                                      const std::vector<PlanWorker>& workers, const PlanJob& job) {
  std::vector<FormedIsland> alone;
  for (int m : island.members) {
    alone.push_back({workers[m].inventory.worker_id,
                     island.fabric,
                     {m},
                     "split from " + island.name + ": its ring all-reduce (" + Num(plan.step_allreduce_s) +
                         " s per step) exceeds its compute (" +
                         Num(static_cast<double>(job.tokens_per_step) / plan.tokens_per_s) +
                         " s), so dense data parallel does not pay; trains alone, meets the others at the outer sync"});
  }
  return alone;
}

double OuterSyncSeconds(const std::vector<IslandPlan>& islands, const LinkMatrix& links, uint64_t bytes) {
  double upload = 0, download = 0, rtt = 0;
  for (const IslandPlan& island : islands) {
    const LinkMeasurement* up = links.FindUplink(island.leader);
    if (up == nullptr || up->mbps <= 0) return 0;
    upload = std::max(upload, static_cast<double>(bytes) * 8 / (up->mbps * 1e6));
    rtt = std::max(rtt, up->rtt_ms / 1000.0);
    for (const std::string& member : island.members) {
      const LinkMeasurement* down = links.FindUplink(member);
      if (down == nullptr || down->mbps <= 0) return 0;
      download = std::max(download, static_cast<double>(bytes) * 8 / (down->mbps * 1e6));
    }
  }
  return upload + download + 2 * rtt;
}

// The least H, and at it the least lossy codec, whose outer sync fits max_outer_fraction.
void ChooseOuter(const PlanJob& job, const LinkMatrix& links, ClusterPlan* plan) {
  std::vector<int64_t> ladder;
  if (job.local_steps > 0) {
    ladder.push_back(job.local_steps);
  } else {
    for (int64_t h : {10, 25, 50, 100, 200, 500, 1000})
      if (h <= job.max_local_steps) ladder.push_back(h);
    if (ladder.empty()) ladder.push_back(job.max_local_steps);
  }
  double step = 0;
  for (const IslandPlan& island : plan->islands)
    step = std::max(step, island.step_compute_s > 0 ? island.step_compute_s + island.step_allreduce_s : 0.0);
  const bool known = step > 0 && OuterSyncSeconds(plan->islands, links, job.codecs.front().bytes) > 0;
  for (int64_t h : ladder) {
    for (const OuterCodecChoice& codec : job.codecs) {
      plan->local_steps = h;
      plan->codec = codec.name;
      plan->outer_payload_bytes = codec.bytes;
      if (!known) continue;
      plan->inner_phase_s = step * static_cast<double>(h);
      plan->outer_sync_s = OuterSyncSeconds(plan->islands, links, codec.bytes);
      plan->outer_fraction = plan->outer_sync_s / plan->inner_phase_s;
      plan->meets_target = plan->outer_fraction <= job.max_outer_fraction;
      if (plan->meets_target) {
        plan->reasons.push_back("H " + std::to_string(h) + ", codec " + codec.name + ": outer sync " +
                                Num(plan->outer_sync_s) + " s is " + Num(100 * plan->outer_fraction) +
                                "% of an inner phase (target <= " + Num(100 * job.max_outer_fraction) + "%)");
        return;
      }
    }
    if (!known) break;
  }
  if (!known) {
    plan->local_steps = ladder.back() >= 100 && job.local_steps == 0 ? 100 : ladder.back();
    plan->codec = job.codecs.front().name;
    plan->outer_payload_bytes = job.codecs.front().bytes;
    plan->reasons.push_back("H " + std::to_string(plan->local_steps) + ", codec " + plan->codec +
                            ": not chosen by cost (compute or uplinks not measured)");
    return;
  }
  plan->reasons.push_back(
      "H " + std::to_string(plan->local_steps) + ", codec " + plan->codec + ": outer sync " + Num(plan->outer_sync_s) +
      " s is " + Num(100 * plan->outer_fraction) + "% of an inner phase, above the " +
      Num(100 * job.max_outer_fraction) +
      "% target even at the largest H and smallest codec (overlapping the outer sync is not built)");
}

Status ValidateJob(const PlanJob& job) {
  if (job.parameters <= 0) return Status::InvalidArgument("parameters: must be > 0");
  if (job.tokens_per_step <= 0) return Status::InvalidArgument("tokens_per_step: must be > 0");
  if (job.total_tokens_per_step < 0) return Status::InvalidArgument("total_tokens_per_step: must be >= 0");
  if (job.codecs.empty()) return Status::InvalidArgument("codecs: at least one outer codec is needed");
  if (!(job.max_outer_fraction > 0 && job.max_outer_fraction < 1))
    return Status::InvalidArgument("max_outer_fraction: must be in (0, 1)");
  if (!(job.bandwidth_split >= 1)) return Status::InvalidArgument("bandwidth_split: must be >= 1");
  if (job.local_steps < 0 || job.max_local_steps < 1)
    return Status::InvalidArgument("local_steps: must be >= 0 and max_local_steps >= 1");
  return Status::OK();
}

}  // namespace

void LinkMatrix::Set(const std::string& a, const std::string& b, LinkMeasurement link) {
  auto [it, inserted] = links_.emplace(PairKey(a, b), link);
  if (inserted) return;
  it->second.mbps = std::min(it->second.mbps, link.mbps);
  it->second.rtt_ms = std::max(it->second.rtt_ms, link.rtt_ms);
}

const LinkMeasurement* LinkMatrix::Find(const std::string& a, const std::string& b) const {
  auto it = links_.find(PairKey(a, b));
  return it == links_.end() ? nullptr : &it->second;
}

void LinkMatrix::SetUplink(const std::string& worker, LinkMeasurement link) {
  uplinks_[worker] = link;
}

const LinkMeasurement* LinkMatrix::FindUplink(const std::string& worker) const {
  auto it = uplinks_.find(worker);
  return it == uplinks_.end() ? nullptr : &it->second;
}

Result<std::vector<IslandDefinition>> PlanIslands(const std::vector<PlanWorker>& workers, const LinkMatrix& links,
                                                  const PlanJob& job) {
  TRIB_ASSIGN_OR_RETURN(std::vector<FormedIsland> formed, FormIslands(workers, links, job));
  std::vector<IslandDefinition> islands;
  for (const FormedIsland& island : formed) {
    IslandDefinition definition{island.name, {}};
    for (int m : island.members) definition.workers.push_back(workers[m].inventory.worker_id);
    std::sort(definition.workers.begin(), definition.workers.end());
    islands.push_back(std::move(definition));
  }
  std::sort(islands.begin(), islands.end(),
            [](const IslandDefinition& a, const IslandDefinition& b) { return a.name < b.name; });
  return islands;
}

Result<ClusterPlan> PlanCluster(const std::vector<PlanWorker>& workers, const LinkMatrix& links, const PlanJob& job) {
  TRIB_RETURN_IF_ERROR(ValidateJob(job));
  if (workers.empty()) return Status::FailedPrecondition("no workers to plan for");
  std::set<std::string> ids;
  for (const PlanWorker& w : workers)
    if (!ids.insert(w.inventory.worker_id).second)
      return Status::InvalidArgument("worker '" + w.inventory.worker_id + "' is listed twice");
  TRIB_ASSIGN_OR_RETURN(std::vector<FormedIsland> formed, FormIslands(workers, links, job));
  ClusterPlan plan;
  for (const FormedIsland& island : formed) {
    if (island.members.empty()) return Status::FailedPrecondition("island '" + island.name + "' has no members");
    IslandPlan planned = PlanIsland(island, workers, links, job);
    if (job.islands.empty() && CommBound(planned, job)) {
      for (const FormedIsland& single : SplitIsland(island, planned, workers, job))
        plan.islands.push_back(PlanIsland(single, workers, links, job));
      continue;
    }
    plan.islands.push_back(std::move(planned));
  }
  std::sort(plan.islands.begin(), plan.islands.end(),
            [](const IslandPlan& a, const IslandPlan& b) { return a.name < b.name; });
  // The job's batch per inner step across islands is fixed by the islands as formed, before splits.
  const int64_t total_tokens = job.total_tokens_per_step > 0
                                   ? job.total_tokens_per_step
                                   : job.tokens_per_step * static_cast<int64_t>(formed.size());
  TimeIslands(total_tokens, &plan.islands, &plan.reasons);
  ChooseOuter(job, links, &plan);
  for (IslandPlan& island : plan.islands)
    island.inner_phase_s = island.step_compute_s > 0 ? (island.step_compute_s + island.step_allreduce_s) *
                                                           static_cast<double>(plan.local_steps)
                                                     : 0;
  return plan;
}

}  // namespace tributary
