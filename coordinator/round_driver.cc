#include "coordinator/round_driver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <spdlog/spdlog.h>

#include "coordinator/cluster_batches.h"
#include "federation/outer_codec.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

using checkpoint::RoundParticipant;
using checkpoint::RoundRecord;
using checkpoint::UpdateRecord;

Result<DeadlineOptions> DeadlineOptionsFromSpec(const JobSpec& spec) {
  DeadlineOptions options;
  options.floor_s = spec.deadline_floor_s;
  options.ceiling_s = spec.deadline_ceiling_s;
  options.initial_s = std::clamp(options.initial_s, options.floor_s, std::max(options.floor_s, options.ceiling_s));
  TRIB_RETURN_IF_ERROR(ValidateDeadlineOptions(options));
  return options;
}

// Checks what the driver relies on before it builds anything from the spec.
Status ValidateSpecForDriver(const JobSpec& spec) {
  if (spec.rounds < 1) return Status::InvalidArgument("field 'federation.rounds': must be >= 1");
  if (spec.snapshot_every < 1) return Status::InvalidArgument("field 'checkpoint.snapshot_every': must be >= 1");
  if (!(spec.quorum > 0 && spec.quorum <= 1))
    return Status::InvalidArgument("field 'federation.quorum': must be in (0, 1]");
  return Status::OK();
}

}  // namespace

const char* UploadOutcomeName(UploadOutcome outcome) {
  switch (outcome) {
    case UploadOutcome::kAccepted: return "accepted";
    case UploadOutcome::kDuplicate: return "duplicate";
    case UploadOutcome::kLate: return "late";
  }
  return "unknown";
}

RoundDriver::RoundDriver(checkpoint::CheckpointStore* store, std::string job_id, JobSpec spec)
    : store_(store), job_id_(std::move(job_id)), spec_(std::move(spec)) {}

std::string RoundDriver::Context(const std::string& worker_id, uint32_t round) const {
  return "job '" + job_id_ + "': round " + std::to_string(round) + ": worker '" + worker_id + "'";
}

uint64_t RoundDriver::global_hash() const {
  return WeightsHash(*global_);
}

std::vector<std::string> RoundDriver::reported() const {
  std::vector<std::string> out;
  for (const auto& [worker, ms] : reported_) out.push_back(worker);
  return out;
}

Result<std::unique_ptr<RoundDriver>> RoundDriver::Create(checkpoint::CheckpointStore* store, const std::string& job_id,
                                                         const JobSpec& spec, const Arena& initial, int64_t now_ms,
                                                         const std::string& submit_token) {
  TRIB_RETURN_IF_ERROR(ValidateSpecForDriver(spec));
  TRIB_ASSIGN_OR_RETURN(DeadlineOptions deadline, DeadlineOptionsFromSpec(spec));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, CreateScheduler("random"));
  std::unique_ptr<RoundDriver> driver(new RoundDriver(store, job_id, spec));
  driver->scheduler_ = std::move(scheduler);
  driver->deadline_ = RoundDeadline(deadline);
  driver->global_ = std::make_shared<Arena>(initial.table_ptr());
  driver->global_->CopyFrom(initial);
  TRIB_ASSIGN_OR_RETURN(driver->method_, CreateMethod(spec, initial.table_ptr()));
  TRIB_ASSIGN_OR_RETURN(driver->aggregation_, Aggregation::Create(spec.aggregation));

  checkpoint::JobRecord job;
  job.job_id = job_id;
  job.spec_yaml = spec.source_text;
  job.submit_token = submit_token;
  job.state = checkpoint::JobState::kRunning;
  job.created_unix_ms = now_ms;
  job.updated_unix_ms = now_ms;
  TRIB_RETURN_IF_ERROR(
      store->CreateJobWithSnapshot(job, initial.data(), initial.size(), initial.table(), WeightsHash(initial), now_ms));
  return driver;
}

