#include "coordinator/job_runner.h"

#include "coordinator/cluster_batches.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <thread>

#include "base/hash.h"
#include "coordinator/job_view.h"
#include "coordinator/round_candidates.h"
#include "federation/method.h"

namespace tributary {

namespace fs = std::filesystem;
using transport::Envelope;

namespace {

constexpr int64_t kReplanIntervalMs = 1000;

// Cluster mode: the workers' calibrated compute for the job goes to the planner (batch shares); the
// links stay as measured. Returns a job log line when the rates changed, else "".
std::string FeedCalibrations(RoundDriver& driver, const WorkerRegistry& workers) {
  if (driver.spec().mode != "cluster") return "";
  std::map<std::string, double> rates = workers.TokensPerSecondOf(driver.job_id());
  if (rates == driver.measurements().tokens_per_s) return "";
  std::string line = "planning with calibrated compute:";
  for (const auto& [worker, rate] : rates)
    line += " " + worker + " " + std::to_string(std::llround(rate)) + " tokens/s;";
  if (rates.empty()) line += " none";
  if (line.back() == ';') line.pop_back();
  PlanMeasurements measured = driver.measurements();
  measured.tokens_per_s = std::move(rates);
  driver.SetMeasurements(std::move(measured));
  return line;
}

}  // namespace

// ---- lifecycle ----

Result<std::unique_ptr<JobRunner>> JobRunner::Submit(const JobServices& services, const std::string& job_id,
                                                     const JobSpec& spec, const std::string& submit_token) {
  std::unique_ptr<JobRunner> job(new JobRunner(services, job_id));
  job->spec_ = spec;
  job->record_.job_id = job_id;
  job->record_.submit_token = submit_token;
  job->record_.spec_yaml = spec.source_text;
  TRIB_RETURN_IF_ERROR(job->Start(/*resume=*/false));
  job->OpenLog().IgnoreError();  // logged; the job runs without its log file
  job->Log("submitted: " + spec.mode + " job '" + spec.name + "', " + std::to_string(spec.rounds) +
           " round(s), dataset '" + spec.dataset + "', base model " + spec.base_model + ", initial weights hash " +
           job->weights_hash_);
  return job;
}

Result<std::unique_ptr<JobRunner>> JobRunner::Load(const JobServices& services, const checkpoint::JobRecord& record) {
  std::unique_ptr<JobRunner> job(new JobRunner(services, record.job_id));
  job->record_ = record;
  job->OpenLog().IgnoreError();
  auto spec = ParseJobSpec(record.spec_yaml, "job '" + record.job_id + "' stored spec");
  if (spec.ok()) job->spec_ = *spec;
  TRIB_RETURN_IF_ERROR(job->LoadRoundSummaries());
  job->LoadLinks();
  if (record.state != checkpoint::JobState::kRunning && record.state != checkpoint::JobState::kPending) return job;
  if (!spec.ok()) {
    job->Fail(spec.status());
    return job;
  }
  Status started = job->Start(/*resume=*/true);
  if (!started.ok()) {
    job->Fail(started.WithContext("resuming after a restart"));
    return job;
  }
  job->Log("resumed after a coordinator restart at committed round " +
           std::to_string(job->driver_->last_committed_round()) + " with " +
           std::to_string(job->driver_->reported().size()) + " accepted upload(s) of the open round");
  return job;
}

Status JobRunner::OpenLog() {
  auto log = JobLog::Open((fs::path(services_.options->data_dir) / "logs" / (job_id_ + ".log")).string());
  if (!log.ok()) {
    spdlog::warn("job {}: {}", job_id_, log.status().ToString());
    return log.status();
  }
  log_ = std::move(*log);
  return Status::OK();
}

Status JobRunner::LoadRoundSummaries() {
  checkpoint::CheckpointStore& store = *services_.store;
  if (record_.current_round > 0) {
    TRIB_ASSIGN_OR_RETURN(std::vector<checkpoint::RoundRecord> rounds,
                          store.ListRounds(job_id_, 1, record_.current_round));
    for (const checkpoint::RoundRecord& r : rounds) {
      v1::RoundSummary summary;
      summary.set_round(r.round);
      summary.set_participants(static_cast<uint32_t>(r.participants.size()));
      auto updates = store.ListUpdates(job_id_, r.round);
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
      summary.set_island_bytes(r.metrics.island_bytes);
      summary.set_committed_unix_ms(r.committed_unix_ms);
      summary.set_weights_hash(HashHex(r.weights_hash));
      AddClientReports(r.participants, &summary);
      weights_hash_ = summary.weights_hash();
      rounds_.push_back(std::move(summary));
    }
  }
  auto initial = store.GetSnapshotInfo(job_id_, 0);
  if (initial.ok()) dense_state_bytes_ = static_cast<uint64_t>(initial->total_elems) * sizeof(float);
  return Status::OK();
}

Status JobRunner::Start(bool resume) {
  TRIB_ASSIGN_OR_RETURN(model_, JobModel::Load(spec_));
  if (!spec_.eval_dataset.empty()) {
    auto it = services_.options->eval_data.find(spec_.eval_dataset);
    if (it == services_.options->eval_data.end())
      return Status::InvalidArgument("field 'eval.dataset': '" + spec_.eval_dataset +
                                     "' is not a held-out dataset of this coordinator (coordinator.eval_data)");
    TRIB_RETURN_IF_ERROR(model_->LoadEvalRows(it->second).WithContext("field 'eval.dataset'"));
  }
  if (resume) {
    TRIB_ASSIGN_OR_RETURN(driver_, RoundDriver::Resume(services_.store, job_id_, spec_));
  } else {
    TRIB_ASSIGN_OR_RETURN(driver_, RoundDriver::Create(services_.store, job_id_, spec_, model_->initial_state(),
                                                       UnixMillis(), record_.submit_token));
    TRIB_ASSIGN_OR_RETURN(record_, services_.store->GetJob(job_id_));
  }
  driver_->SetMinWorkerMemory(model_->MinWorkerMemoryBytes());
  if (model_->has_eval_rows()) {
    // Runs on the task queue (RoundDriver::ComputeClose): the model is shared, so a stop cannot free it.
    std::shared_ptr<JobModel> model = model_;
    const int64_t delay_ms = services_.options->evaluation_delay_ms;
    driver_->SetEvaluator([model, delay_ms](const Arena& state) {
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      return model->Evaluate(state);
    });
  }
  weights_hash_ = HashHex(driver_->global_hash());
  dense_state_bytes_ = static_cast<uint64_t>(model_->initial_state().size()) * sizeof(float);
  ApplyLinks();  // a resumed job's stored matrix (LoadLinks)
  ++version_;
  return Status::OK();
}

void JobRunner::Log(const std::string& line, bool warn) {
  if (log_) log_->Append(line);
  if (warn) {
    spdlog::warn("job {}: {}", job_id_, line);
  } else {
    spdlog::info("job {}: {}", job_id_, line);
  }
}

void JobRunner::RefreshRecord() {
  auto record = services_.store->GetJob(job_id_);
  if (record.ok()) record_ = *record;
  ++version_;
}

void JobRunner::Release() {
  secagg_.reset();
  campaign_.reset();
  driver_.reset();
  PublishIslandMetrics();
  model_.reset();
  ++version_;
}

void JobRunner::Fail(const Status& status) {
  Log("job failed: " + status.ToString(), /*warn=*/true);
  Status updated =
      services_.store->UpdateJobState(job_id_, checkpoint::JobState::kFailed, status.ToString(), UnixMillis());
  if (!updated.ok()) spdlog::error("job {}: recording the failure: {}", job_id_, updated.ToString());
  RefreshRecord();
  record_.state = checkpoint::JobState::kFailed;
  record_.failure_reason = status.ToString();
  Release();
}

Status JobRunner::Stop(const std::string& reason, int64_t now_ms) {
  if (checkpoint::IsFinished(record_.state))
    return Status::FailedPrecondition("job '" + job_id_ + "' is already " + checkpoint::JobStateName(record_.state));
  TRIB_RETURN_IF_ERROR(services_.store->UpdateJobState(job_id_, checkpoint::JobState::kStopped, reason, now_ms));
  RefreshRecord();
  Release();
  Log("job stopped at committed round " + std::to_string(record_.current_round) + ": " + reason);
  return Status::OK();
}

// ---- views ----

v1::JobStatus JobRunner::Describe() const {
  v1::JobStatus st;
  st.set_job_id(job_id_);
  st.set_name(spec_.name);
  st.set_mode(spec_.mode);
  st.set_state(checkpoint::JobStateName(record_.state));
  st.set_round(record_.current_round);
  st.set_total_rounds(static_cast<uint64_t>(spec_.rounds));
  st.set_heldout_loss(std::numeric_limits<double>::quiet_NaN());
  if (!rounds_.empty()) {
    const v1::RoundSummary& last = rounds_.back();
    st.set_participants(last.participants());
    st.set_loss(last.train_loss());
    st.set_last_round_bytes_up(last.bytes_up());
    st.set_last_round_bytes_down(last.bytes_down());
    st.set_last_round_island_bytes(last.island_bytes());
    for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
      if (!std::isnan(it->heldout_loss())) {
        st.set_heldout_loss(it->heldout_loss());
        break;
      }
    }
  } else {
    st.set_loss(std::numeric_limits<double>::quiet_NaN());
  }
  uint64_t bytes_up = 0, bytes_down = 0, island_bytes = 0;
  for (const v1::RoundSummary& r : rounds_) {
    bytes_up += r.bytes_up();
    bytes_down += r.bytes_down();
    island_bytes += r.island_bytes();
  }
  st.set_bytes_up(bytes_up);
  st.set_bytes_down(bytes_down);
  st.set_island_bytes(island_bytes);
  st.set_created_unix_ms(record_.created_unix_ms);
  st.set_updated_unix_ms(record_.updated_unix_ms);
  st.set_error(record_.failure_reason);
  st.set_dense_state_bytes(dense_state_bytes_);
  if (record_.state == checkpoint::JobState::kRunning || record_.state == checkpoint::JobState::kPending)
    st.set_waiting(last_plan_error_);
  if (spec_.privacy.mechanism != DpMechanism::kNone) *st.mutable_privacy() = PrivacyStatusOf(spec_, st.round());
  st.set_submit_token(record_.submit_token);
  if (driver_ && driver_->round_open()) st.set_islands(static_cast<uint32_t>(driver_->current().islands.size()));
  st.set_island_reforms(island_reforms_);
  return st;
}

