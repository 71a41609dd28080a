#include "worker/replica_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "transport/bulk.h"
#include "worker/work_queue.h"

namespace tributary {
namespace {

using transport::Envelope;
using transport::Message;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The failure of a sync step after which the replica was dropped.
Status Dropped(const Status& status) {
  return Status(status.code(), status.message() + "; replica dropped");
}

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ReplicaSync::ReplicaSync(const WorkerOptions& options, transport::WorkClient* work, StatusBoard* board)
    : options_(options),
      name_("worker '" + options.worker_id + "'"),
      peer_("coordinator " + options.coordinator),
      work_(work),
      board_(board) {}

Result<JobReplica*> ReplicaSync::Ensure(const std::string& job_id, const JobSpec& spec) {
  auto it = replicas_.find(job_id);
  if (it != replicas_.end()) return it->second.get();
  const DatasetInfo* dataset = nullptr;
  for (const DatasetInfo& d : options_.datasets)
    if (d.name == spec.dataset) dataset = &d;
  if (dataset == nullptr)
    return Status::NotFound("job " + job_id + ": field 'data.dataset': this worker holds no dataset '" + spec.dataset +
                            "'");
  spdlog::info("{}: job {}: loading base model {} and dataset '{}' ({})", name_, job_id, spec.base_model, dataset->name,
               dataset->path);
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobReplica> replica, JobReplica::Create(job_id, spec, dataset->path));
  spdlog::info("{}: job {}: replica ready ({} training rows, weights hash {})", name_, job_id, replica->rows().size(),
               replica->weights_hash_hex());
  JobReplica* raw = replica.get();
  replicas_[job_id] = std::move(replica);
  Publish();
  CalibrateOnce(*raw);
  return raw;
}

void ReplicaSync::CalibrateOnce(JobReplica& replica) {
  const CalibrationOptions& calibration = options_.calibration;
  const std::string& job = replica.job_id();
  if (!calibration.enabled || !calibrated_.insert(job).second) return;
  if (calibration.tokens_per_s > 0) {
    spdlog::info("{}: job {}: compute rate {:.1f} tokens/s from worker.tokens_per_s (not measured)", name_, job,
                 calibration.tokens_per_s);
    board_->SetCalibration({job, calibration.tokens_per_s, UnixNowMs()});
    return;
  }
  Result<ComputeRate> rate = replica.MeasureCompute(calibration);
  if (!rate.ok()) {
    spdlog::warn("{}: job {}: compute calibration failed, reporting no rate: {}", name_, job, rate.status().message());
    return;
  }
  spdlog::info("{}: job {}: calibrated {:.1f} tokens/s ({} forward+backward passes of {} tokens in {:.3f} s)", name_,
               job, rate->tokens_per_s, rate->steps, rate->steps > 0 ? rate->tokens / rate->steps : 0, rate->seconds);
  board_->SetCalibration({job, rate->tokens_per_s, UnixNowMs()});
}

Result<JobReplica*> ReplicaSync::SyncTo(const std::string& job_id, const JobSpec& spec, uint64_t target,
                                        const std::string& expected_hash) {
  for (int attempt = 0;; ++attempt) {
    TRIB_ASSIGN_OR_RETURN(JobReplica * replica, Ensure(job_id, spec));
    Status synced = CatchUp(*replica, target);
    if (!synced.ok()) {
      Drop(job_id);
      return Dropped(synced.WithContext("catching up"));
    }
    if (expected_hash.empty() || replica->weights_hash_hex() == expected_hash) return replica;
    const std::string mismatch = "weights hash mismatch at round " + std::to_string(target) + ": replica " +
                                 replica->weights_hash_hex() + ", coordinator " + expected_hash;
    Drop(job_id);
    if (attempt > 0) return Status::Corruption(mismatch + " after rebuilding it from the base model; replica dropped");
    spdlog::error("{}: job {}: {}; rebuilding the replica", name_, job_id, mismatch);
    if (work_->Stopping()) return Status::Unavailable("job " + job_id + ": the worker is stopping");
  }
}

Status ReplicaSync::OnRoundCommitted(const v1::RoundCommitted& committed) {
  const std::string& job = committed.job_id();
  const uint64_t round = committed.round();
  const bool aggregate_bulk = committed.aggregate().empty() && !committed.aggregate_object_id().empty();
  bool aggregate_ok = true;  // a bulk aggregate is checked when it is fetched
  if (!aggregate_bulk && !committed.aggregate_checksum().empty() &&
      transport::ObjectChecksum(committed.aggregate().data(), committed.aggregate().size()) !=
          committed.aggregate_checksum()) {
    spdlog::error("{}: {}: the aggregate's checksum does not match; getting the round by catch-up", name_,
                  JobRound(job, round));
    aggregate_ok = false;
  }
  auto it = replicas_.find(job);
  if (it == replicas_.end()) return Warm(committed);
  if (it->second->round() >= round) return Status::OK();
  board_->SetActivity("syncing", job, round);
  Status advanced = Advance(*it->second, committed, aggregate_ok);
  if (advanced.ok()) return advanced;
  Drop(job);
  return Dropped(advanced);
}

Status ReplicaSync::Warm(const v1::RoundCommitted& committed) {
  const std::string& job = committed.job_id();
  const uint64_t round = committed.round();
  if (committed.job_finished() || foreign_jobs_.count(job) != 0) return Status::OK();
  board_->SetActivity("syncing", job, round);
  TRIB_ASSIGN_OR_RETURN(v1::CatchUpReply reply, RequestCatchUp(job, 0, round));
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(reply.spec_yaml(), "job " + job + " spec"));
  const bool holds = std::any_of(options_.datasets.begin(), options_.datasets.end(),
                                 [&](const DatasetInfo& d) { return d.name == spec.dataset; });
  if (!holds || reply.state().rfind("FINISHED", 0) == 0) {
    foreign_jobs_.insert(job);
    return Status::OK();
  }
  Result<JobReplica*> replica = Ensure(job, spec);
  if (!replica.ok()) {
    foreign_jobs_.insert(job);  // its dataset cannot be used: do not retry on every round
    return replica.status();
  }
  bool progressed = false;
  Status synced = ApplyCatchUpReply(**replica, reply, round, &progressed);
  if (synced.ok()) synced = CatchUp(**replica, round);
  if (synced.ok()) return synced;
  Drop(job);
  return Dropped(synced.WithContext("catching up"));
}

