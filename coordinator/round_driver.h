// RoundDriver: one federated job's round state machine on the coordinator, without networking:
// select -> assign -> collect until everyone reported or the deadline passed with a quorum ->
// aggregate (the job's method through the aggregator seam, federation/aggregator.h) -> commit ->
// apply to the coordinator's global replica -> broadcast.
//
// Durability: every accepted upload is logged (CheckpointStore::AcceptUpdate) before it counts, and
// every round is committed (CommitRound: participants, aggregate, metrics, weights hash) BEFORE the
// caller gets anything to broadcast. A driver destroyed at any moment is rebuilt by Resume from the
// store: latest snapshot + replay of the committed rounds after it (each checked against its logged
// weights hash) + the already-accepted uploads of the open round.
//
// The global replica is the round's trainable state (federation/replica_state.h): the model parameter
// arena, or the LoRA adapter arena for methods that train adapters. Not thread-safe: one caller drives
// one job.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "checkpoint/store.h"
#include "coordinator/cluster_plan.h"
#include "coordinator/cluster_round.h"
#include "coordinator/job_model.h"
#include "engine/arena.h"
#include "federation/aggregator.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "scheduler/scheduler.h"

namespace tributary {

struct RoundStart {
  uint32_t round = 0;
  std::vector<std::string> participants;  // ascending worker id: every worker that trains (gets RoundStart)
  // Who uploads (ascending): the participants, or in cluster mode the island leaders.
  std::vector<std::string> uploaders;
  std::vector<RoundIsland> islands;  // cluster mode: the round's islands (coordinator/cluster_round.h)
  int64_t local_steps = 0;           // H: train.local_steps, or in cluster mode with auto the plan's
  std::string codec;                 // cluster.codec auto: this round's codec; "" = the job's
  std::string outer_reason;          // why this H and codec, when either is auto
  int64_t started_ms = 0;
  int64_t deadline_ms = 0;
};

struct Upload {
  std::string job_id;
  std::string worker_id;
  uint32_t round = 0;
  std::vector<uint8_t> payload;
  uint64_t num_samples = 0;
  double train_loss = 0;
  int64_t received_ms = 0;
  uint64_t island_bytes = 0;  // cluster mode: what the leader's island sent inside itself this round
};

enum class UploadOutcome {
  kAccepted,   // validated and logged
  kDuplicate,  // this worker's update of the open round was already logged: no-op (the first one wins)
  kLate,       // the round is already committed: no-op
};
const char* UploadOutcomeName(UploadOutcome outcome);

// What CloseRound committed and what to broadcast.
struct CommittedRound {
  uint32_t round = 0;
  std::vector<uint8_t> aggregate;  // the downlink payload (apply with the method's Apply)
  std::vector<checkpoint::RoundParticipant> participants;
  uint64_t weights_hash = 0;  // of the global replica after applying the round
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  uint64_t island_bytes = 0;  // cluster mode: inside the islands (bytes_up and bytes_down cross them)
  double mean_train_loss = 0;
  double heldout_loss = 0;  // NaN when not evaluated
  bool job_finished = false;
};

// A round being committed in three steps, so that its slow part can run off the caller's thread:
// BeginClose (or BeginExternalClose) -> ComputeClose -> FinishClose. CloseRound does all three in turn.
struct RoundClose {
  // BeginClose: the round, bytes and losses; ComputeClose adds the aggregate (unless external), the
  // participants' weights and scores, the weights hash and the held-out loss.
  CommittedRound out;
  std::vector<checkpoint::UpdateRecord> updates;  // the logged uploads (none for an external aggregate)
  bool external = false;                          // out.aggregate and out.participants came from outside
  std::shared_ptr<Arena> next;                    // ComputeClose: the global replica after the round
};

// A round aggregated outside the driver (secure aggregation: the coordinator never holds an update).
struct ExternalAggregate {
  std::vector<uint8_t> aggregate;  // the method's aggregate format, as a plain round's
  std::vector<checkpoint::RoundParticipant> participants;
  // Per included client: worker, num_samples, train loss and received time, with an EMPTY payload.
  std::vector<checkpoint::UpdateRecord> metadata;
  uint64_t bytes_up = 0;
};

class RoundDriver {
 public:
  // Optional held-out evaluation of the global replica after a round is applied (before it is committed,
  // so the loss is part of the round record); called every spec.eval_every rounds.
  using Evaluator = std::function<Result<double>(const Arena& global)>;