Result<std::unique_ptr<RoundDriver>> RoundDriver::Resume(checkpoint::CheckpointStore* store, const std::string& job_id,
                                                         const JobSpec& spec) {
  TRIB_RETURN_IF_ERROR(ValidateSpecForDriver(spec));
  TRIB_ASSIGN_OR_RETURN(DeadlineOptions deadline, DeadlineOptionsFromSpec(spec));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, CreateScheduler("random"));
  TRIB_ASSIGN_OR_RETURN(checkpoint::JobRecord job, store->GetJob(job_id));
  std::unique_ptr<RoundDriver> driver(new RoundDriver(store, job_id, spec));
  driver->scheduler_ = std::move(scheduler);
  driver->deadline_ = RoundDeadline(deadline);
  driver->last_committed_ = job.current_round;

  // Latest snapshot, then replay every committed round after it, checking each logged hash.
  // The method that replayed goes on: its Apply state (cluster's outer momentum) is at the last round.
  driver->global_ = std::make_shared<Arena>();
  TRIB_RETURN_IF_ERROR(
      RebuildTrainableState(store, job_id, spec, driver->last_committed_, driver->global_.get(), &driver->method_));
  TRIB_ASSIGN_OR_RETURN(driver->aggregation_, Aggregation::Create(spec.aggregation));
  // Tasklet durations are not stored as such; the recent rounds' upload times relative to the previous
  // commit (when the next round opens, within milliseconds) rebuild the deadline history, so a restarted
  // coordinator does not fall back to the initial deadline.
  const uint32_t window = static_cast<uint32_t>(std::max<int64_t>(1, driver->deadline_.options().window / 4));
  const uint32_t first = driver->last_committed_ > window ? driver->last_committed_ - window + 1 : 1;
  int64_t previous_commit_ms = job.created_unix_ms;
  if (first > 1) {
    TRIB_ASSIGN_OR_RETURN(checkpoint::RoundRecord before, store->GetRound(job_id, first - 1));
    previous_commit_ms = before.committed_unix_ms;
  }
  for (uint32_t r = first; r <= driver->last_committed_; ++r) {
    TRIB_ASSIGN_OR_RETURN(std::vector<UpdateRecord> logged, store->ListUpdates(job_id, r));
    for (const UpdateRecord& u : logged)
      driver->deadline_.Observe(static_cast<double>(u.received_unix_ms - previous_commit_ms) / 1000.0);
    TRIB_ASSIGN_OR_RETURN(checkpoint::RoundRecord record, store->GetRound(job_id, r));
    previous_commit_ms = record.committed_unix_ms;
  }
  // A crash between a commit and its snapshot: write the snapshot now.
  Status snapshot = driver->TakeSnapshotIfDue(driver->last_committed_, *driver->global_, job.updated_unix_ms);
  if (snapshot.code() == StatusCode::kUnavailable)  // taken again at its round once the store is writable
    spdlog::warn("job {}: round {} snapshot not taken: {}", job_id, driver->last_committed_, snapshot.ToString());
  else
    TRIB_RETURN_IF_ERROR(snapshot);
  // Uploads already accepted for the open round count again (under secure aggregation the open round's
  // session is not stored: it starts again, and metadata records of a crashed commit are not uploads).
  if (spec.secure_aggregation.enabled) return driver;
  TRIB_ASSIGN_OR_RETURN(std::vector<UpdateRecord> updates, store->ListUpdates(job_id, driver->last_committed_ + 1));
  for (const UpdateRecord& update : updates) driver->reported_[update.worker_id] = update.received_unix_ms;
  return driver;
}

Status RoundDriver::TakeSnapshotIfDue(uint32_t round, const Arena& state, int64_t now_ms) const {
  if (round == 0 || round % static_cast<uint64_t>(spec_.snapshot_every) != 0) return Status::OK();
  if (ApplyKeepsState(spec_)) return Status::OK();  // replicas replay from round 0 (federation/method.h)
  auto existing = store_->GetSnapshotInfo(job_id_, round);
  if (existing.ok()) return Status::OK();
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  return store_->PutSnapshot(job_id_, round, state.data(), state.size(), state.table(), WeightsHash(state), now_ms);
}

