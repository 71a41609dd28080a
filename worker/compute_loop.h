// The worker's compute thread: takes the pushed RoundStart / RoundCommitted from the WorkQueue one at a
// time and handles them on the work connection (docs/protocol.md, "Worker ↔ coordinator", 3 and 5):
//   RoundStart      sync the job's replica to committed_round (ReplicaSync), run the round's tasklet,
//                   upload the result (Uploader); a repeat of an uploaded round re-sends the upload.
//                   Under secure aggregation the result goes through the round's session (SecAggSession);
//                   in cluster mode the tasklet runs in the round's island (IslandSession).
//   RoundCommitted  advance (or warm) the replica (ReplicaSync), forget the uploads the round covers,
//                   free the replica of a finished job.
// Handlers return Status; the loop logs a failed one once, naming the job and round, and reports a job it
// cannot train to the coordinator (Heartbeat.problems).
#pragma once

#include <cstdint>
#include <functional>
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

 private:
  // Handles one item, logging its handler's failure once ("worker 'w1': job J round R: RoundStart: ...").
  // A RoundStart that failed before its upload is published as the job's problem (StatusBoard::SetProblem,
  // sent in heartbeats); one that succeeded, or a RoundCommitted that finished the job, clears it.
  void Handle(const WorkItem& item);
  // RoundStart: sync, check the payload limit, train, upload. A stale one (the replica is already past
  // its committed_round) is logged as a warning and OK; failures are returned.
  Status HandleRoundStart(const v1::RoundStart& start);
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
};

}  // namespace tributary