  // A new job: stores the job record (RUNNING, spec.source_text as its YAML, the submit token) and a
  // snapshot of the initial trainable state as round 0. AlreadyExists when the job id or token is taken.
  static Result<std::unique_ptr<RoundDriver>> Create(checkpoint::CheckpointStore* store, const std::string& job_id,
                                                     const JobSpec& spec, const Arena& initial, int64_t now_ms,
                                                     const std::string& submit_token = "");
  // An existing job (after a restart): rebuilds the global replica from the latest snapshot plus the
  // committed rounds after it (Corruption when a replayed round does not reproduce its logged hash) and
  // reloads the accepted uploads of the open round; the deadline history is rebuilt from the logged upload
  // times of the last rounds. Call StartRound next: it re-derives the same
  // participants (sampling depends only on job seed, round and inventory) and keeps those uploads.
  static Result<std::unique_ptr<RoundDriver>> Resume(checkpoint::CheckpointStore* store, const std::string& job_id,
                                                     const JobSpec& spec);

  void SetEvaluator(Evaluator evaluator) { evaluator_ = std::move(evaluator); }
  // Host memory a worker needs for this job's tasklets (capability filter; 0 = no requirement).
  void SetMinWorkerMemory(int64_t bytes) { min_worker_memory_ = bytes; }
  // Cluster mode: what was measured for this job's workers (links, compute); the next StartRound and
  // ReformIslands plan with it.
  void SetMeasurements(PlanMeasurements measured) { measured_ = std::move(measured); }
  const PlanMeasurements& measurements() const { return measured_; }

  const std::string& job_id() const { return job_id_; }
  const JobSpec& spec() const { return spec_; }
  const FederatedMethod& method() const { return *method_; }
  uint32_t last_committed_round() const { return last_committed_; }
  bool finished() const { return last_committed_ >= static_cast<uint64_t>(spec_.rounds); }
  bool round_open() const { return round_open_; }
  const RoundStart& current() const { return current_; }
  const Arena& global() const { return *global_; }
  uint64_t global_hash() const;
  // Workers whose upload of the open round is logged (ascending).
  std::vector<std::string> reported() const;
  // Cluster mode: the plan made when the open (or last) round was opened — its islands' rings are the
  // members' gloo ranks and its leaders upload — or null when none could be made (plan_error() says why).
  const ClusterPlan* plan() const { return plan_ ? &*plan_ : nullptr; }
  uint64_t plan_round() const { return plan_round_; }
  const std::string& plan_error() const { return plan_error_; }
  // What the last StartRound's plan changed from the one before ("first plan", "" when nothing changed;
  // coordinator/cluster_plan.h DescribePlanChange), for the job log.
  const std::string& plan_change() const { return plan_change_; }
  // Why the open round's members train the batches they do (coordinator/cluster_batches.h ApplyPlanBatches).
  const std::string& batch_reason() const { return batch_reason_; }

  // Opens round last_committed_round() + 1 (or re-opens it after Resume): participants from the
  // scheduler's sampling with the job seed, deadline from the measured tasklet durations.
  // FailedPrecondition when the job is finished, a round is already open, or too few workers are eligible.
  Result<RoundStart> StartRound(const std::vector<WorkerInventory>& inventory, int64_t now_ms);

  // The checks of an upload that need no payload, so a caller can refuse an upload before it receives
  // a large payload (a bulk pull): kLate when `round` is committed, kDuplicate when this worker's upload
  // of the open round is logged, kAccepted when the payload may be taken (AcceptUpload still validates
  // it). Errors naming the worker: Unavailable when `round` is the next one but not open yet (the
  // worker may send it again later); InvalidArgument for another round, a worker that is not a
  // participant, or a payload_size above the method's MaxPayloadBytes() (or, for dense methods, not
  // exactly that size). AcceptUpload runs these same checks first.
  Result<UploadOutcome> CheckUpload(const std::string& worker_id, uint64_t round, uint64_t payload_size) const;

  // Validates and logs one upload: CheckUpload, then (InvalidArgument, naming the worker) unknown job,
  // payload that does not parse / has the wrong shape / is not finite, zero samples under samples
  // weighting. Duplicates and late uploads are no-ops reported as such.
  Result<UploadOutcome> AcceptUpload(const Upload& upload);

  // kOpen while waiting (and while the round is closing); kComplete / kQuorumReached when CloseRound may run;
  // kQuorumMissed when the deadline passed below the quorum (the caller aborts or calls AbandonRound and retries).
  RoundCloseState ReadyToClose(int64_t now_ms) const;

  // Aggregates the logged uploads (fp64, ascending worker id), commits the round, THEN applies it to
  // the global replica; snapshots every spec.snapshot_every rounds. FailedPrecondition when ReadyToClose
  // is neither kComplete nor kQuorumReached. (BeginClose, ComputeClose, FinishClose, TakeSnapshotIfDue.)
  Result<CommittedRound> CloseRound(int64_t now_ms);

  // Commits the open round with an aggregate computed elsewhere (secure aggregation): logs each included
  // client's metadata record (empty payload), then commits, applies and snapshots as CloseRound does.
  // FailedPrecondition when no round is open.
  Result<CommittedRound> CommitExternalRound(ExternalAggregate external, int64_t now_ms);

