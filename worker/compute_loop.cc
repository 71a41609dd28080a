#include "worker/compute_loop.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <new>

#include "federation/job_spec.h"

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kQueueWait{200};  // the loop checks the stop flag at least this often

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ComputeLoop::ComputeLoop(const WorkerOptions& options, WorkQueue* queue, StatusBoard* board, ReplicaSync* sync,
                         Uploader* uploader, SecAggSession* secagg, IslandSession* island,
                         std::function<bool()> stopping)
    : options_(options),
      name_("worker '" + options.worker_id + "'"),
      peer_("coordinator " + options.coordinator),
      queue_(queue),
      board_(board),
      sync_(sync),
      uploader_(uploader),
      secagg_(secagg),
      island_(island),
      stopping_(std::move(stopping)) {}

void ComputeLoop::Run() {
  while (!stopping_()) {
    std::optional<WorkItem> item = queue_->Pop(kQueueWait);
    if (!item) continue;
    try {
      Handle(*item);
    } catch (...) {
      // Reporting a failure failed too (memory that short): the item is given up, the worker goes on.
      try {
        spdlog::error("{}: an item failed and could not be reported", name_);
      } catch (...) {
      }
    }
    queue_->Done();
    board_->SetActivity("idle", "", 0);
  }
}

void ComputeLoop::Handle(const WorkItem& item) {
  const std::string& job = item.is_start ? item.start.job_id() : item.committed.job_id();
  const uint64_t round = item.is_start ? item.start.round() : item.committed.round();
  const char* what = item.is_start ? "RoundStart" : "RoundCommitted";
  bool threw = false;
  const Status status = RunHandler(item, &threw);
  if (!item.is_start) MaybeRetry(job, round);
  if (status.ok()) {
    if (item.is_start || item.committed.job_finished()) {
      board_->ClearProblem(job);
      retries_.erase(job);
    }
    return;
  }
  if (stopping_() && !threw) {
    spdlog::info("{}: {}: {} interrupted by the stop: {}", name_, JobRound(job, round), what, status.message());
    return;
  }
  spdlog::error("{}: {}: {}: {}", name_, JobRound(job, round), what, status.message());
  // Whatever the exception interrupted (a tasklet's update, an aggregate half applied) left the replica
  // in an unknown state, and freeing it gives back its memory: the next round rebuilds it by catch-up.
  if (threw) sync_->Drop(job);
  // A failed sync or tasklet (not a failed upload: the coordinator is the one that did not answer) is
  // reported in every heartbeat until the job trains here again, so the job's status says why its round
  // waits, and the coordinator plans the job's next rounds without this worker. It tries again when the
  // coordinator sends it the round again (a re-plan), or after its back-off (MaybeRetry).
  if (item.is_start && (threw || board_->Snapshot().state != "uploading"))
    ReportProblem(job, round, what + std::string(": ") + status.message());
}

Status ComputeLoop::RunHandler(const WorkItem& item, bool* threw) {
  *threw = false;
  // What the worker was doing when it threw: "training job J round R".
  auto doing = [&] {
    const PublishedStatus now = board_->Snapshot();
    if (now.state == "idle" || now.job_id.empty())
      return std::string("handling the ") + (item.is_start ? "RoundStart" : "RoundCommitted") + " of " +
             (item.is_start ? JobRound(item.start.job_id(), item.start.round())
                            : JobRound(item.committed.job_id(), item.committed.round()));
    return now.state + " " + JobRound(now.job_id, now.round);
  };
  try {
    return item.is_start ? HandleRoundStart(item.start) : HandleRoundCommitted(item.committed);
  } catch (const std::bad_alloc& e) {
    *threw = true;
    return Status::FailedPrecondition("out of memory while " + doing() + " (" + e.what() +
                                      "): this host cannot hold the job's model and batch");
  } catch (const std::exception& e) {
    *threw = true;
    return Status::Internal("unexpected error while " + doing() + ": " + e.what());
  } catch (...) {
    *threw = true;
    return Status::Internal("unexpected error while " + doing() + ": an exception of unknown type");
  }
}

uint64_t ComputeLoop::RetryAfterRound(uint64_t failed_round, int failures_in_a_row) {
  const int doublings = std::clamp(failures_in_a_row - 1, 0, 16);
  return failed_round + std::min<uint64_t>(uint64_t{1} << doublings, kMaxRetryBackoffRounds) - 1;
}

void ComputeLoop::ReportProblem(const std::string& job, uint64_t round, const std::string& reason) {
  Retry& retry = retries_[job];
  retry.failures = std::min(retry.failures + 1, 1000);
  retry.retry_at_round = RetryAfterRound(round, retry.failures);
  board_->SetProblem(job, round, reason, UnixMillisNow());
}

void ComputeLoop::MaybeRetry(const std::string& job, uint64_t committed_round) {
  auto it = retries_.find(job);
  if (it == retries_.end() || committed_round < it->second.retry_at_round) return;
  it->second.retry_at_round = std::numeric_limits<uint64_t>::max();  // once: the failures in a row stay
  board_->ClearProblem(job);
  spdlog::info(
      "{}: {}: the job went on without this worker: it tries again when next selected ({} failure(s) in a row)", name_,
      JobRound(job, committed_round), it->second.failures);
}

