#include "worker/uploader.h"

#include <spdlog/spdlog.h>

#include <memory>

namespace tributary {
namespace {

using transport::Envelope;

constexpr int kUploadRetryPauseMs = 1000;  // between sends of an upload answered UploadAck.retry

}  // namespace

Uploader::Uploader(const WorkerOptions& options, transport::WorkClient* work, transport::BulkSender* objects,
                   WorkQueue* queue)
    : options_(options),
      name_("worker '" + options.worker_id + "'"),
      peer_("coordinator " + options.coordinator),
      work_(work),
      objects_(objects),
      queue_(queue) {}

bool Uploader::HasUpload(const std::string& job_id, uint64_t round) const {
  auto it = uploads_.find(job_id);
  return it != uploads_.end() && it->second.round() == round;
}

Status Uploader::Prepare(const JobReplica& replica, uint64_t round, const TaskletResult& result, double train_seconds) {
  const std::string& job = replica.job_id();
  v1::UploadUpdate upload;
  upload.set_job_id(job);
  upload.set_round(round);
  upload.set_worker_id(options_.worker_id);
  upload.set_num_samples(result.num_samples);
  upload.set_loss(result.train_loss);
  upload.set_payload_kind(replica.method_info().payload_kind);
  upload.set_payload_size(result.payload.size());
  upload.set_payload_checksum(transport::ObjectChecksum(result.payload.data(), result.payload.size()));
  upload.set_train_seconds(train_seconds);
  upload.set_island_bytes(result.island_bytes);
  auto previous = uploads_.find(job);
  if (previous != uploads_.end() && !previous->second.payload_object_id().empty())
    objects_->RemoveObject(previous->second.payload_object_id());
  const char* bytes = reinterpret_cast<const char*>(result.payload.data());
  if (result.payload.size() > options_.inline_payload_bytes) {
    // Too large for the envelope: the coordinator pulls it from this worker (served by the WorkClient).
    const std::string object_id = "upload/" + job + "/" + std::to_string(round) + "/" + options_.worker_id;
    auto data = std::make_shared<const std::string>(bytes, result.payload.size());
    TRIB_RETURN_IF_ERROR(objects_->AddObject(object_id, std::make_shared<transport::MemorySource>(std::move(data)))
                             .WithContext("registering the upload as bulk object '" + object_id + "'"));
    upload.set_payload_object_id(object_id);
  } else {
    upload.set_payload(std::string(bytes, result.payload.size()));
  }
  uploads_[job] = std::move(upload);
  return Status::OK();
}

Status Uploader::Send(const std::string& job_id) {
  auto found = uploads_.find(job_id);
  if (found == uploads_.end()) return Status::Internal("job " + job_id + ": no upload to send");
  const v1::UploadUpdate upload = found->second;  // a copy: a refusal drops the kept one
  const uint64_t round = upload.round();
  const std::string where = name_ + ": " + JobRound(job_id, round);
  auto committed = [this, &job_id, round] { return queue_->CommittedSeen(job_id) >= round; };
  bool said_retry = false;
  while (!work_->Stopping()) {
    Envelope request = transport::NewEnvelope(options_.worker_id);
    *request.mutable_upload_update() = upload;
    auto reply = work_->Request(request, JobRound(job_id, round) + ": UploadUpdate", committed);
    if (!reply.ok()) {
      if (committed()) {
        spdlog::info("{}: the round was committed before the upload was accepted", where);
        return Status::OK();
      }
      if (!work_->Stopping()) Drop(job_id);
      return reply.status().WithContext("upload failed");
    }
    if (reply->envelope.body_case() != Envelope::kUploadAck)
      return Status::InvalidArgument(peer_ + " answered the upload with '" +
                                     transport::BodyName(reply->envelope.body_case()) + "'");
    const v1::UploadAck& ack = reply->envelope.upload_ack();
    if (ack.accepted()) {
      spdlog::info("{}: upload of {} bytes accepted by {}{}{}", where, upload.payload_size(), peer_,
                   ack.duplicate() ? " (duplicate)" : "", ack.late() ? " (late)" : "");
      return Status::OK();
    }
    if (!ack.retry()) {
      Drop(job_id);
      return Status::FailedPrecondition("upload refused by " + peer_ + ": " + ack.reason());
    }
    if (!said_retry)
      spdlog::info("{}: {} cannot take the upload yet ({}); sending it again every second", where, peer_, ack.reason());
    said_retry = true;
    work_->PauseUnlessStopping(kUploadRetryPauseMs);
    if (committed()) {
      spdlog::info("{}: the round was committed before the upload was accepted", where);
      return Status::OK();
    }
  }
  return Status::Unavailable(JobRound(job_id, round) + ": upload: the worker is stopping");
}

void Uploader::ForgetCommitted(const std::string& job_id, uint64_t round) {
  auto it = uploads_.find(job_id);
  if (it != uploads_.end() && it->second.round() <= round) Drop(job_id);
}

void Uploader::Drop(const std::string& job_id) {
  auto it = uploads_.find(job_id);
  if (it == uploads_.end()) return;
  if (!it->second.payload_object_id().empty()) objects_->RemoveObject(it->second.payload_object_id());
  uploads_.erase(it);
}

}  // namespace tributary
