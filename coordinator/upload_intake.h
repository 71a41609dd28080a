// UploadIntake: the coordinator's side of UploadUpdate (docs/protocol.md, "UploadUpdate"). An inline
// payload goes to its job at once; a payload announced as a bulk object (payload_object_id) is pulled
// from the worker chunk by chunk — after the job's payload-free checks (JobRunner::CheckUpload, i.e.
// RoundDriver::CheckUpload), so nothing is pulled for an upload that would be refused — and goes to its
// job once complete and verified. Every UploadUpdate is answered with one UploadAck (MakeUploadAck).
// Not thread-safe: the coordinator's loop thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "coordinator/job_runner.h"
#include "coordinator/metrics.h"
#include "coordinator/worker_registry.h"
#include "transport/bulk.h"
#include "transport/channel.h"

namespace tributary {

// What an UploadAck says about one upload.
struct UploadVerdict {
  bool accepted = false;
  bool duplicate = false;
  bool late = false;
  bool retry = false;  // "not yet": the worker sends the same upload again later
  std::string reason;  // empty when accepted

  // The verdict of a RoundDriver outcome (reason: UploadOutcomeName unless accepted).
  static UploadVerdict Of(UploadOutcome outcome);
  static UploadVerdict Refused(std::string reason, bool retry);
};

// The UploadAck envelope answering `upload` (job_id and round copied from it).
transport::Envelope MakeUploadAck(const v1::UploadUpdate& upload, const UploadVerdict& verdict);

class UploadIntake {
 public:
  using FindJob = std::function<JobRunner*(const std::string& job_id)>;

  // All pointers are not owned and outlive the intake; `find_job` returns nullptr for unknown jobs.
  UploadIntake(transport::Server* server, const WorkerRegistry* workers, CoordinatorMetrics* metrics, FindJob find_job);
  UploadIntake(const UploadIntake&) = delete;
  UploadIntake& operator=(const UploadIntake&) = delete;

  // An UploadUpdate: the worker must be authorized (not registered: retry; another key: refused) and
  // the job known. An inline payload (its checksum checked when given) is accepted or refused by its
  // job; a bulk payload is pulled after the job's checks pass (a re-sent UploadUpdate continues its
  // pull and is the one answered). The last upload of a round closes it (after the UploadAck).
  void OnUpload(const transport::Incoming& in, int64_t now_ms);

  // A chunk of a pulled payload (BulkChunkHeader + one data frame from the worker that announced it;
  // others are ignored). A corrupt chunk or object drops the pull and answers retry; a complete payload
  // goes to its job like an inline one.
  void OnBulkChunk(const transport::Incoming& in, int64_t now_ms);

  // Re-requests pulls without progress for kPullStallMs from their first missing chunk; a pull reset
  // more than kMaxPullResets times is dropped and answered retry.
  void Tick(int64_t now_ms);

  size_t pulls_in_progress() const { return pulls_.size(); }

  static constexpr int64_t kPullStallMs = 5000;
  static constexpr int kMaxPullResets = 10;

 private:
  // Where an UploadAck goes: the sender of the UploadUpdate (inline, or after its payload was pulled).
  struct ReplyTo {
    std::string routing_id;
    uint64_t message_id = 0;
    std::string peer;  // PeerInfo::Describe, for logs
  };
  // A bulk payload being pulled from its worker.
  struct Pull {
    ReplyTo reply_to;
    v1::UploadUpdate upload;  // payload empty
    std::unique_ptr<transport::BufferSink> sink;
    std::unique_ptr<transport::BulkReceiver> receiver;
    int64_t last_progress_ms = 0;
    int64_t started_ms = 0;  // its goodput is a drift observation (JobRunner::ObserveUploadGoodput)
    int resets = 0;
  };

  void StartPull(const ReplyTo& to, const v1::UploadUpdate& u, JobRunner* job, int64_t now_ms);
  void RequestChunks(Pull& pull);
  // Hands a payload (inline or pulled) to its job and answers the worker.
  void Accept(const ReplyTo& to, const v1::UploadUpdate& u, const std::string& payload, bool pulled, int64_t now_ms);
  // Answers an error of the job's checks: Unavailable -> retry; FailedPrecondition (job no longer
  // runs) -> late; others refused with `metric`.
  void AnswerError(const ReplyTo& to, const v1::UploadUpdate& u, const Status& error, const char* metric);
  // Sends the UploadAck; a refusal that is not a retry is logged and counted under `metric` (nullptr:
  // accepted, nothing to count).
  void Answer(const ReplyTo& to, const v1::UploadUpdate& u, const UploadVerdict& verdict, const char* metric);

  transport::Server* server_;
  const WorkerRegistry* workers_;
  CoordinatorMetrics* metrics_;
  FindJob find_job_;
  std::map<std::string, Pull> pulls_;  // worker id + "/" + object id -> pull in progress
};

}  // namespace tributary
