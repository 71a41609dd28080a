#include "coordinator/link_probes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>

#include "scheduler/islands.h"

namespace tributary {
namespace {

// Worker id -> its group of candidate peers: the job's island, or its primary fabric ("" = none).
std::map<std::string, std::string> CandidateGroups(const JobSpec& spec, const std::vector<WorkerInventory>& eligible) {
  std::map<std::string, std::string> group;
  if (!spec.cluster.islands.empty()) {
    auto islands = ParseIslands(spec.cluster.islands);  // validated when the spec was parsed
    if (!islands.ok()) return group;
    for (const IslandSpec& island : *islands)
      for (const std::string& w : island.workers) group[w] = "island:" + island.name;
    return group;
  }
  for (const WorkerInventory& w : eligible) group[w.worker_id] = "fabric:" + PrimaryFabric(w);
  return group;
}

std::string Join(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

std::string Counted(const std::vector<ProbePair>& probes) {
  size_t uplinks = 0;
  for (const ProbePair& p : probes) uplinks += p.to.empty() ? 1 : 0;
  return std::to_string(probes.size() - uplinks) + " pair(s) and " + std::to_string(uplinks) + " uplink(s)";
}

bool Stored(const checkpoint::JobLinksRecord& stored, const ProbePair& p) {
  const auto& list = p.to.empty() ? stored.uplinks : stored.pairs;
  for (const checkpoint::LinkRecord& link : list) {
    if (p.to.empty() && link.a == p.from) return true;
    if (!p.to.empty() && ((link.a == p.from && link.b == p.to) || (link.a == p.to && link.b == p.from))) return true;
  }
  return false;
}

std::string Mbps(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

}  // namespace

std::vector<ProbePair> CandidateProbes(const JobSpec& spec, const std::vector<WorkerInventory>& eligible) {
  std::vector<std::string> ids;
  for (const WorkerInventory& w : eligible) ids.push_back(w.worker_id);
  std::sort(ids.begin(), ids.end());
  const std::map<std::string, std::string> group = CandidateGroups(spec, eligible);
  std::vector<ProbePair> probes;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto gi = group.find(ids[i]);
    if (gi == group.end()) continue;  // in no island the job fixes: never dense with anyone
    for (size_t j = i + 1; j < ids.size(); ++j) {
      auto gj = group.find(ids[j]);
      if (gj != group.end() && gj->second == gi->second) probes.push_back({ids[i], ids[j]});
    }
  }
  for (const std::string& id : ids) probes.push_back({id, ""});
  return probes;
}

const char* ProbeTriggerName(ProbeTrigger trigger) {
  switch (trigger) {
    case ProbeTrigger::kNone: return "none";
    case ProbeTrigger::kStart: return "job start";
    case ProbeTrigger::kMembership: return "membership change";
    case ProbeTrigger::kDrift: return "drift";
  }
  return "unknown";
}

ProbeDecision DecideProbes(const checkpoint::JobLinksRecord* stored, const JobSpec& spec,
                           const std::vector<WorkerInventory>& eligible,
                           const std::map<std::string, std::string>& drifted) {
  ProbeDecision d;
  std::vector<std::string> ids;
  for (const WorkerInventory& w : eligible) ids.push_back(w.worker_id);
  std::sort(ids.begin(), ids.end());
  if (ids.empty()) {
    d.reason = "no eligible workers to probe yet";
    return d;
  }
  const std::vector<ProbePair> candidates = CandidateProbes(spec, eligible);
  if (stored == nullptr) {
    d.trigger = ProbeTrigger::kStart;
    d.probes = candidates;
    d.reason = "job start: " + Counted(d.probes) + " among " + std::to_string(ids.size()) + " eligible worker(s)";
    return d;
  }
  if (ids != stored->members) {
    std::vector<std::string> joined, left;
    std::set_difference(ids.begin(), ids.end(), stored->members.begin(), stored->members.end(),
                        std::back_inserter(joined));
    std::set_difference(stored->members.begin(), stored->members.end(), ids.begin(), ids.end(),
                        std::back_inserter(left));
    d.trigger = ProbeTrigger::kMembership;
    for (const ProbePair& p : candidates)
      if (!Stored(*stored, p)) d.probes.push_back(p);
    d.reason = "membership change:";
    if (!joined.empty()) d.reason += " joined [" + Join(joined) + "]";
    if (!left.empty()) d.reason += " left [" + Join(left) + "]";
    d.reason += "; " + Counted(d.probes) + " to measure";
    return d;
  }
  std::string lines;
  for (const auto& [worker, line] : drifted) {
    if (!std::binary_search(ids.begin(), ids.end(), worker)) continue;
    d.probes.push_back({worker, ""});
    lines += (lines.empty() ? "" : "; ") + line;
  }
  if (!d.probes.empty()) {
    d.trigger = ProbeTrigger::kDrift;
    d.reason = "drift: " + lines + "; re-probing " + Counted(d.probes);
    return d;
  }
  d.reason = "no change: the stored matrix covers the " + std::to_string(ids.size()) +
             " eligible worker(s) and no upload drifted";
  return d;
}

std::string DriftTracker::Observe(const std::string& worker, uint64_t bytes, double seconds,
                                  double stored_uplink_mbps) {
  if (bytes < min_bytes || !(seconds > 0) || !(stored_uplink_mbps > 0)) return "";
  const double mbps = static_cast<double>(bytes) * 8 / seconds / 1e6;
  auto it = baseline.find(worker);
  if (it == baseline.end()) {
    baseline[worker] = mbps;
    return "";
  }
  const double change = (mbps - it->second) / it->second;
  if (std::fabs(change) <= threshold) return "";
  char pct[16];
  std::snprintf(pct, sizeof(pct), "%+.0f%%", change * 100);
  return "worker '" + worker + "' upload goodput " + Mbps(mbps) + " Mbit/s vs baseline " + Mbps(it->second) +
         " Mbit/s (" + pct + ", beyond " + std::to_string(static_cast<int>(std::lround(threshold * 100))) +
         "%; stored uplink " + Mbps(stored_uplink_mbps) + " Mbit/s)";
}

checkpoint::JobLinksRecord MergeProbeOutcomes(const checkpoint::JobLinksRecord* stored, const std::string& job_id,
                                              const std::vector<std::string>& members,
                                              const std::vector<MeasuredProbe>& outcomes, uint64_t campaign,
                                              const std::string& reason, int64_t now_ms) {
  checkpoint::JobLinksRecord out;
  out.job_id = job_id;
  out.campaign = campaign;
  out.reason = reason;
  out.updated_unix_ms = now_ms;
  out.members = members;
  std::sort(out.members.begin(), out.members.end());
  auto member = [&out](const std::string& id) {
    return std::binary_search(out.members.begin(), out.members.end(), id);
  };
  std::map<std::pair<std::string, std::string>, checkpoint::LinkRecord> pairs;
  std::map<std::string, checkpoint::LinkRecord> uplinks;
  if (stored != nullptr) {
    for (const auto& l : stored->pairs)
      if (member(l.a) && member(l.b)) pairs[{l.a, l.b}] = l;
    for (const auto& l : stored->uplinks)
      if (member(l.a)) uplinks[l.a] = l;
  }
  for (const MeasuredProbe& o : outcomes) {
    if (!o.ok || !member(o.pair.from) || (!o.pair.to.empty() && !member(o.pair.to))) continue;
    checkpoint::LinkRecord l{o.pair.from, o.pair.to, o.link.mbps, o.link.rtt_ms, o.measured_unix_ms};
    if (o.pair.to.empty()) {
      uplinks[l.a] = l;
      continue;
    }
    if (l.b < l.a) std::swap(l.a, l.b);
    pairs[{l.a, l.b}] = l;
  }
  for (auto& [key, l] : pairs) out.pairs.push_back(l);
  for (auto& [key, l] : uplinks) out.uplinks.push_back(l);
  return out;
}

LinkMatrix ToLinkMatrix(const checkpoint::JobLinksRecord& stored) {
  LinkMatrix m;
  for (const auto& l : stored.pairs) m.Set(l.a, l.b, {l.mbps, l.rtt_ms});
  for (const auto& l : stored.uplinks) m.SetUplink(l.a, {l.mbps, l.rtt_ms});
  return m;
}

std::vector<ProbePair> NextProbes(const std::vector<ProbePair>& pending, const std::set<std::string>& busy) {
  std::set<std::string> taken = busy;
  std::vector<ProbePair> picked;
  for (const ProbePair& p : pending) {
    if (taken.count(p.from) || taken.count(p.to)) continue;
    taken.insert(p.from);
    taken.insert(p.to);
    picked.push_back(p);
  }
  return picked;
}

Status CheckProbeNumbers(const std::string& worker_id, const std::string& pair_id, double mbps, double rtt_ms,
                         uint64_t bytes, uint64_t max_bytes) {
  const std::string what = "probe report of worker '" + worker_id + "' for pair " + pair_id + ": ";
  if (!(mbps > 0) || !(mbps <= 1e7))
    return Status::InvalidArgument(what + "goodput " + Mbps(mbps) + " Mbit/s is not in (0, 1e7]");
  if (!(rtt_ms >= 0) || !(rtt_ms <= 60000))
    return Status::InvalidArgument(what + "RTT " + Mbps(rtt_ms) + " ms is not in [0, 60000]");
  if (bytes > max_bytes)
    return Status::InvalidArgument(what + std::to_string(bytes) + " bulk bytes, over the task's " +
                                   std::to_string(max_bytes));
  return Status::OK();
}

}  // namespace tributary