Result<RoundStart> RoundDriver::StartRound(const std::vector<WorkerInventory>& inventory, int64_t now_ms) {
  if (finished())
    return Status::FailedPrecondition("job '" + job_id_ + "': all " + std::to_string(spec_.rounds) +
                                      " rounds are committed");
  if (round_open_)
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(current_.round) +
                                      " is already open");
  RoundRequest request;
  request.job_seed = spec_.seed;
  request.round = last_committed_ + 1;
  request.requirements.dataset = spec_.dataset;
  request.requirements.min_memory_bytes = min_worker_memory_;
  request.sampling.fraction = spec_.client_fraction;
  request.sampling.min_clients = spec_.min_clients;
  request.sampling.max_clients = spec_.max_clients;
  auto plan = scheduler_->PlanRound(inventory, request);
  if (!plan.ok()) return plan.status().WithContext("job '" + job_id_ + "'");  // the plan's message names the round
  current_ = RoundStart{};
  current_.round = last_committed_ + 1;
  current_.participants = plan->participants;
  current_.uploaders = plan->participants;
  current_.local_steps = spec_.local_steps;
  if (spec_.mode == "cluster") TRIB_RETURN_IF_ERROR(PlanIslands(inventory, now_ms));
  current_.started_ms = now_ms;
  current_.deadline_ms = now_ms + static_cast<int64_t>(std::llround(deadline_.DeadlineSeconds() * 1000.0));
  round_open_ = true;
  return current_;
}

Status RoundDriver::PlanIslands(const std::vector<WorkerInventory>& inventory, int64_t now_ms) {
  // Incarnations start from the clock so a restarted coordinator never reuses one a stale member holds.
  next_incarnation_ = std::max(next_incarnation_, static_cast<uint64_t>(now_ms));
  auto islands = PlanRoundIslands(spec_, inventory, measured_, current_.participants, next_incarnation_);
  if (!islands.ok())
    return islands.status().WithContext("job '" + job_id_ + "': round " + std::to_string(current_.round));
  next_incarnation_ += islands->size();
  current_.islands = std::move(*islands);
  PlanOpenRound(inventory);
  SetIslandRoles();
  return ChooseRoundOuter();
}

Status RoundDriver::ChooseRoundOuter() {
  const RoundOuter outer = tributary::ChooseRoundOuter(spec_, plan());
  current_.local_steps = outer.local_steps;
  current_.codec = outer.codec;
  current_.outer_reason = outer.reason;
  if (current_.codec.empty()) return Status::OK();
  // A re-opened round (restart, quorum missed) keeps the codec its logged uploads are in.
  if (!reported_.empty()) {
    TRIB_ASSIGN_OR_RETURN(std::vector<UpdateRecord> logged, store_->ListUpdates(job_id_, current_.round));
    for (const UpdateRecord& u : logged) {
      for (OuterCodec codec : AutoOuterCodecs()) {
        uint64_t bytes = 0;
        for (const TensorEntry& entry : global_->table().entries()) bytes += OuterCodecBytes(codec, entry.numel);
        if (bytes != u.payload.size() || OuterCodecName(codec) == current_.codec) continue;
        current_.codec = OuterCodecName(codec);
        current_.outer_reason += "; codec " + current_.codec + " kept: the round's logged uploads are in it";
      }
      break;
    }
  }
  return method_->SetRoundCodec(current_.round, current_.codec)
      .WithContext("job '" + job_id_ + "': round " + std::to_string(current_.round));
}