  // CloseRound's first step (FailedPrecondition as CloseRound): reads the round's logged uploads. The round
  // is then closing until FinishClose or CancelClose: CheckUpload answers Unavailable for a new upload,
  // ReformIslands changes nothing and StartRound refuses, so that nothing ComputeClose reads changes.
  Result<std::shared_ptr<RoundClose>> BeginClose(int64_t now_ms);
  // CommitExternalRound's first step: logs the included clients' metadata records; the round is closing.
  Result<std::shared_ptr<RoundClose>> BeginExternalClose(ExternalAggregate external);
  // The slow step, which may run on another thread while the round is closing (nothing else may call the
  // driver's non-const methods meanwhile): aggregates, applies the aggregate to a copy of the global
  // replica, hashes it and evaluates it. Errors fail the round as CloseRound's do.
  Status ComputeClose(RoundClose* close) const;
  // Commits the computed round, then makes close.next the global replica. No snapshot: TakeSnapshotIfDue.
  // Unavailable (the store is not writable) leaves the round closing: call CancelClose and close it again
  // later (an Apply that carries state restarts from the state before the round: federation/method.h).
  Result<CommittedRound> FinishClose(const RoundClose& close, int64_t now_ms);
  // The closing round is open again (its compute failed or its commit was refused).
  void CancelClose() { closing_ = false; }
  bool closing() const { return closing_; }
  // Stores `state` as the snapshot of committed `round` when spec.snapshot_every asks for one and it is not
  // stored yet. Safe on another thread (it reads only `state` and the spec).
  Status TakeSnapshotIfDue(uint32_t round, const Arena& state, int64_t now_ms) const;
  // The global replica, shared: a committed round replaces it rather than changing it, so a reader on
  // another thread (a snapshot, an export) keeps a consistent state.
  std::shared_ptr<const Arena> shared_global() const { return global_; }

  // Forgets the open round's participants so StartRound can re-plan it (uploads already logged stay).
  void AbandonRound() { round_open_ = closing_ = false; }

  // Cluster mode: re-forms the open round's islands that lost a member (not in `alive`) before their
  // leader uploaded (coordinator/cluster_round.h ReformIslands), updating participants and uploaders.
  // Returns one log line per changed island; empty when nothing changed or no round is open.
  std::vector<IslandChange> ReformIslands(const std::vector<WorkerInventory>& inventory);

  // What a replica at committed round from_round must apply to reach to_round (<= last committed):
  // the logged rounds, or — when it is more than snapshot_every rounds behind and a snapshot newer than
  // from_round exists — that snapshot plus the rounds after it.
  Result<CatchUpPlan> CatchUp(uint32_t from_round, uint32_t to_round);

 private:
  RoundDriver(checkpoint::CheckpointStore* store, std::string job_id, JobSpec spec);
  // Cluster mode: the open round's islands (StartRound), then participants and uploaders from them.
  Status PlanIslands(const std::vector<WorkerInventory>& inventory, int64_t now_ms);
  // Plans the open round's islands (ring, leader, shares, predicted times) and orders their members by ring.
  void PlanOpenRound(const std::vector<WorkerInventory>& inventory);
  void SetIslandRoles();
  // The open round's H and codec (coordinator/cluster_plan.h ChooseRoundOuter), set on the method.
  Status ChooseRoundOuter();
  Status ValidatePayload(const Upload& upload) const;
  Result<std::vector<uint8_t>> Aggregate(const std::vector<checkpoint::UpdateRecord>& updates,
                                         std::vector<checkpoint::RoundParticipant>* participants) const;
  // ComputeClose, FinishClose and TakeSnapshotIfDue in turn (CloseRound's and CommitExternalRound's tail).
  Result<CommittedRound> CloseNow(RoundClose* close, int64_t now_ms);
  std::string Context(const std::string& worker_id, uint32_t round) const;

  checkpoint::CheckpointStore* store_;
  std::string job_id_;
  JobSpec spec_;
  std::shared_ptr<Arena> global_;  // replaced, never changed, once a round commits (shared_global)
  uint32_t last_committed_ = 0;
  bool round_open_ = false;
  bool closing_ = false;  // between BeginClose and FinishClose / CancelClose
  RoundStart current_;
  std::map<std::string, int64_t> reported_;  // worker -> received_ms, of round last_committed_ + 1
  std::unique_ptr<Scheduler> scheduler_;
  RoundDeadline deadline_;
  Evaluator evaluator_;
  std::unique_ptr<FederatedMethod> method_;
  std::unique_ptr<Aggregation> aggregation_;
  int64_t min_worker_memory_ = 0;
  PlanMeasurements measured_;
  std::optional<PlanJob> plan_job_;  // from the spec and the model, made at the first plan
  std::optional<ClusterPlan> plan_;
  uint64_t plan_round_ = 0;
  std::string plan_error_, plan_change_, batch_reason_;
  uint64_t next_incarnation_ = 0;  // cluster mode: from the clock at the first plan, then +1 per island formed
};

}  // namespace tributary
