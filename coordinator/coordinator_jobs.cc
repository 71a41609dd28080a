// The coordinator daemon's jobs: loading and resuming them, planning and closing rounds, uploads and
// catch-up requests from workers (see coordinator.h and docs/protocol.md).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>

#include "coordinator/coordinator_internal.h"

namespace tributary {

namespace fs = std::filesystem;
using transport::Envelope;
using transport::Incoming;

namespace {

constexpr uint64_t kCatchUpReplyBytes = uint64_t{32} << 20;
constexpr int64_t kReplanIntervalMs = 1000;

std::string FormatLoss(double loss) {
  if (std::isnan(loss)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", loss);
  return buf;
}

}  // namespace

JobEntry* Coordinator::Impl::FindJob(const std::string& job_id) {
  auto it = jobs.find(job_id);
  return it == jobs.end() ? nullptr : it->second.get();
}

void Coordinator::Impl::LogJob(JobEntry* job, const std::string& line, bool warn) {
  if (job->log) job->log->Append(line);
  if (warn) {
    spdlog::warn("job {}: {}", job->job_id, line);
  } else {
    spdlog::info("job {}: {}", job->job_id, line);
  }
}

Status Coordinator::Impl::LoadJobs() {
  TRIB_ASSIGN_OR_RETURN(std::vector<checkpoint::JobRecord> records, store->ListJobs());
  for (checkpoint::JobRecord& record : records) {
    auto job = std::make_unique<JobEntry>();
    job->job_id = record.job_id;
    job->record = record;
    auto log = JobLog::Open((fs::path(options.data_dir) / "logs" / (record.job_id + ".log")).string());
    if (log.ok()) job->log = std::move(*log);
    auto spec = ParseJobSpec(record.spec_yaml, "job '" + record.job_id + "' stored spec");
    if (spec.ok()) job->spec = *spec;
    // Round summaries from the log of committed rounds.
    if (record.current_round > 0) {
      TRIB_ASSIGN_OR_RETURN(std::vector<checkpoint::RoundRecord> rounds,
                            store->ListRounds(record.job_id, 1, record.current_round));
      for (const checkpoint::RoundRecord& r : rounds) {
        v1::RoundSummary summary;
        summary.set_round(r.round);
        summary.set_participants(static_cast<uint32_t>(r.participants.size()));
        auto updates = store->ListUpdates(record.job_id, r.round);
        double loss_sum = 0;
        if (updates.ok() && !updates->empty()) {
          for (const auto& u : *updates) loss_sum += u.train_loss;
          summary.set_train_loss(loss_sum / static_cast<double>(updates->size()));
        } else {
          summary.set_train_loss(std::numeric_limits<double>::quiet_NaN());
        }
        summary.set_heldout_loss(r.metrics.heldout_loss);
        summary.set_bytes_up(r.metrics.bytes_up);
        summary.set_bytes_down(r.metrics.bytes_down);
        summary.set_committed_unix_ms(r.committed_unix_ms);
        summary.set_weights_hash(HashHex(r.weights_hash));
        job->weights_hash = summary.weights_hash();
        job->rounds.push_back(std::move(summary));
      }
    }
    auto initial = store->GetSnapshotInfo(record.job_id, 0);
    if (initial.ok()) job->dense_state_bytes = static_cast<uint64_t>(initial->total_elems) * sizeof(float);
    JobEntry* raw = job.get();
    jobs[record.job_id] = std::move(job);
    if (record.state != checkpoint::JobState::kRunning && record.state != checkpoint::JobState::kPending) continue;
    if (!spec.ok()) {
      FailJob(raw, spec.status());
      continue;
    }
    Status started = StartJob(raw, /*resume=*/true);
    if (!started.ok()) {
      FailJob(raw, started.WithContext("resuming after a restart"));
      continue;
    }
    LogJob(raw, "resumed after a coordinator restart at committed round " +
                    std::to_string(raw->driver->last_committed_round()) + " with " +
                    std::to_string(raw->driver->reported().size()) + " accepted upload(s) of the open round");
  }
  return Status::OK();
}

Status Coordinator::Impl::StartJob(JobEntry* job, bool resume) {
  TRIB_ASSIGN_OR_RETURN(job->model, JobModel::Load(job->spec));
  if (!job->spec.eval_dataset.empty()) {
    auto it = options.eval_data.find(job->spec.eval_dataset);
    if (it == options.eval_data.end())
      return Status::InvalidArgument("field 'eval.dataset': '" + job->spec.eval_dataset +
                                     "' is not a held-out dataset of this coordinator (coordinator.eval_data)");
    TRIB_RETURN_IF_ERROR(job->model->LoadEvalRows(it->second).WithContext("field 'eval.dataset'"));
  }
  if (resume) {
    TRIB_ASSIGN_OR_RETURN(job->driver, RoundDriver::Resume(store.get(), job->job_id, job->spec));
  } else {
    TRIB_ASSIGN_OR_RETURN(
        job->driver, RoundDriver::Create(store.get(), job->job_id, job->spec, job->model->initial_state(), UnixMillis(),
                                         job->record.submit_token));
    TRIB_ASSIGN_OR_RETURN(job->record, store->GetJob(job->job_id));
  }
  job->driver->SetMinWorkerMemory(job->model->MinWorkerMemoryBytes());
  if (job->model->has_eval_rows()) {
    JobModel* model = job->model.get();
    job->driver->SetEvaluator([model](const Arena& state) { return model->Evaluate(state); });
  }
  job->weights_hash = HashHex(job->driver->global_hash());
  job->dense_state_bytes = static_cast<uint64_t>(job->model->initial_state().size()) * sizeof(float);
  return Status::OK();
}

void Coordinator::Impl::FailJob(JobEntry* job, const Status& status) {
  LogJob(job, "job failed: " + status.ToString(), /*warn=*/true);
  const int64_t now = UnixMillis();
  Status updated = store->UpdateJobState(job->job_id, checkpoint::JobState::kFailed, status.ToString(), now);
  if (!updated.ok()) spdlog::error("job {}: recording the failure: {}", job->job_id, updated.ToString());
  auto record = store->GetJob(job->job_id);
  if (record.ok()) job->record = *record;
  job->record.state = checkpoint::JobState::kFailed;
  job->record.failure_reason = status.ToString();
  job->driver.reset();
  job->model.reset();
  PublishView();
}

void Coordinator::Impl::TickJobs(int64_t now_ms) {
  for (auto& [id, job] : jobs) {
    if (job->driver) TickJob(job.get(), now_ms);
  }
}

void Coordinator::Impl::SendRoundStart(JobEntry* job, const WorkerEntry& worker) {
  const RoundStart& round = job->driver->current();
  Envelope env = transport::NewEnvelope("coordinator");
  v1::RoundStart* start = env.mutable_round_start();
  start->set_job_id(job->job_id);
  start->set_round(round.round);
  start->set_mode(job->spec.mode);
  start->set_server_lr(job->spec.server_lr);
  start->set_deadline_unix_ms(round.deadline_ms);
  start->set_committed_round(round.round - 1);
  start->set_seed(job->spec.seed);
  start->set_local_steps(static_cast<uint32_t>(job->spec.local_steps));
  start->set_num_coefficients(job->driver->method().CoefficientsPerBlock());
  start->set_weights_hash(job->weights_hash);
  start->set_job_spec_yaml(job->record.spec_yaml);
  Status sent = server->Send(worker.routing_id, env);
  if (!sent.ok()) {
    spdlog::debug("job {}: RoundStart to '{}': {}", job->job_id, worker.worker_id, sent.ToString());
    return;
  }
  job->round_start_sent[worker.worker_id] = worker.routing_id;
}

void Coordinator::Impl::TickJob(JobEntry* job, int64_t now_ms) {
  RoundDriver& driver = *job->driver;
  if (!driver.round_open()) {
    if (now_ms < started_ms + options.restart_grace_ms || now_ms < job->next_plan_ms) return;
    auto start = driver.StartRound(AliveInventory(), now_ms);
    if (!start.ok()) {
      job->next_plan_ms = now_ms + kReplanIntervalMs;
      if (start.status().message() != job->last_plan_error) {
        job->last_plan_error = start.status().message();
        LogJob(job, "waiting for workers: " + start.status().message(), /*warn=*/true);
      }
      return;
    }
    job->last_plan_error.clear();
    job->round_start_sent.clear();
    job->round_opened_ms = now_ms;
    job->slowest_train_seconds = 0;
    std::string names;
    for (const std::string& p : start->participants) names += (names.empty() ? "" : ", ") + p;
    LogJob(job, "round " + std::to_string(start->round) + " opened: " + std::to_string(start->participants.size()) +
                    " participant(s) [" + names + "], deadline in " +
                    std::to_string((start->deadline_ms - now_ms + 500) / 1000) + " s");
    PublishView();
  }
  // (Re)send RoundStart to participants that have not reported and have not got it on their current
  // connection (a worker that re-registered after a restart has a new routing id).
  const std::vector<std::string> reported = driver.reported();
  for (const std::string& p : driver.current().participants) {
    if (std::binary_search(reported.begin(), reported.end(), p)) continue;
    auto w = workers.find(p);
    if (w == workers.end() || !w->second.inventory.alive) continue;
    auto sent = job->round_start_sent.find(p);
    if (sent != job->round_start_sent.end() && sent->second == w->second.routing_id) continue;
    SendRoundStart(job, w->second);
  }
  switch (driver.ReadyToClose(now_ms)) {
    case RoundCloseState::kOpen: return;
    case RoundCloseState::kComplete:
    case RoundCloseState::kQuorumReached: return CloseRound(job, now_ms);
    case RoundCloseState::kQuorumMissed:
      LogJob(job,
             "round " + std::to_string(driver.current().round) + ": deadline passed with " +
                 std::to_string(reported.size()) + " of " + std::to_string(driver.current().participants.size()) +
                 " uploads, below the quorum; re-planning the round",
             /*warn=*/true);
      driver.AbandonRound();
      job->next_plan_ms = now_ms;
      return;
  }
}

void Coordinator::Impl::CloseRound(JobEntry* job, int64_t now_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t selected = job->driver->current().participants.size();
  auto committed = job->driver->CloseRound(now_ms);
  if (!committed.ok()) return FailJob(job, committed.status());
  const double close_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const CommittedRound& c = *committed;
  metrics.OnRoundCommitted(job->job_id, static_cast<double>(now_ms - job->round_opened_ms) / 1000.0, close_s,
                           c.bytes_up, c.bytes_down);
  job->weights_hash = HashHex(c.weights_hash);
  v1::RoundSummary summary;
  summary.set_round(c.round);
  summary.set_participants(static_cast<uint32_t>(c.participants.size()));
  summary.set_train_loss(c.mean_train_loss);
  summary.set_heldout_loss(c.heldout_loss);
  summary.set_bytes_up(c.bytes_up);
  summary.set_bytes_down(c.bytes_down);
  summary.set_committed_unix_ms(UnixMillis());  // after aggregation, commit and apply
  summary.set_weights_hash(job->weights_hash);
  summary.set_opened_unix_ms(job->round_opened_ms);
  summary.set_slowest_train_seconds(job->slowest_train_seconds);
  job->rounds.push_back(summary);

  // Durable: broadcast to every alive worker (participants apply it; others keep warm replicas).
  Envelope env = transport::NewEnvelope("coordinator");
  v1::RoundCommitted* rc = env.mutable_round_committed();
  rc->set_job_id(job->job_id);
  rc->set_round(c.round);
  rc->set_participants(static_cast<uint32_t>(c.participants.size()));
  rc->set_mean_loss(c.mean_train_loss);
  rc->set_aggregate_size(c.aggregate.size());
  rc->set_aggregate_checksum(transport::ObjectChecksum(c.aggregate.data(), c.aggregate.size()));
  bool aggregate_inline = c.aggregate.size() <= options.inline_payload_bytes;
  if (!aggregate_inline) {
    std::string object_id;
    Status served =
        ServeAggregate(job->job_id, c.round,
                       std::string(reinterpret_cast<const char*>(c.aggregate.data()), c.aggregate.size()), &object_id);
    if (served.ok()) {
      rc->set_aggregate_object_id(object_id);
    } else {
      // Workers then get the round by catch-up (which tries the bulk object again).
      spdlog::warn("job {}: round {}: serving the aggregate as a bulk object: {}", job->job_id, c.round,
                   served.ToString());
      aggregate_inline = true;
    }
  }
  if (aggregate_inline) rc->set_aggregate(c.aggregate.data(), c.aggregate.size());
  rc->set_weights_hash(job->weights_hash);
  rc->set_job_finished(c.job_finished);
  for (const auto& [id, w] : workers) {
    if (!w.inventory.alive) continue;
    Status sent = server->Send(w.routing_id, env);
    if (!sent.ok()) spdlog::debug("job {}: RoundCommitted to '{}': {}", job->job_id, id, sent.ToString());
  }
  const uint64_t per_client = c.participants.empty() ? 0 : c.bytes_up / c.participants.size();
  LogJob(job, "round " + std::to_string(c.round) + " committed: " + std::to_string(c.participants.size()) + " of " +
                  std::to_string(selected) + " participant(s), train loss " + FormatLoss(c.mean_train_loss) +
                  ", held-out loss " + FormatLoss(c.heldout_loss) + ", up " + std::to_string(c.bytes_up) + " B (" +
                  std::to_string(per_client) + " B per client), down " + std::to_string(c.bytes_down) +
                  " B, aggregation+commit " + std::to_string(static_cast<int64_t>(close_s * 1000)) +
                  " ms, weights hash " + job->weights_hash +
                  (job->bytes_pulled > 0 ? ", " + std::to_string(job->bytes_pulled) + " B pulled as bulk so far"
                                         : std::string()) +
                  (c.aggregate.size() > options.inline_payload_bytes ? ", aggregate served as a bulk object" : ""));
  auto record = store->GetJob(job->job_id);
  if (record.ok()) job->record = *record;
  if (c.job_finished) {
    LogJob(job, std::string("job finished: ") + checkpoint::JobStateName(job->record.state) + " after " +
                    std::to_string(c.round) + " round(s), final weights hash " + job->weights_hash);
    job->driver.reset();
    job->model.reset();
  }
  PublishView();
}

void Coordinator::Impl::SendUploadAck(const UploadReplyTo& to, Envelope reply) {
  reply.set_in_reply_to(to.message_id);
  Status sent = server->Send(to.routing_id, reply);
  if (!sent.ok()) spdlog::warn("coordinator: UploadAck to {}: {}", to.peer, sent.ToString());
}

void Coordinator::Impl::RefuseUpload(const UploadReplyTo& to, const v1::UploadUpdate& u, const std::string& reason,
                                     const char* metric, bool retry) {
  if (!retry) {
    spdlog::warn("coordinator: upload refused: job '{}' round {} from worker '{}' ({}): {}", u.job_id(), u.round(),
                 u.worker_id(), to.peer, reason);
    metrics.OnUploadRejected(metric);
  }
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::UploadAck* ack = reply.mutable_upload_ack();
  ack->set_job_id(u.job_id());
  ack->set_round(u.round());
  ack->set_accepted(false);
  ack->set_retry(retry);
  ack->set_reason(reason);
  SendUploadAck(to, std::move(reply));
}

void Coordinator::Impl::HandleUpload(const Incoming& in) {
  const v1::UploadUpdate& u = in.message.envelope.upload_update();
  const UploadReplyTo to{in.peer.routing_id, in.message.envelope.message_id(), in.peer.Describe()};
  auto worker = AuthorizedWorker(u.worker_id(), in.peer);
  if (!worker.ok()) {
    const bool retry = worker.status().code() == StatusCode::kNotFound;  // not re-registered yet
    return RefuseUpload(to, u, worker.status().message(), "unauthorized", retry);
  }
  JobEntry* job = FindJob(u.job_id());
  if (job == nullptr) return RefuseUpload(to, u, "unknown job '" + u.job_id() + "'", "unknown_job", false);
  if (!u.payload_object_id().empty()) return StartPull(in, job);
  if (!u.payload_checksum().empty() &&
      u.payload_checksum() != transport::ObjectChecksum(u.payload().data(), u.payload().size()))
    return RefuseUpload(to, u, "payload checksum mismatch", "checksum", false);
  AcceptUploadPayload(to, u, u.payload(), /*pulled=*/false);
}

void Coordinator::Impl::AcceptUploadPayload(const UploadReplyTo& to, const v1::UploadUpdate& u,
                                            const std::string& payload, bool pulled) {
  JobEntry* job = FindJob(u.job_id());
  if (job == nullptr) return RefuseUpload(to, u, "unknown job '" + u.job_id() + "'", "unknown_job", false);
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::UploadAck* ack = reply.mutable_upload_ack();
  ack->set_job_id(u.job_id());
  ack->set_round(u.round());
  if (!job->driver) {
    ack->set_late(true);
    ack->set_accepted(false);
    ack->set_reason(std::string("job is ") + checkpoint::JobStateName(job->record.state));
    spdlog::warn("coordinator: upload refused: job '{}' round {} from worker '{}' ({}): {}", u.job_id(), u.round(),
                 u.worker_id(), to.peer, ack->reason());
    metrics.OnUploadRejected("late");
    return SendUploadAck(to, std::move(reply));
  }
  RoundDriver& driver = *job->driver;
  if (!driver.round_open() && u.round() == driver.last_committed_round() + 1)
    return RefuseUpload(to, u, "round " + std::to_string(u.round()) + " is not open yet", "not_open", true);
  Upload upload;
  upload.job_id = u.job_id();
  upload.worker_id = u.worker_id();
  upload.round = static_cast<uint32_t>(u.round());
  upload.payload.assign(payload.begin(), payload.end());
  upload.num_samples = u.num_samples();
  upload.train_loss = u.loss();
  upload.received_ms = UnixMillis();
  auto outcome = driver.AcceptUpload(upload);
  if (!outcome.ok()) return RefuseUpload(to, u, outcome.status().message(), "invalid", false);
  ack->set_accepted(*outcome == UploadOutcome::kAccepted);
  ack->set_duplicate(*outcome == UploadOutcome::kDuplicate);
  ack->set_late(*outcome == UploadOutcome::kLate);
  if (*outcome == UploadOutcome::kAccepted) {
    job->slowest_train_seconds = std::max(job->slowest_train_seconds, u.train_seconds());
    if (pulled) job->bytes_pulled += payload.size();
    char loss[32];
    std::snprintf(loss, sizeof(loss), "%.4f", u.loss());
    LogJob(job, "round " + std::to_string(u.round()) + ": upload from '" + u.worker_id() + "' accepted (" +
                    std::to_string(u.num_samples()) + " samples, train loss " + loss + ", " +
                    std::to_string(payload.size()) + " B" + (pulled ? " pulled as a bulk object" : "") + ")");
  } else {
    ack->set_reason(UploadOutcomeName(*outcome));
    metrics.OnUploadRejected(UploadOutcomeName(*outcome));
  }
  SendUploadAck(to, std::move(reply));
  // The last upload closes the round now rather than at the next tick.
  if (*outcome == UploadOutcome::kAccepted &&
      job->driver->ReadyToClose(upload.received_ms) == RoundCloseState::kComplete)
    CloseRound(job, upload.received_ms);
}

void Coordinator::Impl::StartPull(const Incoming& in, JobEntry* job) {
  const v1::UploadUpdate& u = in.message.envelope.upload_update();
  const UploadReplyTo to{in.peer.routing_id, in.message.envelope.message_id(), in.peer.Describe()};
  // Cheap checks first: nothing is pulled for an upload that would be refused anyway.
  if (!job->driver) return AcceptUploadPayload(to, u, "", /*pulled=*/true);  // answers "job is FINISHED..."
  RoundDriver& driver = *job->driver;
  if (u.round() >= 1 && u.round() <= driver.last_committed_round()) {
    Envelope reply = transport::NewEnvelope("coordinator");
    v1::UploadAck* ack = reply.mutable_upload_ack();
    ack->set_job_id(u.job_id());
    ack->set_round(u.round());
    ack->set_late(true);
    ack->set_reason(UploadOutcomeName(UploadOutcome::kLate));
    metrics.OnUploadRejected(UploadOutcomeName(UploadOutcome::kLate));
    return SendUploadAck(to, std::move(reply));
  }
  if (!driver.round_open() && u.round() == driver.last_committed_round() + 1)
    return RefuseUpload(to, u, "round " + std::to_string(u.round()) + " is not open yet", "not_open", true);
  const std::string context = "round " + std::to_string(u.round()) + ": worker '" + u.worker_id() + "'";
  if (!driver.round_open() || u.round() != driver.current().round)
    return RefuseUpload(to, u, context + ": wrong round", "invalid", false);
  const std::vector<std::string>& participants = driver.current().participants;
  if (std::find(participants.begin(), participants.end(), u.worker_id()) == participants.end())
    return RefuseUpload(to, u, context + ": not a participant of this round", "invalid", false);
  const std::vector<std::string> reported = driver.reported();
  if (std::find(reported.begin(), reported.end(), u.worker_id()) != reported.end()) {
    Envelope reply = transport::NewEnvelope("coordinator");
    v1::UploadAck* ack = reply.mutable_upload_ack();
    ack->set_job_id(u.job_id());
    ack->set_round(u.round());
    ack->set_duplicate(true);
    ack->set_reason(UploadOutcomeName(UploadOutcome::kDuplicate));
    return SendUploadAck(to, std::move(reply));
  }
  if (u.payload_size() != job->dense_state_bytes)
    return RefuseUpload(to, u,
                        context + ": bulk payload of " + std::to_string(u.payload_size()) + " bytes, expected " +
                            std::to_string(job->dense_state_bytes) + " (4 bytes per trainable parameter)",
                        "invalid", false);
  if (u.payload_checksum().size() != transport::kObjectChecksumBytes)
    return RefuseUpload(to, u, context + ": bulk payload without a 32-byte payload_checksum", "checksum", false);

  const std::string key = u.worker_id() + "/" + u.payload_object_id();
  auto it = pulls.find(key);
  if (it != pulls.end() && it->second.upload.round() == u.round() &&
      it->second.upload.payload_checksum() == u.payload_checksum()) {
    // The worker sent the upload again (its request timed out): answer this request once done.
    it->second.reply_to = to;
    it->second.receiver->ResetInFlight();
    it->second.last_progress_ms = UnixMillis();
    return RequestChunks(it->second);
  }
  PendingPull pull;
  pull.reply_to = to;
  pull.upload = u;
  pull.sink = std::make_unique<transport::BufferSink>(u.payload_size());
  pull.receiver = std::make_unique<transport::BulkReceiver>(u.payload_object_id(), pull.sink.get(), 8,
                                                            "worker '" + u.worker_id() + "' (" + to.peer + ")");
  pull.receiver->ExpectObjectChecksum(u.payload_checksum());
  pull.last_progress_ms = UnixMillis();
  spdlog::info("job {}: round {}: pulling the {} B upload of '{}' as bulk object '{}'", u.job_id(), u.round(),
               u.payload_size(), u.worker_id(), u.payload_object_id());
  PendingPull& stored = pulls[key] = std::move(pull);
  RequestChunks(stored);
}

void Coordinator::Impl::RequestChunks(PendingPull& pull) {
  while (std::optional<v1::BulkRequest> request = pull.receiver->NextRequest()) {
    Envelope env = transport::NewEnvelope("coordinator");
    *env.mutable_bulk_request() = *request;
    Status sent = server->Send(pull.reply_to.routing_id, env);
    if (!sent.ok()) {
      spdlog::debug("coordinator: BulkRequest to {}: {}", pull.reply_to.peer, sent.ToString());
      pull.receiver->ResetInFlight();
      return;
    }
  }
}

void Coordinator::Impl::HandleBulkChunk(const Incoming& in) {
  const v1::BulkChunkHeader& header = in.message.envelope.bulk_chunk_header();
  auto it = pulls.begin();
  for (; it != pulls.end(); ++it) {
    if (it->second.receiver->object_id() == header.object_id() && it->second.reply_to.routing_id == in.peer.routing_id)
      break;
  }
  if (it == pulls.end()) {
    spdlog::debug("coordinator: chunk of '{}' from {} matches no pull (already done?)", header.object_id(),
                  in.peer.Describe());
    return;
  }
  PendingPull& pull = it->second;
  if (in.message.bulk.size() != 1) {
    spdlog::warn("coordinator: chunk of '{}' from {} has {} data frames", header.object_id(), in.peer.Describe(),
                 in.message.bulk.size());
    return;
  }
  const uint64_t before = pull.receiver->next_chunk();
  Status written = pull.receiver->OnChunk(header, in.message.bulk[0]);
  if (!written.ok()) {
    const v1::UploadUpdate upload = pull.upload;
    const UploadReplyTo to = pull.reply_to;
    pulls.erase(it);
    spdlog::warn("coordinator: pulling upload '{}': {}; the worker is asked to send it again", header.object_id(),
                 written.ToString());
    return RefuseUpload(to, upload, "bulk payload: " + written.message(), "checksum", true);
  }
  if (pull.receiver->next_chunk() != before) pull.last_progress_ms = UnixMillis();
  if (!pull.receiver->complete()) return RequestChunks(pull);
  Status finished = pull.receiver->Finish();
  const v1::UploadUpdate upload = pull.upload;
  const UploadReplyTo to = pull.reply_to;
  const std::string payload = pull.sink->Release();
  pulls.erase(it);
  if (!finished.ok()) return RefuseUpload(to, upload, "bulk payload: " + finished.message(), "checksum", true);
  AcceptUploadPayload(to, upload, payload, /*pulled=*/true);
}

void Coordinator::Impl::TickPulls(int64_t now_ms) {
  constexpr int64_t kPullStallMs = 5000;
  constexpr int kMaxPullResets = 10;
  for (auto it = pulls.begin(); it != pulls.end();) {
    PendingPull& pull = it->second;
    if (now_ms - pull.last_progress_ms < kPullStallMs) {
      ++it;
      continue;
    }
    if (++pull.resets > kMaxPullResets) {
      const v1::UploadUpdate upload = pull.upload;
      const UploadReplyTo to = pull.reply_to;
      it = pulls.erase(it);
      spdlog::warn("coordinator: pulling upload '{}' from {}: no progress after {} re-requests; dropped",
                   upload.payload_object_id(), to.peer, kMaxPullResets);
      RefuseUpload(to, upload, "bulk payload: the pull stalled", "stalled", true);
      continue;
    }
    pull.last_progress_ms = now_ms;
    pull.receiver->ResetInFlight();
    RequestChunks(pull);
    ++it;
  }
}

Status Coordinator::Impl::ServeAggregate(const std::string& job_id, uint64_t round, const std::string& bytes,
                                         std::string* object_id) {
  *object_id = "aggregate/" + job_id + "/" + std::to_string(round);
  if (!bulk.HasObject(*object_id))
    TRIB_RETURN_IF_ERROR(bulk.AddObject(
        *object_id, std::make_shared<transport::MemorySource>(std::make_shared<const std::string>(bytes))));
  bulk_expiry_ms[*object_id] = UnixMillis() + 10 * 60 * 1000;
  return Status::OK();
}

void Coordinator::Impl::HandleCatchUp(const Incoming& in) {
  const v1::CatchUpRequest& req = in.message.envelope.catch_up_request();
  auto worker = AuthorizedWorker(req.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());
  JobEntry* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("unknown job '" + req.job_id() + "'"));
  const uint32_t last = job->record.current_round;
  const uint32_t to = (req.to_round() == 0 || req.to_round() > last) ? last : static_cast<uint32_t>(req.to_round());
  auto plan = PlanCatchUp(store.get(), job->job_id, job->spec.snapshot_every, static_cast<uint32_t>(req.from_round()),
                          to, kCatchUpReplyBytes);
  if (!plan.ok()) return ReplyError(in, plan.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::CatchUpReply* out = reply.mutable_catch_up_reply();
  out->set_job_id(job->job_id);
  out->set_spec_yaml(job->record.spec_yaml);
  out->set_state(checkpoint::JobStateName(job->record.state));
  out->set_last_committed_round(last);
  if (plan->use_snapshot) {
    const std::string object_id = "snapshot/" + job->job_id + "/" + std::to_string(plan->snapshot_round);
    auto info = store->GetSnapshotInfo(job->job_id, plan->snapshot_round);
    if (!info.ok()) return ReplyError(in, info.status());
    if (!bulk.HasObject(object_id)) {
      auto table = store->SnapshotTable(job->job_id, plan->snapshot_round);
      if (!table.ok()) return ReplyError(in, table.status());
      auto bytes = std::make_shared<std::string>(static_cast<size_t>((*table)->total_elems()) * sizeof(float), '\0');
      Status loaded =
          store->LoadSnapshot(job->job_id, plan->snapshot_round, **table, reinterpret_cast<float*>(bytes->data()));
      if (!loaded.ok()) return ReplyError(in, loaded);
      Status added = bulk.AddObject(object_id, std::make_shared<transport::MemorySource>(std::move(bytes)));
      if (!added.ok()) return ReplyError(in, added);
    }
    bulk_expiry_ms[object_id] = UnixMillis() + 10 * 60 * 1000;
    out->set_snapshot_object_id(object_id);
    out->set_snapshot_round(plan->snapshot_round);
    out->set_snapshot_size(static_cast<uint64_t>(info->total_elems) * sizeof(float));
    out->set_snapshot_checksum(bulk.ObjectChecksumOf(object_id));
    out->set_snapshot_weights_hash(HashHex(info->weights_hash));
  }
  for (const checkpoint::RoundRecord& r : plan->rounds) {
    v1::CommittedAggregate* agg = out->add_rounds();
    agg->set_round(r.round);
    if (r.aggregate.size() > options.inline_payload_bytes) {
      std::string object_id;
      Status served = ServeAggregate(job->job_id, r.round, r.aggregate, &object_id);
      if (!served.ok()) return ReplyError(in, served);
      agg->set_aggregate_object_id(object_id);
      agg->set_aggregate_size(r.aggregate.size());
      agg->set_aggregate_checksum(bulk.ObjectChecksumOf(object_id));
    } else {
      agg->set_aggregate(r.aggregate);
    }
    agg->set_weights_hash(HashHex(r.weights_hash));
  }
  spdlog::info("job {}: catch-up for worker '{}' from round {} to {}: {}{} round(s)", job->job_id, req.worker_id(),
               req.from_round(), to,
               plan->use_snapshot ? "snapshot of round " + std::to_string(plan->snapshot_round) + " + " : "",
               plan->rounds.size());
  Reply(in, std::move(reply));
}

v1::JobStatus Coordinator::Impl::StatusOf(const JobEntry& job) const {
  v1::JobStatus st;
  st.set_job_id(job.job_id);
  st.set_name(job.spec.name);
  st.set_mode(job.spec.mode);
  st.set_state(checkpoint::JobStateName(job.record.state));
  st.set_round(job.record.current_round);
  st.set_total_rounds(static_cast<uint64_t>(job.spec.rounds));
  st.set_heldout_loss(std::numeric_limits<double>::quiet_NaN());
  if (!job.rounds.empty()) {
    const v1::RoundSummary& last = job.rounds.back();
    st.set_participants(last.participants());
    st.set_loss(last.train_loss());
    st.set_last_round_bytes_up(last.bytes_up());
    st.set_last_round_bytes_down(last.bytes_down());
    for (auto it = job.rounds.rbegin(); it != job.rounds.rend(); ++it) {
      if (!std::isnan(it->heldout_loss())) {
        st.set_heldout_loss(it->heldout_loss());
        break;
      }
    }
  } else {
    st.set_loss(std::numeric_limits<double>::quiet_NaN());
  }
  uint64_t bytes_up = 0, bytes_down = 0;
  for (const v1::RoundSummary& r : job.rounds) {
    bytes_up += r.bytes_up();
    bytes_down += r.bytes_down();
  }
  st.set_bytes_up(bytes_up);
  st.set_bytes_down(bytes_down);
  st.set_created_unix_ms(job.record.created_unix_ms);
  st.set_updated_unix_ms(job.record.updated_unix_ms);
  st.set_error(job.record.failure_reason);
  st.set_dense_state_bytes(job.dense_state_bytes);
  st.set_submit_token(job.record.submit_token);
  return st;
}

}  // namespace tributary
