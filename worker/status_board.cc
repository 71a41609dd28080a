#include "worker/status_board.h"

#include <utility>

#include "base/utf8.h"

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

void StatusBoard::SetProblem(const std::string& job_id, uint64_t round, const std::string& reason,
                             int64_t now_unix_ms) {
  ProblemReport report{job_id, round, reason.substr(0, kMaxReasonBytes), now_unix_ms};
  // A cut in the middle of a character would make the heartbeat unencodable.
  if (const size_t bad = FirstInvalidUtf8(report.reason); bad != std::string::npos) report.reason.resize(bad);
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ProblemReport>& kept = status_.problems;
  for (const ProblemReport& r : kept)
    if (r.job_id == job_id) report.since_unix_ms = r.since_unix_ms;
  std::erase_if(kept, [&](const ProblemReport& r) { return r.job_id == job_id; });
  kept.push_back(std::move(report));
  if (kept.size() > kProblemsKept) kept.erase(kept.begin());
}

void StatusBoard::ClearProblem(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(status_.problems, [&](const ProblemReport& r) { return r.job_id == job_id; });
}

PublishedStatus StatusBoard::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

}  // namespace tributary
