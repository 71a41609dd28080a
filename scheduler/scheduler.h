// The coordinator's scheduler: which workers take part in a federated round, and when a round closes.
//
// First policy ("random"): filter workers by capability (alive, memory, GPUs, dataset), then draw a
// uniform sample of a fraction of the eligible ones, deterministically from (job seed, round).
// Round deadlines come from measured tasklet durations (median + k·MAD, clamped), never from a
// hand-tuned timeout (a fixed timeout is either too short for slow sites or wastes fast ones); a round
// closes when everyone reported, or at the deadline with
// a quorum.
//
// The inventory records each NIC's fabric, speed and network (scheduler/nic.h) so a NIC-aware policy
// (group workers by NIC type, keep data-parallel traffic inside an RDMA island) can be added as another
// Scheduler without changing the records.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "scheduler/nic.h"

namespace tributary {

// ---------------------------------------------------------------------------------------------
// Inventory

// What the coordinator knows about one registered worker.
struct WorkerInventory {
  std::string worker_id;
  int cores = 0;
  int64_t memory_bytes = 0;  // host memory
  int gpu_count = 0;
  int64_t gpu_memory_bytes = 0;             // per GPU (the smallest when they differ); 0 without GPUs
  std::vector<NicInfo> nics;                // the placeable ones (scheduler/nic.h)
  std::map<std::string, int64_t> datasets;  // dataset name -> sample count
  bool alive = false;
  int64_t last_heartbeat_ms = 0;  // Unix time in milliseconds of the last heartbeat
};

// InvalidArgument naming the worker and field ("worker 'w1': nic 'eth0': speed_mbps must be > 0, got 0").
Status ValidateInventory(const WorkerInventory& worker);

// Liveness is independent of work duration: a worker whose last heartbeat is older than
// `timeout_ms` (default: 3 missed 5 s heartbeats) is marked not alive. Returns how many were marked.
int MarkStaleWorkersDead(std::vector<WorkerInventory>& workers, int64_t now_ms, int64_t timeout_ms = 15000);

// ---------------------------------------------------------------------------------------------
// Capability filter

struct JobRequirements {
  std::string dataset;              // must be present on the worker (empty: no dataset needed)
  int64_t min_dataset_samples = 1;  // with at least this many samples
  int64_t min_memory_bytes = 0;     // host memory
  int min_gpus = 0;
  int64_t min_gpu_memory_bytes = 0;  // per GPU; checked when min_gpus > 0
};

struct IneligibleWorker {
  std::string worker_id;
  std::string reason;  // one line: "memory_bytes 8589934592 < required 17179869184"
};

struct Eligibility {
  std::vector<std::string> eligible;         // worker ids, ascending
  std::vector<IneligibleWorker> ineligible;  // ascending worker id, first failed check only
};

Eligibility FilterWorkers(const std::vector<WorkerInventory>& workers, const JobRequirements& requirements);

// ---------------------------------------------------------------------------------------------
// Client sampling

struct SamplingOptions {
  double fraction = 1.0;    // m in (0, 1]: share of eligible workers per round
  int64_t min_clients = 1;  // a round needs at least this many participants
  int64_t max_clients = 0;  // 0 = no cap
};

// InvalidArgument naming the field ("sampling.fraction: ...").
Status ValidateSampling(const SamplingOptions& options);

// clamp(floor(fraction · eligible), min_clients, max_clients), never above `eligible`.
int64_t SampleSize(const SamplingOptions& options, int64_t eligible);

// Draws `count` of `eligible` (must be sorted ascending, unique) with a partial Fisher–Yates shuffle
// driven by std::mt19937_64 seeded with SamplingSeed(job_seed, round); returns them ascending.
// Bounded draws use rejection sampling (not std::uniform_int_distribution, whose algorithm differs
// between standard libraries), so a given (seed, round, eligible set) yields the same sample everywhere.
std::vector<std::string> SampleClients(const std::vector<std::string>& eligible, int64_t count, uint64_t job_seed,
                                       int64_t round);

// splitmix64(job_seed ^ splitmix64(round)): independent streams per round.
uint64_t SamplingSeed(uint64_t job_seed, int64_t round);

// ---------------------------------------------------------------------------------------------
// Scheduler interface

struct RoundRequest {
  uint64_t job_seed = 0;
  int64_t round = 0;
  JobRequirements requirements;
  SamplingOptions sampling;
};

struct RoundPlan {
  int64_t round = 0;
  std::vector<std::string> participants;  // ascending worker id
  int64_t eligible_count = 0;
  std::vector<IneligibleWorker> ineligible;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual const char* policy() const = 0;
  // Participants of one round. InvalidArgument for bad sampling options; FailedPrecondition when
  // fewer than sampling.min_clients workers are eligible.
  virtual Result<RoundPlan> PlanRound(const std::vector<WorkerInventory>& workers, const RoundRequest& request) = 0;
};

// "random": capability filter + uniform sampling. InvalidArgument naming `policy` otherwise.
Result<std::unique_ptr<Scheduler>> CreateScheduler(const std::string& policy);

// ---------------------------------------------------------------------------------------------
// Round deadline and quorum

struct DeadlineOptions {
  double k = 3.0;
  // MAD multiplied by 1.4826 so that, for normally distributed durations, it estimates the standard
  // deviation (median + 3·MAD ≈ mean + 3σ). false: raw MAD.
  bool scale_mad = true;
  // Lower bound relative to the median: deadline >= median · (1 + min_margin). Guards against MAD = 0
  // when the observed durations happen to be (nearly) identical.
  double min_margin = 0.25;
  double floor_s = 60.0;
  double ceiling_s = 6.0 * 3600.0;
  double initial_s = 1800.0;  // used until min_observations durations were seen
  int64_t min_observations = 3;
  int64_t window = 64;  // only the most recent durations count (sites and data change)
};

// InvalidArgument naming the field ("deadline.floor_s: ...").
Status ValidateDeadlineOptions(const DeadlineOptions& options);

class RoundDeadline {
 public:
  // Options must be valid (checked).
  explicit RoundDeadline(DeadlineOptions options = {});

  // One tasklet's measured duration (start of local training to upload received). Non-finite or
  // negative values are ignored and return false.
  bool Observe(double seconds);
  int64_t observations() const { return static_cast<int64_t>(durations_.size()); }
  double Median() const;  // of the window; 0 when empty
  double Mad() const;     // median absolute deviation (scaled when scale_mad); 0 when empty
  // initial_s before min_observations, else clamp(max(median + k·MAD, median·(1 + min_margin)), floor, ceiling).
  double DeadlineSeconds() const;
  const DeadlineOptions& options() const { return options_; }

 private:
  DeadlineOptions options_;
  std::deque<double> durations_;
};

enum class RoundCloseState {
  kOpen,           // keep waiting
  kComplete,       // every participant reported
  kQuorumReached,  // deadline passed with at least the quorum: aggregate what arrived
  kQuorumMissed,   // deadline passed below the quorum: the round fails (retry or abort)
};

const char* RoundCloseStateName(RoundCloseState state);

// ceil(fraction · participants) (with a 1e-9 tolerance, so 0.7 · 10 is 7), at least 1, at most participants.
int64_t QuorumCount(int64_t participants, double quorum_fraction);

// quorum_fraction in (0, 1] (checked).
RoundCloseState EvaluateRoundClose(int64_t participants, int64_t reported, bool deadline_passed,
                                   double quorum_fraction);

}  // namespace tributary