v1::GetJobReply JobRunner::Detail(std::vector<v1::ReplicaState> replicas) const {
  v1::GetJobReply out;
  *out.mutable_job() = Describe();
  out.set_spec_yaml(record_.spec_yaml);
  if (driver_ && driver_->round_open()) {
    for (const std::string& p : driver_->current().participants) out.add_workers(p);
  }
  for (const v1::RoundSummary& r : rounds_) *out.add_rounds() = r;
  for (v1::ReplicaState& r : replicas) *out.add_replicas() = std::move(r);
  AddIslandStatuses(&out);
  if (plan_view_) *out.mutable_plan() = *plan_view_;
  out.set_plan_error(last_plan_failure_);
  return out;
}

void JobRunner::AddIslandStatuses(v1::GetJobReply* reply) const {
  if (!driver_ || !driver_->round_open()) return;
  const std::vector<std::string> reported = driver_->reported();
  for (const RoundIsland& island : driver_->current().islands) {
    v1::IslandStatus* out = reply->add_islands();
    out->set_island_id(island.name);
    out->set_incarnation(island.incarnation);
    for (const std::string& m : island.members) out->add_members(m);
    if (!island.members.empty()) {
      out->set_leader(island.members[0]);
      out->set_reported(std::binary_search(reported.begin(), reported.end(), island.members[0]));
    }
    auto reforms = island_reforms_by_island_.find(island.name);
    out->set_reforms(reforms == island_reforms_by_island_.end() ? 0 : reforms->second);
    out->set_reason(island.reason);
  }
}

