// Which alive workers a job's round is planned with. A worker whose last heartbeat says it cannot train
// the job (Heartbeat.problems: a model or dataset it cannot load, a non-finite loss, out of memory) is
// left out, with the reason in one line, so the round neither waits for it nor sends it work it fails.
// The heartbeat's current list decides, nothing is remembered: a worker whose heartbeat no longer lists
// the job is a candidate again. Pure functions; JobRunner::OpenRound logs their lines.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"
#include "transport/proto/tributary.pb.h"

namespace tributary {

struct LeftOutWorker {
  std::string worker_id;
  std::string reason;  // "cannot train: REASON" (the worker's own one line, as its heartbeat sent it)
};

struct RoundCandidates {
  std::vector<WorkerInventory> inventory;  // the alive workers to plan the round with, in the given order
  std::vector<LeftOutWorker> left_out;     // ascending worker id
};

// `alive`: the alive workers' inventories; `problems`: the problems they report for THIS job
// (WorkerRegistry::ProblemsOf, worker_id set). A problem naming a worker that is not in `alive` is ignored.
RoundCandidates LeaveOutWorkersThatCannotTrain(const std::vector<WorkerInventory>& alive,
                                               const std::vector<v1::JobProblem>& problems);

// "worker 'W' left out of round R: cannot train: REASON"
std::string LeftOutLine(const LeftOutWorker& worker, uint64_t round);

// When the round cannot be planned without the left-out workers (`without`: the planner's error, e.g.
// every eligible worker reports a problem), it is planned with them as before: each tries again when
// sent the round, and the round's deadline paces the retries. The job log's line for that:
// "round R: planned with the N worker(s) that report they cannot train the job (W1, W2), since without
// them: ERROR".
std::string PlannedWithThemLine(const std::vector<LeftOutWorker>& left_out, uint64_t round, const std::string& without);

}  // namespace tributary