Status ReplicaSync::Advance(JobReplica& replica, const v1::RoundCommitted& committed, bool aggregate_ok) {
  const uint64_t round = committed.round();
  TRIB_RETURN_IF_ERROR(CatchUp(replica, aggregate_ok ? round - 1 : round));
  if (replica.round() + 1 != round) return Status::OK();
  if (committed.aggregate().empty() && !committed.aggregate_object_id().empty()) {
    TRIB_ASSIGN_OR_RETURN(std::string fetched,
                          FetchAggregate(replica.job_id(), round, committed.aggregate_object_id(),
                                         committed.aggregate_size(), committed.aggregate_checksum()));
    return ApplyRound(replica, round, AsBytes(fetched), committed.weights_hash());
  }
  return ApplyRound(replica, round, AsBytes(committed.aggregate()), committed.weights_hash());
}

void ReplicaSync::FinishJob(const std::string& job_id) {
  auto live = replicas_.find(job_id);
  if (live != replicas_.end()) {
    finished_.push_back({job_id, live->second->round(), live->second->weights_hash_hex()});
    while (finished_.size() > kFinishedReplicasKept) finished_.pop_front();
    spdlog::info("{}: job {} finished at round {}: replica freed", name_, job_id, live->second->round());
  }
  replicas_.erase(job_id);
  Publish();
}

void ReplicaSync::Drop(const std::string& job_id) {
  replicas_.erase(job_id);
  Publish();
}

void ReplicaSync::Publish() {
  std::vector<ReplicaReport> reports;
  for (const auto& [job_id, replica] : replicas_)
    reports.push_back({job_id, replica->round(), replica->weights_hash_hex()});
  for (const ReplicaReport& report : finished_) {
    if (replicas_.count(report.job_id) == 0) reports.push_back(report);
  }
  board_->SetReplicas(std::move(reports));
}

// ---------------------------------------------------------------------------------------------
// Catch-up on the work connection.