Result<LogPage> JobRunner::ReadLog(uint64_t from_line, uint32_t max_lines) const {
  if (!log_) return Status::Unavailable("job '" + job_id_ + "': its log file is not open");
  return log_->Read(from_line, max_lines);
}

// ---- rounds ----

void JobRunner::Tick(int64_t now_ms, bool may_plan) {
  work_.Poll();  // finished closes, snapshots and exports report here, on the loop
  reads_.Poll();
  if (!driver_ || driver_->closing()) return;
  RoundDriver& driver = *driver_;
  if (!driver.round_open() && (!may_plan || now_ms < next_plan_ms_ || !TickProbes(now_ms) || !OpenRound(now_ms)))
    return;
  if (!driver.current().islands.empty() && !ReformIslands(now_ms)) return;
  SendRoundStarts();
  if (spec_.secure_aggregation.enabled) return TickSecAgg(now_ms);
  switch (driver.ReadyToClose(now_ms)) {
    case RoundCloseState::kOpen: return;
    case RoundCloseState::kComplete:
    case RoundCloseState::kQuorumReached: return CloseRound(now_ms);
    case RoundCloseState::kQuorumMissed:
      Log("round " + std::to_string(driver.current().round) + ": deadline passed with " +
              std::to_string(driver.reported().size()) + " of " + std::to_string(driver.current().participants.size()) +
              " uploads, below the quorum; re-planning the round",
          /*warn=*/true);
      driver.AbandonRound();
      next_plan_ms_ = now_ms;
      return;
  }
}