void RoundDriver::PlanOpenRound(const std::vector<WorkerInventory>& inventory) {
  plan_change_.clear();
  batch_reason_ = "every member trains train.batch_size: no plan";
  if (!plan_job_) {
    auto job = PlanJobForSpec(spec_, global_->table(), PlanChoices());
    if (!job.ok()) {
      plan_error_ = job.status().message();
      return;
    }
    plan_job_ = std::move(*job);
  }
  // The islands are the runtime's (membership and majority rules, cluster_round.h); the planner orders
  // their rings, picks their leaders and predicts the phases.
  PlanJob job = *plan_job_;
  job.islands.clear();
  std::set<std::string> members;
  for (const RoundIsland& island : current_.islands) {
    job.islands.push_back({island.name, island.members});
    members.insert(island.members.begin(), island.members.end());
  }
  // The islands train per inner step what their members would unplanned (train.batch_size each); the plan
  // shares it out by compute (coordinator/cluster_batches.h).
  job.total_tokens_per_step = job.tokens_per_step * static_cast<int64_t>(members.size());
  std::vector<PlanWorker> workers;
  for (const WorkerInventory& w : inventory) {
    if (members.count(w.worker_id) == 0) continue;
    auto rate = measured_.tokens_per_s.find(w.worker_id);
    workers.push_back({w, rate == measured_.tokens_per_s.end() ? 0 : rate->second});
  }
  Result<ClusterPlan> plan = tributary::PlanCluster(workers, measured_.links, job);
  if (!plan.ok()) {
    plan_error_ = plan.status().message();
    plan_.reset();
    return;
  }
  plan_error_.clear();
  if (!plan_) {
    plan_change_ = "first plan";
  } else {
    plan_change_ = DescribePlanChange(*plan_, *plan);
  }
  plan_ = std::move(*plan);
  plan_round_ = current_.round;
  for (RoundIsland& island : current_.islands) {
    for (const IslandPlan& planned : plan_->islands)
      if (planned.name == island.name) island.ring = planned.ring;
    OrderByRing(island.ring, &island.members);
  }
  batch_reason_ = ApplyPlanBatches(*plan_, spec_, &current_.islands);
}

void RoundDriver::SetIslandRoles() {
  current_.participants.clear();
  for (const RoundIsland& island : current_.islands)
    current_.participants.insert(current_.participants.end(), island.members.begin(), island.members.end());
  std::sort(current_.participants.begin(), current_.participants.end());
  current_.uploaders = IslandLeaders(current_.islands);
}

std::vector<IslandChange> RoundDriver::ReformIslands(const std::vector<WorkerInventory>& inventory) {
  if (!round_open_ || closing_ || current_.islands.empty()) return {};
  std::set<std::string> alive;
  for (const WorkerInventory& w : inventory)
    if (w.alive) alive.insert(w.worker_id);
  std::vector<IslandChange> changes =
      tributary::ReformIslands(spec_, inventory, measured_, alive, reported(), &next_incarnation_, &current_.islands);
  if (!changes.empty()) SetIslandRoles();
  return changes;
}

Status RoundDriver::ValidatePayload(const Upload& upload) const {
  Status valid = method_->ValidatePayload(upload.payload, upload.round);
  if (!valid.ok()) return Status::InvalidArgument(Context(upload.worker_id, upload.round) + ": " + valid.message());
  return Status::OK();
}

Result<UploadOutcome> RoundDriver::CheckUpload(const std::string& worker_id, uint64_t round,
                                               uint64_t payload_size) const {
  const std::string context = Context(worker_id, static_cast<uint32_t>(round));
  if (spec_.secure_aggregation.enabled)
    return Status::InvalidArgument(context +
                                   ": this job uses secure aggregation: its clients send SecAggRequest, "
                                   "not UploadUpdate");
  if (round >= 1 && round <= last_committed_) return UploadOutcome::kLate;
  if (!round_open_ && round == last_committed_ + 1)
    return Status::Unavailable(context + ": round " + std::to_string(round) + " is not open yet");
  if (!round_open_ || round != current_.round)
    return Status::InvalidArgument(context + ": wrong round (open round: " +
                                   (round_open_ ? std::to_string(current_.round) : std::string("none")) + ")");
  if (!std::binary_search(current_.uploaders.begin(), current_.uploaders.end(), worker_id))
    return Status::InvalidArgument(context + (current_.islands.empty() ? ": not a participant of this round"
                                                                       : ": not an island leader of this round"));
  if (reported_.count(worker_id) > 0) return UploadOutcome::kDuplicate;
  if (closing_)  // taken after all if the commit is refused and the round stays open
    return Status::Unavailable(context + ": round " + std::to_string(round) + " is being committed");
  const uint64_t max_bytes = method_->MaxPayloadBytes();
  if (MethodOf(spec_).dense_payload && payload_size != max_bytes)
    return Status::InvalidArgument(context + ": payload of " + std::to_string(payload_size) + " bytes, expected " +
                                   std::to_string(max_bytes) + " (4 bytes per trainable parameter)");
  if (payload_size > max_bytes)
    return Status::InvalidArgument(context + ": payload of " + std::to_string(payload_size) + " bytes, more than the " +
                                   std::to_string(max_bytes) + " bytes a " + spec_.mode + " upload can have");
  return UploadOutcome::kAccepted;
}

