#include "worker/status_board.h"

namespace tributary {

void StatusBoard::SetActivity(const std::string& state, const std::string& job_id, uint64_t round) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_.state = state;
  status_.job_id = job_id;
  status_.round = round;
}

void StatusBoard::SetReplicas(std::vector<ReplicaReport> replicas) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_.replicas = std::move(replicas);
}

PublishedStatus StatusBoard::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

}  // namespace tributary