bool JobRunner::OpenRound(int64_t now_ms) {
  if (const std::string fed = FeedCalibrations(*driver_, *services_.workers); !fed.empty()) Log(fed);
  // Workers that report they cannot train the job sit the round out, unless it cannot be planned
  // without them (coordinator/round_candidates.h).
  const std::vector<WorkerInventory> alive = services_.workers->AliveInventory();
  const RoundCandidates candidates = LeaveOutWorkersThatCannotTrain(alive, services_.workers->ProblemsOf(job_id_));
  auto start = driver_->StartRound(candidates.inventory, now_ms);
  std::string without;  // why the round could not be planned without them
  if (!start.ok() && !candidates.left_out.empty()) {
    without = start.status().message();
    start = driver_->StartRound(alive, now_ms);
  }
  if (!start.ok()) {
    next_plan_ms_ = now_ms + kReplanIntervalMs;
    if (start.status().message() != last_plan_error_) {
      last_plan_error_ = start.status().message();
      Log("waiting for workers: " + start.status().message(), /*warn=*/true);
    }
    return false;
  }
  if (spec_.secure_aggregation.enabled) {
    Status opened = OpenSecAggSession(*start);
    if (!opened.ok()) {
      Fail(opened.WithContext("round " + std::to_string(start->round)));
      return false;
    }
  }
  last_plan_error_.clear();
  round_start_sent_.clear();
  island_stores_.clear();
  round_opened_ms_ = now_ms;
  slowest_train_seconds_ = 0;
  ++version_;
  PublishIslandMetrics();
  std::string names;
  for (const std::string& p : start->participants) names += (names.empty() ? "" : ", ") + p;
  Log("round " + std::to_string(start->round) + " opened: " + std::to_string(start->participants.size()) +
      " participant(s) [" + names + "], deadline in " + std::to_string((start->deadline_ms - now_ms + 500) / 1000) +
      " s");
  if (!without.empty()) {
    Log(PlannedWithThemLine(candidates.left_out, start->round, without), /*warn=*/true);
  } else {
    for (const LeftOutWorker& w : candidates.left_out) Log(LeftOutLine(w, start->round), /*warn=*/true);
  }
  if (spec_.mode == "cluster") LogPlan(start->round);
  return true;
}

void JobRunner::LogPlan(uint32_t round) {
  const std::string prefix = "round " + std::to_string(round) + ": ";
  const std::string batches = MemberBatchesText(driver_->current().islands);
  const std::string batch_line = batches.empty() ? driver_->batch_reason() : "batches " + batches;
  if (batch_line != last_batches_) Log(prefix + batch_line + " (sequences per micro-batch)");
  last_batches_ = batch_line;
  const std::string& outer = driver_->current().outer_reason;
  if (!outer.empty() && outer != last_outer_) Log(prefix + outer);
  last_outer_ = outer;
  const ClusterPlan* plan = driver_->plan();
  if (plan == nullptr) {
    if (driver_->plan_error() != last_plan_failure_)
      Log(prefix + "no plan (" + driver_->plan_error() + "); islands train in ascending member order", true);
    last_plan_failure_ = driver_->plan_error();
    plan_view_.reset();
    return;
  }
  last_plan_failure_.clear();
  plan_view_ = ClusterPlanToView(*plan, round);
  if (driver_->plan_change().empty()) return;
  std::string reasons;
  for (const std::string& r : plan->reasons) reasons += (reasons.empty() ? "" : "; ") + r;
  for (const IslandPlan& island : plan->islands)
    for (const std::string& r : island.reasons) reasons += (reasons.empty() ? "" : "; ") + island.name + ": " + r;
  Log(prefix + (driver_->plan_change() == "first plan" ? "planned" : "re-planned: " + driver_->plan_change()) +
      " (why: " + reasons + ")");
}

