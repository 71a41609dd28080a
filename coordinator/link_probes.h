// Which links a cluster-mode job measures, and when (docs/placement.md, "Measured links"). Pure
// functions of the job's eligible workers, its stored matrix and the observed upload goodput, each
// returning its reason, so the job log and the tests can say why a probe ran (or did not). The
// probing itself is JobRunner's (job_runner_probes.cc) and the workers' (worker/link_prober.h).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/store.h"
#include "federation/job_spec.h"
#include "scheduler/planner.h"
#include "scheduler/scheduler.h"

namespace tributary {

// One probe: `from` sends, `to` times the bytes; `to` empty = the coordinator (from's uplink).
struct ProbePair {
  std::string from;
  std::string to;
  // "w1>w2", "w1>coordinator": names the pair on the wire and in the job log.
  std::string id() const { return from + ">" + (to.empty() ? std::string("coordinator") : to); }
  bool operator==(const ProbePair& other) const { return from == other.from && to == other.to; }
};

// The candidate peers among `eligible` (ascending ids): every pair of workers that could share an
// island — the same primary fabric (scheduler/islands.h), both without one (the planner groups those by
// measured bandwidth), or one island the job fixes (cluster.islands) — once, the smaller id probing the
// larger; then every worker's uplink. Pairs on different fabrics are never probed: no island spans them.
std::vector<ProbePair> CandidateProbes(const JobSpec& spec, const std::vector<WorkerInventory>& eligible);

enum class ProbeTrigger {
  kNone,        // the stored matrix covers the eligible workers and nothing drifted
  kStart,       // no matrix is stored for the job yet
  kMembership,  // the eligible workers differ from those the matrix was measured for
  kDrift,       // a leader's observed upload goodput drifted from its baseline
};
const char* ProbeTriggerName(ProbeTrigger trigger);

struct ProbeDecision {
  ProbeTrigger trigger = ProbeTrigger::kNone;
  std::string reason;             // one line for the job log
  std::vector<ProbePair> probes;  // what to measure (may be empty for a membership change: only departures)
};

// Whether to probe before the next round, and what. `stored` is null before the first campaign;
// `drifted` maps a worker to the line ObserveUplinkGoodput returned for it. Start: every candidate.
// Membership change: the candidate pairs and uplinks the stored matrix lacks (a joined worker's, and any
// that failed before). Drift: the drifted workers' uplinks. Otherwise kNone with the reason.
ProbeDecision DecideProbes(const checkpoint::JobLinksRecord* stored, const JobSpec& spec,
                           const std::vector<WorkerInventory>& eligible,
                           const std::map<std::string, std::string>& drifted);

// Drift of observed transfer rates. The coordinator times each pulled upload of a leader (bytes over
// the pull's first request to its last chunk); the first such goodput after the worker's uplink was
// probed is its baseline (a pull runs below the probe's TCP line rate by the chunk protocol's factor,
// so the probe figure itself is not comparable), and a later pull whose goodput differs from the
// baseline by more than `threshold` (0.2) of it is drift.
struct DriftTracker {
  double threshold = 0.2;
  uint64_t min_bytes = 1 << 20;            // smaller pulls are latency, not bandwidth
  std::map<std::string, double> baseline;  // worker -> Mbit/s
  // "" when the observation sets the baseline, is within the threshold, or is too small; else the line
  // saying what drifted ("worker 'w1' upload goodput 41.0 Mbit/s vs baseline 82.3 Mbit/s (-50%) ...").
  std::string Observe(const std::string& worker, uint64_t bytes, double seconds, double stored_uplink_mbps);
  // A new probe of the worker's uplink: the next pull sets a new baseline.
  void Reset(const std::string& worker) { baseline.erase(worker); }
};

// One finished probe of a campaign.
struct MeasuredProbe {
  ProbePair pair;
  bool ok = false;
  LinkMeasurement link;
  int64_t measured_unix_ms = 0;
  std::string error;  // when !ok
};

// The matrix after a campaign: `stored` (may be null) without the links of workers no longer in
// `members`, overwritten by the successful `outcomes`; members, campaign, reason and time set.
checkpoint::JobLinksRecord MergeProbeOutcomes(const checkpoint::JobLinksRecord* stored, const std::string& job_id,
                                              const std::vector<std::string>& members,
                                              const std::vector<MeasuredProbe>& outcomes, uint64_t campaign,
                                              const std::string& reason, int64_t now_ms);

// The planner's view of a stored matrix.
LinkMatrix ToLinkMatrix(const checkpoint::JobLinksRecord& stored);

// The probes of `pending` that may start now (in order): neither end is in `busy` nor taken by an
// earlier pick (the coordinator, "", counts as one end), so no two probes share a NIC and skew each other.
std::vector<ProbePair> NextProbes(const std::vector<ProbePair>& pending, const std::set<std::string>& busy);

// A campaign in progress: JobRunner's state while it waits for the workers (job_runner_probes.cc).
struct ProbeCampaign {
  enum class State { kWaiting, kRunning, kDone };
  struct Probe {
    ProbePair pair;
    std::string key;  // fresh random, this pair and campaign only
    State state = State::kWaiting;
    int64_t started_ms = 0;
  };
  struct Responder {  // a target worker's probe responder
    std::string host;
    uint32_t port = 0;  // 0 until the worker reported it listens
  };
  uint64_t id = 0;
  ProbeDecision decision;
  std::vector<std::string> members;  // the eligible workers when it started
  std::vector<Probe> probes;
  std::map<std::string, Responder> responders;
  std::vector<MeasuredProbe> outcomes;
  int64_t started_ms = 0;
};

// InvalidArgument naming the worker when a reported measurement is absurd: goodput not in (0, 10^7]
// Mbit/s, RTT not in [0, 60000] ms, or more bulk bytes than the task allowed.
Status CheckProbeNumbers(const std::string& worker_id, const std::string& pair_id, double mbps, double rtt_ms,
                         uint64_t bytes, uint64_t max_bytes);

}  // namespace tributary
