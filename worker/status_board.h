// What the compute thread publishes for the control loop's Register and Heartbeat messages: the
// current activity (state, job, round) and the replicas held (job, round, weights hash), under a mutex.
#pragma once

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

// One consistent copy of what was published.
struct PublishedStatus {
  std::string state = "idle";  // "idle" | "syncing" | "training" | "uploading"
  std::string job_id;          // of the activity
  uint64_t round = 0;
  std::vector<ReplicaReport> replicas;
};

class StatusBoard {
 public:
  // Compute thread: what it is doing now.
  void SetActivity(const std::string& state, const std::string& job_id, uint64_t round);
  // Compute thread: replaces the replicas reported (live ones, then the kept finished ones).
  void SetReplicas(std::vector<ReplicaReport> replicas);
  // Control loop: a copy of the published state (activity and replicas taken together).
  PublishedStatus Snapshot() const;

 private:
  mutable std::mutex mutex_;
  PublishedStatus status_;
};

}  // namespace tributary