bool JobRunner::ReformIslands(int64_t now_ms) {
  const std::vector<IslandChange> changes = driver_->ReformIslands(services_.workers->AliveInventory());
  if (changes.empty()) return true;
  for (const IslandChange& change : changes) {
    Log("round " + std::to_string(driver_->current().round) + ": " + change.line,
        /*warn=*/true);
    if (change.dropped) continue;  // PublishIslandMetrics shows it with 0 members
    ++island_reforms_;
    ++island_reforms_by_island_[change.name];
    services_.metrics->OnIslandReformed(job_id_, change.name);
  }
  PublishIslandMetrics();
  ++version_;
  island_stores_.clear();  // the new incarnations rendezvous afresh
  if (!driver_->current().uploaders.empty()) return true;
  Log("round " + std::to_string(driver_->current().round) + ": no island is left; re-planning the round",
      /*warn=*/true);
  driver_->AbandonRound();
  next_plan_ms_ = now_ms + kReplanIntervalMs;
  return false;
}

void JobRunner::PublishIslandMetrics() {
  std::set<std::string> idle = metric_islands_;
  if (driver_ && driver_->round_open()) {
    for (const RoundIsland& island : driver_->current().islands) {
      services_.metrics->SetIsland(job_id_, island.name, island.members.size(), island.incarnation);
      metric_islands_.insert(island.name);
      idle.erase(island.name);
    }
  }
  for (const std::string& name : idle) services_.metrics->SetIslandMembers(job_id_, name, 0);
}

const RoundIsland* JobRunner::IslandOf(const std::string& worker_id) const {
  for (const RoundIsland& island : driver_->current().islands)
    if (std::find(island.members.begin(), island.members.end(), worker_id) != island.members.end()) return &island;
  return nullptr;
}

void JobRunner::SendRoundStarts() {
  // Participants that have not reported and have not got RoundStart on their current connection (a
  // worker that re-registered after a restart has a new routing id).
  const std::vector<std::string> reported = spec_.secure_aggregation.enabled ? SecAggJoined() : driver_->reported();
  for (const std::string& p : driver_->current().participants) {
    if (std::binary_search(reported.begin(), reported.end(), p)) continue;
    const WorkerEntry* w = services_.workers->Find(p);
    if (w == nullptr || !w->inventory.alive) continue;
    auto sent = round_start_sent_.find(p);
    if (sent != round_start_sent_.end() && sent->second == RoundStartKey(*w)) continue;
    SendRoundStart(*w);
  }
}

void JobRunner::SendRoundStart(const WorkerEntry& worker) {
  const RoundStart& round = driver_->current();
  Envelope env = transport::NewEnvelope("coordinator");
  v1::RoundStart* start = env.mutable_round_start();
  start->set_job_id(job_id_);
  start->set_round(round.round);
  start->set_mode(spec_.mode);
  start->set_server_lr(spec_.server_lr);
  start->set_deadline_unix_ms(round.deadline_ms);
  start->set_committed_round(round.round - 1);
  start->set_seed(spec_.seed);
  start->set_local_steps(static_cast<uint32_t>(round.local_steps));
  start->set_num_coefficients(driver_->method().CoefficientsPerBlock());
  start->set_weights_hash(weights_hash_);
  start->set_job_spec_yaml(record_.spec_yaml);
  if (const RoundIsland* island = IslandOf(worker.worker_id)) {
    v1::IslandAssignment* a = start->mutable_island();
    a->set_island_id(island->name);
    a->set_incarnation(island->incarnation);
    const auto rank = std::find(island->members.begin(), island->members.end(), worker.worker_id);
    a->set_rank(static_cast<uint32_t>(rank - island->members.begin()));
    for (const std::string& m : island->members) a->add_members(m);
    a->set_timeout_ms(static_cast<uint32_t>(std::llround(spec_.cluster.collective_timeout_s * 1000.0)));
    a->set_bucket_elems(static_cast<uint64_t>(spec_.cluster.bucket_elems));
    a->set_codec(round.codec);
    // A re-formed island that gained a member the plan did not share to trains train.batch_size throughout.
    Result<std::vector<int64_t>> batches = MemberBatches(*island);
    if (!batches.ok()) spdlog::warn("job {}: island '{}': {}", job_id_, island->name, batches.status().message());
    if (batches.ok())
      for (int64_t b : *batches) a->add_member_batch_sizes(static_cast<uint32_t>(b));
  }
  Status sent = services_.server->Send(worker.routing_id, env);
  if (!sent.ok()) {
    spdlog::debug("job {}: RoundStart to '{}': {}", job_id_, worker.worker_id, sent.ToString());
    return;
  }
  round_start_sent_[worker.worker_id] = RoundStartKey(worker);
}