Result<UploadOutcome> RoundDriver::AcceptUpload(const Upload& upload) {
  const std::string context = Context(upload.worker_id, upload.round);
  if (upload.job_id != job_id_)
    return Status::InvalidArgument("job '" + upload.job_id + "': round " + std::to_string(upload.round) + ": worker '" +
                                   upload.worker_id + "': unknown job");
  TRIB_ASSIGN_OR_RETURN(const UploadOutcome checked,
                        CheckUpload(upload.worker_id, upload.round, upload.payload.size()));
  if (checked != UploadOutcome::kAccepted) return checked;
  if (spec_.aggregation_weights == AggregationWeights::kSamples && upload.num_samples == 0)
    return Status::InvalidArgument(context + ": num_samples is 0 under samples weighting");
  if (!std::isfinite(upload.train_loss)) return Status::InvalidArgument(context + ": train loss is not finite");
  if (upload.island_bytes > 0 && current_.islands.empty())
    return Status::InvalidArgument(context + ": island_bytes is " + std::to_string(upload.island_bytes) +
                                   " but this job trains no islands");
  TRIB_RETURN_IF_ERROR(ValidatePayload(upload));

  UpdateRecord record;
  record.job_id = job_id_;
  record.round = upload.round;
  record.worker_id = upload.worker_id;
  record.num_samples = upload.num_samples;
  record.train_loss = upload.train_loss;
  record.payload.assign(reinterpret_cast<const char*>(upload.payload.data()), upload.payload.size());
  record.received_unix_ms = upload.received_ms;
  record.island_bytes = upload.island_bytes;
  auto written = store_->AcceptUpdate(record);
  if (!written.ok()) return written.status().WithContext(context);
  reported_[upload.worker_id] = upload.received_ms;
  return *written == checkpoint::WriteOutcome::kWritten ? UploadOutcome::kAccepted : UploadOutcome::kDuplicate;
}

RoundCloseState RoundDriver::ReadyToClose(int64_t now_ms) const {
  if (!round_open_ || closing_) return RoundCloseState::kOpen;
  int64_t reported = 0;
  for (const auto& [worker, ms] : reported_) {
    if (std::binary_search(current_.uploaders.begin(), current_.uploaders.end(), worker)) ++reported;
  }
  return EvaluateRoundClose(static_cast<int64_t>(current_.uploaders.size()), reported, now_ms >= current_.deadline_ms,
                            spec_.quorum);
}

