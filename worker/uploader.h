// A worker's uploads of its round results (compute thread only; docs/protocol.md, "UploadUpdate"):
// builds the UploadUpdate of a tasklet result, with the payload inline or, above
// WorkerOptions::inline_payload_bytes, as the bulk object "upload/<job>/<round>/<worker>" that the
// coordinator pulls from the BulkSender while the upload waits for its UploadAck; sends it until it is
// accepted, refused, the round is committed, or the worker stops. The last upload of each job is kept
// (a repeated RoundStart sends it again) until a RoundCommitted covers its round.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "federation/tasklet.h"
#include "transport/bulk.h"
#include "transport/message.h"
#include "transport/work_client.h"
#include "worker/replica.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class Uploader {
 public:
  // None of the pointers is owned; all must outlive this. `work` serves BulkRequests from `objects`;
  // `queue` tells which rounds were committed meanwhile.
  Uploader(const WorkerOptions& options, transport::WorkClient* work, transport::BulkSender* objects, WorkQueue* queue);

  // Whether an upload of (job, round) was prepared and not dropped (a repeated RoundStart re-sends it).
  bool HasUpload(const std::string& job_id, uint64_t round) const;
  // Builds the upload of `result` (the tasklet of `round` on `replica`) and keeps it as the job's upload,
  // registering its payload as a bulk object when it is above the inline limit (the job's previous
  // upload object is removed).
  Status Prepare(const JobReplica& replica, uint64_t round, const TaskletResult& result, double train_seconds);
  // Sends the job's upload (Prepare first) until the coordinator accepts it (OK), refuses it (the error;
  // the upload is dropped), answers with something else (InvalidArgument), or the round is committed
  // meanwhile (OK). UploadAck.retry ("not yet") sends it again every second; an unanswered attempt is
  // retried by the WorkClient. Unavailable when the worker stops first.
  Status Send(const std::string& job_id);
  // Forgets the job's upload (and its bulk object) when its round is at most `round` (committed).
  void ForgetCommitted(const std::string& job_id, uint64_t round);

 private:
  // Forgets the job's upload and its bulk object.
  void Drop(const std::string& job_id);

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  std::string peer_;  // "coordinator tcp://..."
  transport::WorkClient* work_;
  transport::BulkSender* objects_;
  WorkQueue* queue_;
  std::map<std::string, v1::UploadUpdate> uploads_;  // job -> last upload
};

}  // namespace tributary