std::string JobRunner::RoundStartKey(const WorkerEntry& worker) const {
  const RoundIsland* island = IslandOf(worker.worker_id);
  return island == nullptr ? worker.routing_id : worker.routing_id + "/" + std::to_string(island->incarnation);
}

void JobRunner::CloseRoundIfComplete(int64_t now_ms) {
  if (driver_ && driver_->closing()) return;
  if (driver_ && spec_.secure_aggregation.enabled) return TickSecAgg(now_ms);
  if (driver_ && driver_->ReadyToClose(now_ms) == RoundCloseState::kComplete) CloseRound(now_ms);
}

void JobRunner::CloseRound(int64_t now_ms) {
  // Waiting for storage: aggregate and evaluate again only once the store can take the commit.
  if (!storage_wait_.empty() && !services_.store->CheckWritable().ok()) return;
  const size_t selected = driver_->current().participants.size();
  auto close = driver_->BeginClose(now_ms);
  if (!close.ok() && close.status().code() == StatusCode::kUnavailable) return WaitForStorage(close.status());
  if (!close.ok()) return Fail(close.status());
  PostClose(std::move(*close), selected);
}

void JobRunner::PostClose(std::shared_ptr<RoundClose> close, size_t selected) {
  const auto started = std::chrono::steady_clock::now();
  auto computed = std::make_shared<Status>();
  auto aggregate = std::make_shared<AggregateObject>();
  std::shared_ptr<RoundDriver> driver = driver_;
  // The aggregate's checksum and bulk object are computed here too: a full model's is not the loop's to read.
  work_.Post(
      [driver, close, computed, aggregate, inline_limit = services_.options->inline_payload_bytes,
       object_id = AggregateObjectId(close->out.round)] {
        *computed = driver->ComputeClose(close.get());
        if (computed->ok()) *aggregate = PrepareAggregate(close->out.aggregate, inline_limit, object_id);
      },
      [this, driver, close, computed, aggregate, selected, started] {
        FinishClose(close, driver, *computed, *aggregate, selected, started);
      });
}

JobRunner::AggregateObject JobRunner::PrepareAggregate(const std::vector<uint8_t>& aggregate, uint64_t inline_limit,
                                                       const std::string& object_id) {
  AggregateObject out;
  if (aggregate.size() > inline_limit) {
    auto bytes = std::make_shared<const std::string>(reinterpret_cast<const char*>(aggregate.data()), aggregate.size());
    auto prepared = BulkObjects::Prepare(object_id, std::make_shared<transport::MemorySource>(std::move(bytes)));
    if (prepared.ok()) {
      out.checksum = prepared->object_checksum;
      out.object = std::move(*prepared);
      return out;
    }
  }
  out.checksum = transport::ObjectChecksum(aggregate.data(), aggregate.size());
  return out;
}

std::string JobRunner::AggregateObjectId(uint64_t round) const {
  return "aggregate/" + job_id_ + "/" + std::to_string(round);
}

void JobRunner::FinishClose(const std::shared_ptr<RoundClose>& close, const std::shared_ptr<RoundDriver>& driver,
                            const Status& computed, const AggregateObject& aggregate, size_t selected,
                            std::chrono::steady_clock::time_point started) {
  if (driver_ != driver) return;  // stopped or failed meanwhile: nothing is committed
  if (!computed.ok()) {
    driver_->CancelClose();
    return Fail(computed);
  }
  const int64_t now_ms = UnixMillis();
  auto committed = driver_->FinishClose(*close, now_ms);
  if (!committed.ok()) driver_->CancelClose();
  if (!committed.ok() && committed.status().code() == StatusCode::kUnavailable)
    return WaitForStorage(committed.status());
  if (!committed.ok()) return Fail(committed.status());
  if (!storage_wait_.empty()) Log("round " + std::to_string(committed->round) + ": the store is writable again");
  storage_wait_.clear();
  const double close_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // The snapshot reads the committed state, which a later round replaces rather than changes.
  const uint32_t round = committed->round;
  std::shared_ptr<const Arena> state = driver_->shared_global();
  auto snapshot = std::make_shared<Status>();
  work_.Post([driver, state, round, now_ms, snapshot] { *snapshot = driver->TakeSnapshotIfDue(round, *state, now_ms); },
             [this, round, snapshot] {
               // Unavailable: skipped; a rebuild starts from an earlier snapshot and replays more rounds.
               if (!snapshot->ok())
                 Log("round " + std::to_string(round) + ": snapshot skipped: " + snapshot->message(), /*warn=*/true);
             });
  OnCommitted(*committed, aggregate, selected, close_s, now_ms);
}