Result<std::vector<uint8_t>> RoundDriver::Aggregate(const std::vector<UpdateRecord>& updates,
                                                    std::vector<RoundParticipant>* participants) const {
  // Updates arrive in ascending worker id (ListUpdates): the fixed fp64 summation order.
  std::vector<ClientPayload> clients;
  std::vector<uint64_t> samples;
  clients.reserve(updates.size());
  for (const UpdateRecord& u : updates) {
    clients.push_back(
        {u.worker_id, u.num_samples, {reinterpret_cast<const uint8_t*>(u.payload.data()), u.payload.size()}});
    samples.push_back(u.num_samples);
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<double> weights, ClientWeights(samples, spec_.aggregation_weights));
  if (spec_.privacy.mechanism == DpMechanism::kCentral)  // a fresh key: a re-close after a crash draws anew
    aggregation_->SetNoise(NoiseStddev(spec_.privacy, spec_.aggregation.clip_norm), FreshNoiseKey());
  auto aggregate = method_->Aggregate(clients, spec_.aggregation_weights, *aggregation_, *global_, current_.round);
  if (!aggregate.ok())
    return aggregate.status().WithContext("job '" + job_id_ + "': round " + std::to_string(current_.round));
  const AggregationReport& report = aggregate->report;
  for (size_t i = 0; i < updates.size(); ++i) {
    RoundParticipant p{updates[i].worker_id, weights[i]};
    p.anomaly_score = report.anomaly_scores[i];
    p.clip_scale = report.clip_scales[i];
    p.excluded = report.excluded[i];
    participants->push_back(std::move(p));
  }
  return std::move(aggregate->bytes);
}

Result<CommittedRound> RoundDriver::CloseRound(int64_t now_ms) {
  TRIB_ASSIGN_OR_RETURN(std::shared_ptr<RoundClose> close, BeginClose(now_ms));
  return CloseNow(close.get(), now_ms);
}

Result<CommittedRound> RoundDriver::CommitExternalRound(ExternalAggregate external, int64_t now_ms) {
  TRIB_ASSIGN_OR_RETURN(std::shared_ptr<RoundClose> close, BeginExternalClose(std::move(external)));
  return CloseNow(close.get(), now_ms);
}

Result<CommittedRound> RoundDriver::CloseNow(RoundClose* close, int64_t now_ms) {
  Status computed = ComputeClose(close);
  if (!computed.ok()) {
    CancelClose();
    return computed;
  }
  auto committed = FinishClose(*close, now_ms);
  if (!committed.ok()) {
    CancelClose();
    return committed.status();
  }
  // The round is committed; a snapshot the store cannot take now (Unavailable: not writable) is skipped,
  // and a rebuild starts from an earlier snapshot and replays more rounds.
  const Status snapshot = TakeSnapshotIfDue(committed->round, *global_, now_ms);
  if (!snapshot.ok() && snapshot.code() != StatusCode::kUnavailable) return snapshot;
  if (!snapshot.ok())
    spdlog::warn("job {}: round {}: snapshot skipped: {}", job_id_, committed->round, snapshot.message());
  return committed;
}

Result<std::shared_ptr<RoundClose>> RoundDriver::BeginClose(int64_t now_ms) {
  const RoundCloseState state = closing_ ? RoundCloseState::kOpen : ReadyToClose(now_ms);
  if (state != RoundCloseState::kComplete && state != RoundCloseState::kQuorumReached)
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(current_.round) +
                                      " cannot close: " + (closing_ ? "it is closing" : RoundCloseStateName(state)));
  auto close = std::make_shared<RoundClose>();
  close->out.round = current_.round;
  TRIB_ASSIGN_OR_RETURN(close->updates, store_->ListUpdates(job_id_, current_.round));
  if (close->updates.empty())
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(current_.round) +
                                      ": no updates");
  double loss_sum = 0;
  for (const UpdateRecord& u : close->updates) {
    close->out.bytes_up += u.payload.size();
    close->out.island_bytes += u.island_bytes;
    loss_sum += u.train_loss;
  }
  close->out.mean_train_loss = loss_sum / static_cast<double>(close->updates.size());
  closing_ = true;
  return close;
}

Result<std::shared_ptr<RoundClose>> RoundDriver::BeginExternalClose(ExternalAggregate external) {
  if (!round_open_ || closing_)
    return Status::FailedPrecondition("job '" + job_id_ +
                                      "': " + (closing_ ? "the round is closing" : "no round is open"));
  if (external.metadata.empty())
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(current_.round) +
                                      ": no included clients");
  auto close = std::make_shared<RoundClose>();
  close->external = true;
  close->out.round = current_.round;
  close->out.aggregate = std::move(external.aggregate);
  close->out.participants = std::move(external.participants);
  close->out.bytes_up = external.bytes_up;
  double loss_sum = 0;
  reported_.clear();
  for (checkpoint::UpdateRecord& record : external.metadata) {
    record.job_id = job_id_;
    record.round = close->out.round;
    record.payload.clear();  // never an update: the coordinator does not have one
    loss_sum += record.train_loss;
    reported_[record.worker_id] = record.received_unix_ms;
    auto written = store_->AcceptUpdate(record);
    if (!written.ok()) return written.status().WithContext(Context(record.worker_id, close->out.round));
  }
  close->out.mean_train_loss = loss_sum / static_cast<double>(external.metadata.size());
  closing_ = true;
  return close;
}

