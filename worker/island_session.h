// A worker's part in a cluster-mode outer round (docs/cluster.md): join the round's island incarnation
// (gloo over the island fabric, rendezvous through the coordinator on the work connection), run the
// tasklet with the island all-reduce between backward and every optimizer step, then check that every
// member holds the same pseudo-gradient and sum the island's samples. Only the leader (rank 0) uploads.
#pragma once

#include <string>

#include "base/status.h"
#include "federation/tasklet.h"
#include "transport/proto/tributary.pb.h"
#include "transport/work_client.h"
#include "worker/replica.h"
#include "worker/worker_options.h"

namespace tributary {

class IslandSession {
 public:
  // Neither pointer is owned; both must outlive the session. Used by the compute thread only.
  IslandSession(const WorkerOptions& options, transport::WorkClient* work) : options_(options), work_(work) {}

  // The island round of `start` (which carries the assignment) on the synced replica. On return the
  // replica is unchanged; the result's payload is the island's (identical on every member, checked) and
  // num_samples the island's total: its members' rows, or with planned member batches the sequences the
  // island trained this round. Errors name the island and incarnation: a member that died or froze
  // makes the collectives fail within the assignment's timeout, and the coordinator re-forms the island.
  Result<TaskletResult> Run(JobReplica& replica, const v1::RoundStart& start);

 private:
  const WorkerOptions& options_;
  transport::WorkClient* work_;
};

}  // namespace tributary