void JobRunner::WaitForStorage(const Status& why) {
  if (storage_wait_.empty())
    Log("round " + std::to_string(driver_->current().round) + ": cannot commit yet, the round stays open: " +
            why.message() + "; uploads are kept and the commit is retried",
        /*warn=*/true);
  storage_wait_ = why.message();
  ++version_;
}

void JobRunner::OnCommitted(const CommittedRound& c, const AggregateObject& aggregate, size_t selected, double close_s,
                            int64_t now_ms) {
  services_.metrics->OnRoundCommitted(job_id_, static_cast<double>(now_ms - round_opened_ms_) / 1000.0, close_s,
                                      c.bytes_up, c.bytes_down);
  if (c.island_bytes > 0) services_.metrics->OnIslandBytes(job_id_, c.island_bytes);
  weights_hash_ = HashHex(c.weights_hash);
  v1::RoundSummary summary;
  summary.set_round(c.round);
  summary.set_participants(static_cast<uint32_t>(c.participants.size()));
  summary.set_train_loss(c.mean_train_loss);
  summary.set_heldout_loss(c.heldout_loss);
  summary.set_bytes_up(c.bytes_up);
  summary.set_bytes_down(c.bytes_down);
  summary.set_island_bytes(c.island_bytes);
  summary.set_committed_unix_ms(UnixMillis());  // after aggregation, commit and apply
  summary.set_weights_hash(weights_hash_);
  summary.set_opened_unix_ms(round_opened_ms_);
  summary.set_slowest_train_seconds(slowest_train_seconds_);
  AddClientReports(c.participants, &summary);
  rounds_.push_back(summary);

  // Durable: broadcast to every alive worker (participants apply it; others keep warm replicas).
  Broadcast(c, aggregate, now_ms);
  const uint64_t per_client = c.participants.empty() ? 0 : c.bytes_up / c.participants.size();
  const uint64_t inline_limit = services_.options->inline_payload_bytes;
  Log("round " + std::to_string(c.round) + " committed: " + std::to_string(c.participants.size()) + " of " +
      std::to_string(selected) + " participant(s), train loss " + FormatLoss(c.mean_train_loss) + ", held-out loss " +
      FormatLoss(c.heldout_loss) + ", up " + std::to_string(c.bytes_up) + " B (" + std::to_string(per_client) +
      " B per client), down " + std::to_string(c.bytes_down) + " B" +
      (c.island_bytes > 0 ? ", inside islands " + std::to_string(c.island_bytes) + " B" : std::string()) +
      ", aggregation+commit " + std::to_string(static_cast<int64_t>(close_s * 1000)) + " ms, weights hash " +
      weights_hash_ +
      (bytes_pulled_ > 0 ? ", " + std::to_string(bytes_pulled_) + " B pulled as bulk so far" : std::string()) +
      (c.aggregate.size() > inline_limit ? ", aggregate served as a bulk object" : ""));
  Log("round " + std::to_string(c.round) + " clients (" + AggregationRuleName(spec_.aggregation.rule) +
      "; anomaly score = distance to the aggregate / median): " + ClientReportsText(summary));
  if (spec_.privacy.mechanism != DpMechanism::kNone) {
    const v1::PrivacyStatus privacy = PrivacyStatusOf(spec_, c.round);
    services_.metrics->SetPrivacySpent(job_id_, privacy.epsilon(), privacy.delta());
    Log("privacy " + PrivacyText(privacy, c.round, static_cast<uint64_t>(spec_.rounds)));
  }
  RefreshRecord();
  if (c.job_finished) {
    Log(std::string("job finished: ") + checkpoint::JobStateName(record_.state) + " after " + std::to_string(c.round) +
        " round(s), final weights hash " + weights_hash_);
    Release();
  }
}