Status ReplicaSync::CatchUp(JobReplica& replica, uint64_t target) {
  while (replica.round() < target && !work_->Stopping()) {
    TRIB_ASSIGN_OR_RETURN(v1::CatchUpReply reply, RequestCatchUp(replica.job_id(), replica.round(), target));
    bool progressed = false;
    TRIB_RETURN_IF_ERROR(ApplyCatchUpReply(replica, reply, target, &progressed));
    if (!progressed)
      return Status::FailedPrecondition(peer_ + ": CatchUpReply for job " + replica.job_id() + " from round " +
                                        std::to_string(replica.round()) + " brought no round (last committed " +
                                        std::to_string(reply.last_committed_round()) + ", wanted " +
                                        std::to_string(target) + ")");
  }
  if (replica.round() < target) return Status::Unavailable("job " + replica.job_id() + ": the worker is stopping");
  return Status::OK();
}

Result<v1::CatchUpReply> ReplicaSync::RequestCatchUp(const std::string& job_id, uint64_t from_round,
                                                     uint64_t to_round) {
  Envelope request = transport::NewEnvelope(options_.worker_id);
  v1::CatchUpRequest* body = request.mutable_catch_up_request();
  body->set_job_id(job_id);
  body->set_worker_id(options_.worker_id);
  body->set_from_round(from_round);
  body->set_to_round(to_round);
  spdlog::info("{}: job {}: catching up from round {} to {}", name_, job_id, from_round, to_round);
  TRIB_ASSIGN_OR_RETURN(Message reply, work_->Request(request, "job " + job_id + ": CatchUpRequest"));
  if (reply.envelope.body_case() != Envelope::kCatchUpReply)
    return Status::InvalidArgument(peer_ + " answered a CatchUpRequest with '" +
                                   transport::BodyName(reply.envelope.body_case()) + "'");
  return std::move(*reply.envelope.mutable_catch_up_reply());
}

Status ReplicaSync::ApplyCatchUpReply(JobReplica& replica, const v1::CatchUpReply& reply, uint64_t target,
                                      bool* progressed) {
  *progressed = false;
  const std::string& job = replica.job_id();
  if (!reply.snapshot_object_id().empty() && reply.snapshot_round() > replica.round() &&
      reply.snapshot_round() <= target) {
    TRIB_RETURN_IF_ERROR(LoadSnapshot(replica, reply));
    *progressed = true;
  }
  for (const v1::CommittedAggregate& round : reply.rounds()) {
    if (round.round() <= replica.round()) continue;
    if (round.round() > target) break;
    if (round.round() != replica.round() + 1)
      return Status::InvalidArgument(peer_ + ": CatchUpReply for job " + job + " skips from round " +
                                     std::to_string(replica.round()) + " to " + std::to_string(round.round()));
    if (round.aggregate().empty() && !round.aggregate_object_id().empty()) {
      TRIB_ASSIGN_OR_RETURN(std::string fetched, FetchAggregate(job, round.round(), round.aggregate_object_id(),
                                                                round.aggregate_size(), round.aggregate_checksum()));
      TRIB_RETURN_IF_ERROR(ApplyRound(replica, round.round(), AsBytes(fetched), round.weights_hash()));
    } else {
      TRIB_RETURN_IF_ERROR(ApplyRound(replica, round.round(), AsBytes(round.aggregate()), round.weights_hash()));
    }
    *progressed = true;
  }
  return Status::OK();
}

Status ReplicaSync::LoadSnapshot(JobReplica& replica, const v1::CatchUpReply& reply) {
  const std::string& job = replica.job_id();
  if (reply.snapshot_size() > replica.state_bytes())
    return Status::InvalidArgument(peer_ + ": job " + job + ": snapshot of " + std::to_string(reply.snapshot_size()) +
                                   " bytes, the replica's state has " + std::to_string(replica.state_bytes()));
  spdlog::info("{}: job {}: fetching the snapshot of round {} ({} bytes) from {}", name_, job, reply.snapshot_round(),
               reply.snapshot_size(), peer_);
  TRIB_ASSIGN_OR_RETURN(std::string snapshot,
                        FetchServed(job, reply.snapshot_object_id(), reply.snapshot_size(), reply.snapshot_checksum(),
                                    "job " + job + ": snapshot of round " + std::to_string(reply.snapshot_round())));
  TRIB_RETURN_IF_ERROR(replica.LoadSnapshot(reply.snapshot_round(), snapshot, reply.snapshot_weights_hash()));
  spdlog::info("job {} round {} applied (weights hash {}) from a snapshot", job, replica.round(),
               replica.weights_hash_hex());
  Publish();
  return Status::OK();
}

