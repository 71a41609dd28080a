// A worker's side of a round under secure aggregation (docs/secure-aggregation.md; compute thread only).
// After the tasklet, instead of an UploadUpdate, the worker joins the round's session and runs its
// SecAggClient (federation/secagg.h) through the four stages on the work connection: each stage's
// SecAggRequest is sent again every 100 ms while the coordinator answers "pending" (after the first
// delivery without its bytes). The tasklet result is kept until a RoundCommitted covers the round, so a
// repeated RoundStart or a new session of the same round (the coordinator restarted, or re-planned the
// round) reuses it instead of training again.
//
// A worker never masks the same update in two sessions: two unmasked sums over different survivors would
// reveal it. Once it sent a masked input for a round it declines every later session of that round.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "federation/tasklet.h"
#include "transport/message.h"
#include "transport/work_client.h"
#include "worker/replica.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class SecAggSession {
 public:
  // None of the pointers is owned; all must outlive this. `queue` tells which rounds were committed.
  SecAggSession(const WorkerOptions& options, transport::WorkClient* work, WorkQueue* queue);

  // Whether the tasklet result of (job, round) is kept.
  bool HasResult(const std::string& job_id, uint64_t round) const;
  // Keeps the tasklet result of `round` as the job's (replacing an older round's).
  void Keep(const std::string& job_id, uint64_t round, TaskletResult result, double train_seconds);
  // Takes part in the round's session with the kept result (Keep first) until the session finishes (OK),
  // this client is left out of it (OK, logged), the round is committed meanwhile (OK), or an error: a
  // refused or malformed message, a later session of a round it already masked its input for
  // (FailedPrecondition), the worker stopping (Unavailable).
  Status Run(const JobReplica& replica, uint64_t round);
  // Forgets the job's kept result when its round is at most `round` (committed).
  void ForgetCommitted(const std::string& job_id, uint64_t round);

 private:
  struct Kept {
    uint64_t round = 0;
    TaskletResult result;
    double train_seconds = 0;
    uint64_t masked_session = 0;  // the session it sent a masked input in (0: none)
    uint64_t rounding_seed = 0;   // stochastic rounding: the same quantized vector in every try
  };
  enum class Ended { kFinished, kRestart };

  // One stage's request until its reply is no longer pending (or the round is committed: nullopt).
  Result<std::optional<v1::SecAggReply>> Exchange(v1::SecAggRequest request, uint64_t round);
  // One session from its join answer to the end: kRestart when it is over and a new one must be joined.
  Result<Ended> RunSession(const JobReplica& replica, Kept& kept, const v1::SecAggReply& joined);
  v1::SecAggRequest Request(const std::string& job_id, uint64_t round, uint32_t stage, uint64_t session,
                            std::vector<uint8_t> message) const;

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  transport::WorkClient* work_;
  WorkQueue* queue_;
  std::map<std::string, Kept> kept_;  // job -> its latest tasklet result
};

}  // namespace tributary
