#include "coordinator/round_candidates.h"

#include <algorithm>
#include <map>

namespace tributary {

RoundCandidates LeaveOutWorkersThatCannotTrain(const std::vector<WorkerInventory>& alive,
                                               const std::vector<v1::JobProblem>& problems) {
  std::map<std::string, const v1::JobProblem*> first;  // a worker's first problem for the job decides
  for (const v1::JobProblem& p : problems) first.emplace(p.worker_id(), &p);
  RoundCandidates out;
  for (const WorkerInventory& w : alive) {
    auto it = first.find(w.worker_id);
    if (it == first.end()) {
      out.inventory.push_back(w);
      continue;
    }
    const std::string& reason = it->second->reason();
    out.left_out.push_back(
        {w.worker_id, "cannot train: " + (reason.empty() ? std::string("no reason given") : reason)});
  }
  std::sort(out.left_out.begin(), out.left_out.end(),
            [](const LeftOutWorker& a, const LeftOutWorker& b) { return a.worker_id < b.worker_id; });
  return out;
}

std::string LeftOutLine(const LeftOutWorker& worker, uint64_t round) {
  return "worker '" + worker.worker_id + "' left out of round " + std::to_string(round) + ": " + worker.reason;
}

std::string PlannedWithThemLine(const std::vector<LeftOutWorker>& left_out, uint64_t round,
                                const std::string& without) {
  std::string names;
  for (const LeftOutWorker& w : left_out) names += (names.empty() ? "" : ", ") + w.worker_id;
  return "round " + std::to_string(round) + ": planned with the " + std::to_string(left_out.size()) +
         " worker(s) that report they cannot train the job (" + names + "), since without them: " + without;
}

}  // namespace tributary