Status ReplicaSync::ApplyRound(JobReplica& replica, uint64_t round, std::span<const uint8_t> aggregate,
                               const std::string& expected_hash) {
  TRIB_RETURN_IF_ERROR(replica.ApplyRound(round, aggregate, expected_hash));
  spdlog::info("job {} round {} applied (weights hash {})", replica.job_id(), round, replica.weights_hash_hex());
  Publish();
  return Status::OK();
}

Result<std::string> ReplicaSync::FetchAggregate(const std::string& job_id, uint64_t round, const std::string& object_id,
                                                uint64_t size, const std::string& checksum) {
  if (size > options_.max_dense_payload_bytes)
    return Status::InvalidArgument(peer_ + ": job " + job_id + " round " + std::to_string(round) + ": aggregate of " +
                                   std::to_string(size) + " bytes is above this worker's limit");
  spdlog::info("{}: job {}: fetching the aggregate of round {} ({} bytes) as bulk object '{}'", name_, job_id, round,
               size, object_id);
  return FetchServed(job_id, object_id, size, checksum,
                     "job " + job_id + ": aggregate of round " + std::to_string(round));
}

Result<std::string> ReplicaSync::FetchServed(const std::string& job_id, const std::string& object_id, uint64_t size,
                                             const std::string& checksum, const std::string& what) {
  if (options_.multistream_min_bytes > 0 && size >= options_.multistream_min_bytes && !multistream_off_) {
    Result<transport::MultistreamFetched> fetched = FetchOverStreams(job_id, object_id, size, checksum);
    if (fetched.ok()) {
      const double mbps = fetched->stats.seconds > 0 ? size * 8e-6 / fetched->stats.seconds : 0;
      spdlog::info("{}: {}: fetched '{}' ({} bytes) over {} streams in {:.3f} s ({:.1f} Mbit/s; {})", name_, what,
                   object_id, size, fetched->streams, fetched->stats.seconds, mbps, fetched->reason);
      return std::move(fetched->data);
    }
    spdlog::warn("{}: {}: multistream fetch of '{}' failed, pulling it on the bulk path: {}", name_, what, object_id,
                 fetched.status().message());
  }
  transport::BufferSink sink(size);
  transport::FetchOptions fetch;
  fetch.expected_checksum = checksum;
  fetch.sender = options_.worker_id;
  TRIB_RETURN_IF_ERROR(transport::FetchObject(work_->client(), object_id, &sink, fetch).WithContext(what));
  if (sink.data().size() != size)
    return Status::Corruption(peer_ + ": " + what + ": object '" + object_id + "' has " +
                              std::to_string(sink.data().size()) + " bytes, announced " + std::to_string(size));
  return sink.Release();
}

Result<transport::MultistreamFetched> ReplicaSync::FetchOverStreams(const std::string& job_id,
                                                                    const std::string& object_id, uint64_t size,
                                                                    const std::string& checksum) {
  TRIB_ASSIGN_OR_RETURN(std::string host, transport::EndpointHost(options_.coordinator));
  transport::MultistreamFetchOptions fetch;
  fetch.host = host;
  fetch.peer = peer_;
  fetch.sender = options_.worker_id;
  fetch.worker_id = options_.worker_id;
  fetch.job_id = job_id;
  fetch.expected_size = size;
  fetch.expected_checksum = checksum;
  bool asked = false;  // a coordinator that never answers (older ones drop the request) is asked once
  Status refused;
  auto request = [&](const Envelope& envelope) -> Result<Message> {
    Result<Message> reply = work_->Request(envelope, "MultistreamRequest for '" + object_id + "'",
                                           [&] { return std::exchange(asked, true); });
    if (!reply.ok()) refused = reply.status();
    return reply;
  };
  Result<transport::MultistreamFetched> fetched = transport::FetchMultistream(request, object_id, fetch);
  // Off on the coordinator, not a request it knows, or no answer at all: stop asking. Other refusals (busy,
  // below its threshold, no free port) are for this object only.
  const bool off = refused.code() == StatusCode::kInvalidArgument ||
                   refused.message().find("transfers are off") != std::string::npos ||
                   refused.message().find("no longer needed") != std::string::npos;
  if (off) {
    multistream_off_ = true;
    spdlog::info("{}: the coordinator does not offer multistream transfers ({}); fetching on the bulk path only", name_,
                 refused.message());
  }
  return fetched;
}

}  // namespace tributary
