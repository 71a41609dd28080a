#include "coordinator/upload_intake.h"

#include <spdlog/spdlog.h>

#include <optional>

namespace tributary {

using transport::Envelope;
using transport::Incoming;

UploadVerdict UploadVerdict::Of(UploadOutcome outcome) {
  UploadVerdict v;
  v.accepted = outcome == UploadOutcome::kAccepted;
  v.duplicate = outcome == UploadOutcome::kDuplicate;
  v.late = outcome == UploadOutcome::kLate;
  if (!v.accepted) v.reason = UploadOutcomeName(outcome);
  return v;
}

UploadVerdict UploadVerdict::Refused(std::string reason, bool retry) {
  UploadVerdict v;
  v.retry = retry;
  v.reason = std::move(reason);
  return v;
}

Envelope MakeUploadAck(const v1::UploadUpdate& upload, const UploadVerdict& verdict) {
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::UploadAck* ack = reply.mutable_upload_ack();
  ack->set_job_id(upload.job_id());
  ack->set_round(upload.round());
  ack->set_accepted(verdict.accepted);
  ack->set_duplicate(verdict.duplicate);
  ack->set_late(verdict.late);
  ack->set_retry(verdict.retry);
  ack->set_reason(verdict.reason);
  return reply;
}

UploadIntake::UploadIntake(transport::Server* server, const WorkerRegistry* workers, CoordinatorMetrics* metrics,
                           FindJob find_job)
    : server_(server), workers_(workers), metrics_(metrics), find_job_(std::move(find_job)) {}

void UploadIntake::Answer(const ReplyTo& to, const v1::UploadUpdate& u, const UploadVerdict& verdict,
                          const char* metric) {
  if (!verdict.accepted && !verdict.retry && !verdict.duplicate && !verdict.late)
    spdlog::warn("coordinator: upload refused: job '{}' round {} from worker '{}' ({}): {}", u.job_id(), u.round(),
                 u.worker_id(), to.peer, verdict.reason);
  if (metric != nullptr) metrics_->OnUploadRejected(metric);
  Envelope reply = MakeUploadAck(u, verdict);
  reply.set_in_reply_to(to.message_id);
  Status sent = server_->Send(to.routing_id, reply);
  if (!sent.ok()) spdlog::warn("coordinator: UploadAck to {}: {}", to.peer, sent.ToString());
}

void UploadIntake::AnswerError(const ReplyTo& to, const v1::UploadUpdate& u, const Status& error, const char* metric) {
  switch (error.code()) {
    case StatusCode::kUnavailable:  // the round is not open yet (e.g. after a coordinator restart)
      return Answer(to, u, UploadVerdict::Refused(error.message(), /*retry=*/true), nullptr);
    case StatusCode::kFailedPrecondition: {  // the job no longer runs
      UploadVerdict late = UploadVerdict::Refused(error.message(), /*retry=*/false);
      late.late = true;
      spdlog::warn("coordinator: upload refused: job '{}' round {} from worker '{}' ({}): {}", u.job_id(), u.round(),
                   u.worker_id(), to.peer, error.message());
      return Answer(to, u, late, UploadOutcomeName(UploadOutcome::kLate));
    }
    default: return Answer(to, u, UploadVerdict::Refused(error.message(), /*retry=*/false), metric);
  }
}

void UploadIntake::OnUpload(const Incoming& in, int64_t now_ms) {
  const v1::UploadUpdate& u = in.message.envelope.upload_update();
  const ReplyTo to{in.peer.routing_id, in.message.envelope.message_id(), in.peer.Describe()};
  auto worker = workers_->Authorize(u.worker_id(), in.peer);
  if (!worker.ok()) {
    const bool retry = worker.status().code() == StatusCode::kNotFound;  // not re-registered yet
    return Answer(to, u, UploadVerdict::Refused(worker.status().message(), retry), retry ? nullptr : "unauthorized");
  }
  JobRunner* job = find_job_(u.job_id());
  if (job == nullptr)
    return Answer(to, u, UploadVerdict::Refused("unknown job '" + u.job_id() + "'", false), "unknown_job");
  if (!u.payload_object_id().empty()) return StartPull(to, u, job, now_ms);
  if (!u.payload_checksum().empty() &&
      u.payload_checksum() != transport::ObjectChecksum(u.payload().data(), u.payload().size()))
    return Answer(to, u, UploadVerdict::Refused("payload checksum mismatch", false), "checksum");
  Accept(to, u, u.payload(), /*pulled=*/false, now_ms);
}

void UploadIntake::Accept(const ReplyTo& to, const v1::UploadUpdate& u, const std::string& payload, bool pulled,
                          int64_t now_ms) {
  JobRunner* job = find_job_(u.job_id());
  if (job == nullptr)
    return Answer(to, u, UploadVerdict::Refused("unknown job '" + u.job_id() + "'", false), "unknown_job");
  auto outcome = job->AcceptUpload(u, payload, pulled, now_ms);
  if (!outcome.ok()) return AnswerError(to, u, outcome.status(), "invalid");
  const bool accepted = *outcome == UploadOutcome::kAccepted;
  Answer(to, u, UploadVerdict::Of(*outcome), accepted ? nullptr : UploadOutcomeName(*outcome));
  // The last upload closes the round now rather than at the next tick (after the worker's UploadAck).
  if (accepted) job->CloseRoundIfComplete(now_ms);
}

void UploadIntake::StartPull(const ReplyTo& to, const v1::UploadUpdate& u, JobRunner* job, int64_t now_ms) {
  // The job's checks first: nothing is pulled for an upload that would be refused anyway.
  auto checked = job->CheckUpload(u.worker_id(), u.round(), u.payload_size());
  if (!checked.ok()) return AnswerError(to, u, checked.status(), "invalid");
  if (*checked != UploadOutcome::kAccepted)
    return Answer(to, u, UploadVerdict::Of(*checked), UploadOutcomeName(*checked));
  if (u.payload_checksum().size() != transport::kObjectChecksumBytes)
    return Answer(to, u,
                  UploadVerdict::Refused("round " + std::to_string(u.round()) + ": worker '" + u.worker_id() +
                                             "': bulk payload without a 32-byte payload_checksum",
                                         false),
                  "checksum");

  const std::string key = u.worker_id() + "/" + u.payload_object_id();
  auto it = pulls_.find(key);
  if (it != pulls_.end() && it->second.upload.round() == u.round() &&
      it->second.upload.payload_checksum() == u.payload_checksum()) {
    // The worker sent the upload again (its request timed out): answer this request once done.
    it->second.reply_to = to;
    it->second.receiver->ResetInFlight();
    it->second.last_progress_ms = now_ms;
    return RequestChunks(it->second);
  }
  Pull pull;
  pull.reply_to = to;
  pull.upload = u;
  pull.sink = std::make_unique<transport::BufferSink>(u.payload_size());
  pull.receiver = std::make_unique<transport::BulkReceiver>(u.payload_object_id(), pull.sink.get(), 8,
                                                            "worker '" + u.worker_id() + "' (" + to.peer + ")");
  pull.receiver->ExpectObjectChecksum(u.payload_checksum());
  pull.last_progress_ms = now_ms;
  pull.started_ms = now_ms;
  spdlog::info("job {}: round {}: pulling the {} B upload of '{}' as bulk object '{}'", u.job_id(), u.round(),
               u.payload_size(), u.worker_id(), u.payload_object_id());
  Pull& stored = pulls_[key] = std::move(pull);
  RequestChunks(stored);
}

void UploadIntake::RequestChunks(Pull& pull) {
  while (std::optional<v1::BulkRequest> request = pull.receiver->NextRequest()) {
    Envelope env = transport::NewEnvelope("coordinator");
    *env.mutable_bulk_request() = *request;
    Status sent = server_->Send(pull.reply_to.routing_id, env);
    if (!sent.ok()) {
      spdlog::debug("coordinator: BulkRequest to {}: {}", pull.reply_to.peer, sent.ToString());
      pull.receiver->ResetInFlight();
      return;
    }
  }
}

void UploadIntake::OnBulkChunk(const Incoming& in, int64_t now_ms) {
  const v1::BulkChunkHeader& header = in.message.envelope.bulk_chunk_header();
  auto it = pulls_.begin();
  for (; it != pulls_.end(); ++it) {
    if (it->second.receiver->object_id() == header.object_id() && it->second.reply_to.routing_id == in.peer.routing_id)
      break;
  }
  if (it == pulls_.end()) {
    spdlog::debug("coordinator: chunk of '{}' from {} matches no pull (already done?)", header.object_id(),
                  in.peer.Describe());
    return;
  }
  Pull& pull = it->second;
  if (in.message.bulk.size() != 1) {
    spdlog::warn("coordinator: chunk of '{}' from {} has {} data frames", header.object_id(), in.peer.Describe(),
                 in.message.bulk.size());
    return;
  }
  const uint64_t before = pull.receiver->next_chunk();
  Status written = pull.receiver->OnChunk(header, in.message.bulk[0]);
  if (!written.ok()) {
    const v1::UploadUpdate upload = pull.upload;
    const ReplyTo to = pull.reply_to;
    pulls_.erase(it);
    spdlog::warn("coordinator: pulling upload '{}': {}; the worker is asked to send it again", header.object_id(),
                 written.ToString());
    return Answer(to, upload, UploadVerdict::Refused("bulk payload: " + written.message(), /*retry=*/true), nullptr);
  }
  if (pull.receiver->next_chunk() != before) pull.last_progress_ms = now_ms;
  if (!pull.receiver->complete()) return RequestChunks(pull);
  Status finished = pull.receiver->Finish();
  const v1::UploadUpdate upload = pull.upload;
  const ReplyTo to = pull.reply_to;
  const std::string payload = pull.sink->Release();
  const int64_t pull_ms = now_ms - pull.started_ms;
  pulls_.erase(it);
  if (!finished.ok())
    return Answer(to, upload, UploadVerdict::Refused("bulk payload: " + finished.message(), /*retry=*/true), nullptr);
  if (JobRunner* job = find_job_(upload.job_id()); job != nullptr && pull_ms > 0)
    job->ObserveUploadGoodput(upload.worker_id(), payload.size(), static_cast<double>(pull_ms) / 1000.0);
  Accept(to, upload, payload, /*pulled=*/true, now_ms);
}

void UploadIntake::Tick(int64_t now_ms) {
  for (auto it = pulls_.begin(); it != pulls_.end();) {
    Pull& pull = it->second;
    if (now_ms - pull.last_progress_ms < kPullStallMs) {
      ++it;
      continue;
    }
    if (++pull.resets > kMaxPullResets) {
      const v1::UploadUpdate upload = pull.upload;
      const ReplyTo to = pull.reply_to;
      it = pulls_.erase(it);
      spdlog::warn("coordinator: pulling upload '{}' from {}: no progress after {} re-requests; dropped",
                   upload.payload_object_id(), to.peer, kMaxPullResets);
      Answer(to, upload, UploadVerdict::Refused("bulk payload: the pull stalled", /*retry=*/true), nullptr);
      continue;
    }
    pull.last_progress_ms = now_ms;
    pull.receiver->ResetInFlight();
    RequestChunks(pull);
    ++it;
  }
}

}  // namespace tributary