Status ComputeLoop::HandleRoundStart(const v1::RoundStart& start) {
  const std::string& job = start.job_id();
  const uint64_t round = start.round();
  if (round == 0 || start.committed_round() + 1 != round)
    return Status::InvalidArgument(peer_ + " sent committed_round " + std::to_string(start.committed_round()) +
                                   " (must be round - 1); ignored");
  if (uploader_->HasUpload(job, round)) {
    spdlog::info("{}: {}: repeated RoundStart: sending the same upload again", name_, JobRound(job, round));
    board_->SetActivity("uploading", job, round);
    return uploader_->Send(job);
  }
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(start.job_spec_yaml(), "job " + job + " spec"));
  board_->SetActivity("syncing", job, round);
  TRIB_ASSIGN_OR_RETURN(JobReplica * existing, sync_->Ensure(job, spec));
  if (existing->round() > start.committed_round()) {
    spdlog::warn("{}: {}: stale RoundStart: the replica already reflects round {}; ignored", name_,
                 JobRound(job, round), existing->round());
    return Status::OK();
  }
  // Sync; a replica whose hash disagrees is rebuilt once from the base model by catch-up.
  TRIB_ASSIGN_OR_RETURN(JobReplica * replica, sync_->SyncTo(job, spec, start.committed_round(), start.weights_hash()));
  if (replica->method_info().dense_payload && replica->state_bytes() > options_.max_dense_payload_bytes)
    return Status::FailedPrecondition("refusing the tasklet: the " + spec.mode + " payload would be " +
                                      std::to_string(replica->state_bytes()) + " bytes, above this worker's " +
                                      std::to_string(options_.max_dense_payload_bytes) +
                                      " byte limit (use mode ferret or fewer trainable parameters)");
  if (start.has_island()) return TrainInIsland(*replica, start);
  return TrainAndUpload(*replica, round);
}

Status ComputeLoop::TrainInIsland(JobReplica& replica, const v1::RoundStart& start) {
  const std::string& job = replica.job_id();
  const uint64_t round = start.round();
  board_->SetActivity("training", job, round);
  const auto started = Clock::now();
  if (options_.before_tasklet) options_.before_tasklet(job, round);
  Result<TaskletResult> result = island_->Run(replica, start);
  if (!result.ok()) return result.status().WithContext("island round failed");
  const double train_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const v1::IslandAssignment& island = start.island();
  spdlog::info("{}: {}: island {} trained {} steps in {:.2f} s (island loss {:.4f}, {} rows, payload {} bytes)", name_,
               JobRound(job, round), island.island_id(), result->local_steps, train_seconds, result->train_loss,
               result->num_samples, result->payload.size());
  if (island.rank() != 0) return Status::OK();  // the leader uploads the island's pseudo-gradient
  TRIB_RETURN_IF_ERROR(uploader_->Prepare(replica, round, *result, train_seconds));
  board_->SetActivity("uploading", job, round);
  return uploader_->Send(job);
}

Status ComputeLoop::TrainAndUpload(JobReplica& replica, uint64_t round) {
  if (replica.spec().secure_aggregation.enabled) return TrainAndAggregateSecurely(replica, round);
  const std::string& job = replica.job_id();
  board_->SetActivity("training", job, round);
  const auto started = Clock::now();
  Result<TaskletResult> result = RunTasklet(replica, round);
  if (!result.ok()) return result.status().WithContext("tasklet failed");
  const double train_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("{}: {}: trained {} steps on {} rows in {:.2f} s (loss {:.4f}, payload {} bytes)", name_,
               JobRound(job, round), result->local_steps, result->num_samples, train_seconds, result->train_loss,
               result->payload.size());
  TRIB_RETURN_IF_ERROR(uploader_->Prepare(replica, round, *result, train_seconds));
  board_->SetActivity("uploading", job, round);
  return uploader_->Send(job);
}

Status ComputeLoop::TrainAndAggregateSecurely(JobReplica& replica, uint64_t round) {
  const std::string& job = replica.job_id();
  if (!secagg_->HasResult(job, round)) {
    board_->SetActivity("training", job, round);
    const auto started = Clock::now();
    Result<TaskletResult> result = RunTasklet(replica, round);
    if (!result.ok()) return result.status().WithContext("tasklet failed");
    const double train_seconds = std::chrono::duration<double>(Clock::now() - started).count();
    spdlog::info("{}: {}: trained {} steps on {} rows in {:.2f} s (loss {:.4f}); secure aggregation next", name_,
                 JobRound(job, round), result->local_steps, result->num_samples, train_seconds, result->train_loss);
    secagg_->Keep(job, round, std::move(*result), train_seconds);
  } else {
    spdlog::info("{}: {}: repeated RoundStart: joining the round's session with the kept result", name_,
                 JobRound(job, round));
  }
  board_->SetActivity("uploading", job, round);
  return secagg_->Run(replica, round);
}

Result<TaskletResult> ComputeLoop::RunTasklet(JobReplica& replica, uint64_t round) {
  if (options_.before_tasklet) options_.before_tasklet(replica.job_id(), round);
  return replica.RunRound(round, options_.worker_id);
}

Status ComputeLoop::HandleRoundCommitted(const v1::RoundCommitted& committed) {
  Status status = sync_->OnRoundCommitted(committed);
  uploader_->ForgetCommitted(committed.job_id(), committed.round());
  secagg_->ForgetCommitted(committed.job_id(), committed.round());
  if (committed.job_finished()) sync_->FinishJob(committed.job_id());
  return status;
}

}  // namespace tributary
