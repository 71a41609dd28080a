// What the compute thread publishes for the control loop's Register and Heartbeat messages: the
// current activity (state, job, round), the replicas held (job, round, weights hash) and the measured
// compute rate per job (worker/calibration.h) and the jobs it cannot train (and why), under a mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tributary {

struct ReplicaReport {
  std::string job_id;
  uint64_t round = 0;
  std::string weights_hash;  // 16 hex digits
};

struct CalibrationReport {
  std::string job_id;
  double tokens_per_s = 0;
  int64_t measured_unix_ms = 0;
};

// A job the worker failed to sync or train (a non-finite loss, a model or dataset it cannot load): the
// coordinator shows it in the job's status (Heartbeat.problems).
struct ProblemReport {
  std::string job_id;
  uint64_t round = 0;
  std::string reason;  // one line
  int64_t since_unix_ms = 0;
};

// One consistent copy of what was published.
struct PublishedStatus {
  std::string state = "idle";  // "idle" | "syncing" | "training" | "uploading"
  std::string job_id;          // of the activity
  uint64_t round = 0;
  std::vector<ReplicaReport> replicas;
  std::vector<CalibrationReport> calibrations;  // oldest first, at most kCalibrationsKept
  std::vector<ProblemReport> problems;          // oldest first, at most kProblemsKept
};

class StatusBoard {
 public:
  static constexpr size_t kCalibrationsKept = 16;
  static constexpr size_t kProblemsKept = 16;  // the coordinator refuses heartbeats with more
  static constexpr size_t kMaxReasonBytes = 512;

  // Compute thread: what it is doing now.
  void SetActivity(const std::string& state, const std::string& job_id, uint64_t round);
  // Compute thread: replaces the replicas reported (live ones, then the kept finished ones).
  void SetReplicas(std::vector<ReplicaReport> replicas);
  // Compute thread: the rate of `report.job_id`, replacing an earlier one; beyond kCalibrationsKept
  // jobs the oldest is forgotten.
  void SetCalibration(CalibrationReport report);
  // Compute thread: the worker cannot train `job_id` (round `round`) because of `reason` (cut to
  // kMaxReasonBytes at a character boundary). since_unix_ms is kept from an earlier problem of the job;
  // beyond kProblemsKept jobs the oldest is forgotten.
  void SetProblem(const std::string& job_id, uint64_t round, const std::string& reason, int64_t now_unix_ms);
  // Compute thread: `job_id` trained (or finished): no problem to report any more.
  void ClearProblem(const std::string& job_id);
  // Control loop: a copy of the published state (activity and replicas taken together).
  PublishedStatus Snapshot() const;

 private:
  mutable std::mutex mutex_;
  PublishedStatus status_;
};

}  // namespace tributary
