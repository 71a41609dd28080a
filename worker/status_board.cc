#include "worker/status_board.h"

#include <utility>

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

void StatusBoard::SetCalibration(CalibrationReport report) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<CalibrationReport>& kept = status_.calibrations;
  std::erase_if(kept, [&](const CalibrationReport& r) { return r.job_id == report.job_id; });
  kept.push_back(std::move(report));
  if (kept.size() > kCalibrationsKept) kept.erase(kept.begin());
}

PublishedStatus StatusBoard::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

}  // namespace tributary