Status RoundDriver::ComputeClose(RoundClose* close) const {
  CommittedRound& out = close->out;
  if (!close->external) {
    out.participants.clear();
    TRIB_ASSIGN_OR_RETURN(out.aggregate, Aggregate(close->updates, &out.participants));
  }
  out.bytes_down = out.aggregate.size() * current_.participants.size();
  // The new global state, computed aside: the replica changes only after the commit.
  close->next = std::make_shared<Arena>(global_->table_ptr());
  close->next->CopyFrom(*global_);
  TRIB_RETURN_IF_ERROR(method_->Apply(out.aggregate, out.round, close->next.get()));
  out.weights_hash = WeightsHash(*close->next);
  out.heldout_loss = std::numeric_limits<double>::quiet_NaN();
  if (evaluator_ && spec_.eval_every > 0 && out.round % static_cast<uint64_t>(spec_.eval_every) == 0) {
    TRIB_ASSIGN_OR_RETURN(out.heldout_loss, evaluator_(*close->next));
  }
  return Status::OK();
}

Result<CommittedRound> RoundDriver::FinishClose(const RoundClose& close, int64_t now_ms) {
  if (!closing_ || close.next == nullptr || close.out.round != current_.round)
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(close.out.round) +
                                      " is not being closed");
  CommittedRound out = close.out;
  const uint32_t round = out.round;
  RoundRecord record;
  record.job_id = job_id_;
  record.round = round;
  record.job_seed = spec_.seed;
  // Cluster mode with codec auto records the round's own codec, as a fixed codec's rounds do ("cluster_int8").
  record.seed_mode = current_.codec.empty() ? method_->RoundSeedMode() : "cluster_" + current_.codec;
  record.participants = out.participants;
  record.aggregate.assign(reinterpret_cast<const char*>(out.aggregate.data()), out.aggregate.size());
  record.metrics.heldout_loss = out.heldout_loss;
  record.metrics.bytes_up = out.bytes_up;
  record.metrics.bytes_down = out.bytes_down;
  record.metrics.island_bytes = out.island_bytes;
  record.weights_hash = out.weights_hash;
  record.committed_unix_ms = now_ms;
  TRIB_ASSIGN_OR_RETURN(checkpoint::JobRecord job, store_->GetJob(job_id_));
  out.job_finished = round >= static_cast<uint64_t>(spec_.rounds);
  job.state = out.job_finished ? checkpoint::JobState::kCompleted : checkpoint::JobState::kRunning;
  job.updated_unix_ms = now_ms;
  TRIB_RETURN_IF_ERROR(store_->CommitRound(record, job).status());

  // Committed: now the replica may change and the aggregate may be broadcast.
  global_ = close.next;
  last_committed_ = round;
  round_open_ = false;
  closing_ = false;
  for (const auto& [worker, received_ms] : reported_)
    deadline_.Observe(static_cast<double>(received_ms - current_.started_ms) / 1000.0);
  reported_.clear();
  return out;
}

Result<CatchUpPlan> RoundDriver::CatchUp(uint32_t from_round, uint32_t to_round) {
  if (to_round > last_committed_)
    return Status::InvalidArgument("job '" + job_id_ + "': catch-up to round " + std::to_string(to_round) + ": only " +
                                   std::to_string(last_committed_) + " rounds are committed");
  return PlanCatchUp(store_, job_id_, spec_.snapshot_every, from_round, to_round);
}

}  // namespace tributary