void JobRunner::Broadcast(const CommittedRound& c, const AggregateObject& aggregate, int64_t now_ms) {
  Envelope env = transport::NewEnvelope("coordinator");
  v1::RoundCommitted* rc = env.mutable_round_committed();
  rc->set_job_id(job_id_);
  rc->set_round(c.round);
  rc->set_participants(static_cast<uint32_t>(c.participants.size()));
  rc->set_mean_loss(c.mean_train_loss);
  rc->set_aggregate_size(c.aggregate.size());
  rc->set_aggregate_checksum(aggregate.checksum.empty()
                                 ? transport::ObjectChecksum(c.aggregate.data(), c.aggregate.size())
                                 : aggregate.checksum);
  bool aggregate_inline = c.aggregate.size() <= services_.options->inline_payload_bytes;
  if (!aggregate_inline) {
    std::string object_id = AggregateObjectId(c.round);
    Status served =
        aggregate.object
            ? (services_.bulk->Renew(object_id, now_ms)
                   ? Status::OK()
                   : services_.bulk->OfferPrepared(object_id, *aggregate.object, now_ms))
            : OfferAggregate(c.round,
                             std::string(reinterpret_cast<const char*>(c.aggregate.data()), c.aggregate.size()), now_ms,
                             &object_id);
    if (served.ok()) {
      rc->set_aggregate_object_id(object_id);
    } else {
      // Workers then get the round by catch-up (which tries the bulk object again).
      spdlog::warn("job {}: round {}: serving the aggregate as a bulk object: {}", job_id_, c.round, served.ToString());
      aggregate_inline = true;
    }
  }
  if (aggregate_inline) rc->set_aggregate(c.aggregate.data(), c.aggregate.size());
  rc->set_weights_hash(weights_hash_);
  rc->set_job_finished(c.job_finished);
  // To the workers that can use it: those holding the job's dataset (its participants, and the others keep
  // warm replicas) and those reporting a replica of the job. Thousands of workers of other jobs would each
  // cost the coordinator an encrypted copy of the round.
  std::vector<const WorkerEntry*> to;
  std::vector<std::string> routing_ids;
  for (const WorkerEntry* w : services_.workers->Alive()) {
    const bool holds_replica = std::any_of(w->replicas.begin(), w->replicas.end(),
                                           [this](const v1::ReplicaState& r) { return r.job_id() == job_id_; });
    if (w->inventory.datasets.count(spec_.dataset) == 0 && !holds_replica) continue;
    to.push_back(w);
    routing_ids.push_back(w->routing_id);
  }
  const std::vector<Status> sent = services_.server->SendToEach(routing_ids, env);
  for (size_t i = 0; i < sent.size(); ++i) {
    if (!sent[i].ok())
      spdlog::debug("job {}: RoundCommitted to '{}': {}", job_id_, to[i]->worker_id, sent[i].ToString());
  }
}

Status JobRunner::OfferAggregate(uint64_t round, std::string bytes, int64_t now_ms, std::string* object_id) {
  *object_id = AggregateObjectId(round);
  return services_.bulk->OfferBytesOnce(*object_id, std::make_shared<const std::string>(std::move(bytes)), now_ms);
}

// ---- uploads ----

Result<UploadOutcome> JobRunner::CheckUpload(const std::string& worker_id, uint64_t round,
                                             uint64_t payload_size) const {
  if (!driver_) return Status::FailedPrecondition(std::string("job is ") + checkpoint::JobStateName(record_.state));
  return driver_->CheckUpload(worker_id, round, payload_size);
}

Result<UploadOutcome> JobRunner::AcceptUpload(const v1::UploadUpdate& u, const std::string& payload, bool pulled,
                                              int64_t now_ms) {
  if (!driver_) return Status::FailedPrecondition(std::string("job is ") + checkpoint::JobStateName(record_.state));
  Upload upload;
  upload.job_id = u.job_id();
  upload.worker_id = u.worker_id();
  upload.round = static_cast<uint32_t>(u.round());
  upload.payload.assign(payload.begin(), payload.end());
  upload.num_samples = u.num_samples();
  upload.train_loss = u.loss();
  upload.received_ms = now_ms;
  upload.island_bytes = u.island_bytes();
  TRIB_ASSIGN_OR_RETURN(const UploadOutcome outcome, driver_->AcceptUpload(upload));
  if (outcome == UploadOutcome::kAccepted) {
    slowest_train_seconds_ = std::max(slowest_train_seconds_, u.train_seconds());
    if (pulled) bytes_pulled_ += payload.size();
    ++version_;  // the view shows which islands reported
    Log("round " + std::to_string(u.round()) + ": upload from '" + u.worker_id() + "' accepted (" +
        std::to_string(u.num_samples()) + " samples, train loss " + FormatLoss(u.loss()) + ", " +
        std::to_string(payload.size()) + " B" + (pulled ? " pulled as a bulk object" : "") + ")");
  }
  return outcome;
}

}  // namespace tributary
