// The worker's compute thread: takes the pushed RoundStart / RoundCommitted from the WorkQueue one at a
// time and handles them on the work connection (docs/protocol.md, "Worker ↔ coordinator", 3 and 5):
//   RoundStart      sync the job's replica to committed_round (ReplicaSync), run the round's tasklet,
//                   upload the result (Uploader); a repeat of an uploaded round re-sends the upload.
//                   Under secure aggregation the result goes through the round's session (SecAggSession);
//                   in cluster mode the tasklet runs in the round's island (IslandSession).
//   RoundCommitted  advance (or warm) the replica (ReplicaSync), forget the uploads the round covers,
//                   free the replica of a finished job.
// Handlers return Status; the loop logs a failed one once, naming the job and round, and reports a job it
// cannot train to the coordinator (Heartbeat.problems). An exception out of a handler (std::bad_alloc
// from a tasklet too large for this host, any other std::exception) fails the item the same way and
// drops the job's replica (its state is unknown); the daemon goes on.
//
// The coordinator leaves a worker that reports a problem for a job out of the job's next rounds
// (docs/operations.md, "A worker that cannot train"), so it would never be sent the job again: a
// problem is also cleared once the job has committed 1, 2, 4, 8, then 16 rounds after each failure in a
// row, and the next round the worker is selected for tries again.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "base/status.h"
#include "transport/message.h"
#include "worker/island_session.h"
#include "worker/replica_sync.h"
#include "worker/secagg_session.h"
#include "worker/status_board.h"
#include "worker/uploader.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class ComputeLoop {
 public:
  // None of the pointers is owned; all must outlive the loop.
  ComputeLoop(const WorkerOptions& options, WorkQueue* queue, StatusBoard* board, ReplicaSync* sync, Uploader* uploader,
              SecAggSession* secagg, IslandSession* island, std::function<bool()> stopping);

  // Runs on the calling thread until `stopping` returns true (checked at least every 200 ms and between
  // items). The activity published for heartbeats is "idle" between items.
  void Run();

  // The most committed rounds a job with a problem sits out before this worker may try it again.
  static constexpr uint64_t kMaxRetryBackoffRounds = 16;
  // The committed round of the job after which a problem from `failed_round`, the worker's
  // `failures_in_a_row`-th (>= 1), is cleared: it sits out 1, 2, 4, 8, then 16 committed rounds.
  static uint64_t RetryAfterRound(uint64_t failed_round, int failures_in_a_row);

 private:
  // Handles one item, logging its handler's failure once ("worker 'w1': job J round R: RoundStart: ...").
  // A RoundStart that failed before its upload is published as the job's problem (StatusBoard::SetProblem,
  // sent in heartbeats), as is one that threw; one that succeeded, or a RoundCommitted that finished the
  // job, clears it, and so does the end of its back-off (MaybeRetry).
  void Handle(const WorkItem& item);
  // RoundStart: sync, check the payload limit, train, upload. A stale one (the replica is already past
  // its committed_round) is logged as a warning and OK; failures are returned.
  Status HandleRoundStart(const v1::RoundStart& start);
  // The handler of `item`, with an exception it throws turned into an error naming the job, the round
  // and what the worker was doing (*threw set).
  Status RunHandler(const WorkItem& item, bool* threw);
  // The tasklet of `round` (options_.before_tasklet first).
  Result<TaskletResult> RunTasklet(JobReplica& replica, uint64_t round);
  // Publishes the job's problem and how many committed rounds it sits out before it may try again.
  void ReportProblem(const std::string& job, uint64_t round, const std::string& reason);
  // A committed round of a job with a problem: clears the problem once its back-off is over.
  void MaybeRetry(const std::string& job, uint64_t committed_round);
  // The tasklet of `round` on the synced replica, then its upload.
  Status TrainAndUpload(JobReplica& replica, uint64_t round);
  // Under secure aggregation: the tasklet (unless its result is kept from an earlier RoundStart of the
  // round), then the round's SecAgg session instead of an upload.
  Status TrainAndAggregateSecurely(JobReplica& replica, uint64_t round);
  // Cluster mode: the island round of `start` (IslandSession); only the island's leader uploads.
  Status TrainInIsland(JobReplica& replica, const v1::RoundStart& start);
  // RoundCommitted: the replica follows it, then the uploads it covers are forgotten.
  Status HandleRoundCommitted(const v1::RoundCommitted& committed);

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  std::string peer_;  // "coordinator tcp://..."
  WorkQueue* queue_;
  StatusBoard* board_;
  ReplicaSync* sync_;
  Uploader* uploader_;
  SecAggSession* secagg_;
  IslandSession* island_;
  std::function<bool()> stopping_;
  // Jobs with a published problem: failures in a row, and the committed round from which it may retry.
  struct Retry {
    int failures = 0;
    uint64_t retry_at_round = 0;
  };
  std::map<std::string, Retry> retries_;
};

}  // namespace tributary
