// JobRunner: one job on the coordinator. It owns the job's spec, its cached record (the store is the
// truth), its RoundDriver and JobModel while it runs, its log and its committed round summaries, and
// drives its rounds from the coordinator's loop: open a round, (re)send RoundStart, take uploads,
// close the round (commit, then broadcast RoundCommitted), re-plan a round that missed its quorum,
// answer catch-up requests, stop, fail, export.
//
// Not thread-safe: the coordinator's loop thread owns every runner (coordinator.h). The slow steps —
// aggregation, the applied state's hash, held-out evaluation, snapshots, exports — run in order on the
// job's own TaskQueue (base/task_queue.h), and their results come back through Tick, so the loop keeps
// answering heartbeats while a round closes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/task_queue.h"
#include "checkpoint/store.h"
#include "coordinator/bulk_objects.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_log.h"
#include "coordinator/job_model.h"
#include "coordinator/link_probes.h"
#include "coordinator/metrics.h"
#include "coordinator/round_driver.h"
#include "coordinator/secagg_round.h"
#include "coordinator/worker_registry.h"
#include "federation/job_spec.h"
#include "transport/channel.h"
#include "transport/link_probe.h"

namespace tributary {

// Unix time in milliseconds (system clock; defined in coordinator.cc).
int64_t UnixMillis();

// What a runner uses and does not own (all outlive it).
struct JobServices {
  const CoordinatorOptions* options = nullptr;  // data_dir, eval_data, inline_payload_bytes
  checkpoint::CheckpointStore* store = nullptr;
  transport::Server* server = nullptr;  // RoundStart and RoundCommitted pushes
  const WorkerRegistry* workers = nullptr;
  BulkObjects* bulk = nullptr;  // aggregates above the inline limit, catch-up snapshots
  CoordinatorMetrics* metrics = nullptr;
  ProbeServer* probe_server = nullptr;  // the coordinator's end of uplink probes; null: uplinks not probed
};

class JobRunner {
 public:
  // A new job: builds its model (and held-out rows), then its round driver, which stores the job
  // record (RUNNING) and the round-0 snapshot; opens the job log and logs the submission. Errors from
  // the model, the eval dataset (not one of coordinator.eval_data), the driver or the store
  // (AlreadyExists for a taken id or submit token); nothing is left running then.
  static Result<std::unique_ptr<JobRunner>> Submit(const JobServices& services, const std::string& job_id,
                                                   const JobSpec& spec, const std::string& submit_token);

  // A stored job, when the coordinator starts: its log, spec and committed round summaries. A RUNNING or
  // PENDING job is resumed (RoundDriver::Resume keeps the open round's accepted uploads) or, when that
  // fails (spec, model, store), recorded as FAILED with the reason. Errors only when the store cannot
  // be read.
  static Result<std::unique_ptr<JobRunner>> Load(const JobServices& services, const checkpoint::JobRecord& record);

  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  const std::string& job_id() const { return job_id_; }
  const JobSpec& spec() const { return spec_; }
  const checkpoint::JobRecord& record() const { return record_; }
  // Whether rounds run (false once the job finished, failed or was stopped).
  bool running() const { return driver_ != nullptr; }
  // Grows whenever what Describe / Detail return may have changed, so a view is rebuilt only then.
  uint64_t version() const { return version_; }

  // The job as the CLI and the HTTP view show it (totals summed from the round summaries).
  v1::JobStatus Describe() const;
  // The job in detail: Describe, the spec, the open round's participants, the committed rounds and
  // the given replicas (WorkerRegistry::ReplicasOf).
  v1::GetJobReply Detail(std::vector<v1::ReplicaState> replicas) const;

  // One step of the round loop. With no round open and `may_plan` (false during the restart grace),
  // opens the next round (while too few workers are eligible: retries every second, logging each new
  // reason once). Then (re)sends RoundStart to the participants that have not reported and did not
  // get it on their current connection, and closes the round when every participant reported, or
  // at the deadline with a quorum; at the deadline below the quorum the round is re-planned. A round
  // that cannot be committed fails the job. Closing runs on the job's task queue: while it does, the
  // round waits, and a later Tick commits it and broadcasts. Tick also finishes exports (ExportAsync).
  void Tick(int64_t now_ms, bool may_plan);

  // The payload-free checks of an upload (RoundDriver::CheckUpload): kAccepted when its payload may be
  // taken. FailedPrecondition "job is <state>" when the job no longer runs; otherwise the driver's
  // outcomes and errors (Unavailable: the round is not open yet).
  Result<UploadOutcome> CheckUpload(const std::string& worker_id, uint64_t round, uint64_t payload_size) const;

  // Validates and logs an upload with its payload (inline, or `pulled` as a bulk object), as of
  // now_ms: the outcomes and errors of CheckUpload and RoundDriver::AcceptUpload. An accepted upload
  // is logged in the job log; call CloseRoundIfComplete after answering the worker.
  Result<UploadOutcome> AcceptUpload(const v1::UploadUpdate& upload, const std::string& payload, bool pulled,
                                     int64_t now_ms);

  // A SecAggRequest of an authorized worker (job_runner_secagg.cc): answered by the open round's session;
  // "pending" for a join while the round is not open yet, "restart" for a session that is over.
  v1::SecAggReply OnSecAgg(const v1::SecAggRequest& request, int64_t now_ms);

  // An island member's rendezvous store request (cluster mode, job_runner_cluster.cc): answered only for
  // the open round's current incarnation of the worker's own island; keys and values are bounded.
  Result<v1::IslandStoreReply> OnIslandStore(const v1::IslandStoreRequest& request);

  // Cluster mode's link probes (job_runner_probes.cc; docs/placement.md, "Measured links"). A worker's
  // ProbeReport, checked against the running campaign: the answer (report_accepted, or report_error
  // naming the worker: a stale campaign, an unknown pair, absurd numbers).
  v1::ProbeAssignment OnProbeReport(const v1::ProbeReport& report, int64_t now_ms);
  // The job's stored link matrix; null before its first campaign.
  const checkpoint::JobLinksRecord* links() const { return links_ ? &*links_ : nullptr; }
  // A pulled upload of `bytes` from `worker_id` took `seconds`: a drift observation (DriftTracker).
  void ObserveUploadGoodput(const std::string& worker_id, uint64_t bytes, double seconds);

  // Closes the open round now when every participant reported (rather than at the next Tick).
  void CloseRoundIfComplete(int64_t now_ms);

  // What a worker's replica at request.from_round() must apply to reach request.to_round() (0 or past
  // the last committed round: the last one), capped per reply (docs/protocol.md): inline aggregates,
  // or bulk objects for aggregates above the inline limit and for a snapshot. The store reads and the bulk
  // objects' loading and checksums run on the job's reads queue (committed rounds and snapshots never change,
  // so any thread may read them); `done` gets the reply from a later Tick.
  using CatchUpDone = std::function<void(const Result<v1::CatchUpReply>& reply)>;
  void CatchUpAsync(const v1::CatchUpRequest& request, CatchUpDone done);

  // Stops a job that has not finished: records FINISHED:STOPPED with `reason` (the open round is
  // abandoned) and logs it. FailedPrecondition when the job already finished; store errors.
  Status Stop(const std::string& reason, int64_t now_ms);

  // Lines from_line.. of the job log (at most max_lines). Unavailable when the log file is not open.
  Result<LogPage> ReadLog(uint64_t from_line, uint32_t max_lines) const;

  // Exports committed `round` (0: the last) as `format` ("safetensors" or "peft") into
  // <data_dir>/exports/<job>/round-<r>-<format>/, once (a finished export is reused), on the job's task
  // queue, which also reads the files for their bulk checksums (object ids export/<job>/<round>/<format>/<file>):
  // `done` gets them and the round from a later Tick (or at once when the request is refused). InvalidArgument
  // for a round that is not committed or an unknown format, FailedPrecondition for peft of a job that trains no
  // adapters; model, store and file errors.
  struct ExportedFile {
    std::string name;  // in the export directory
    std::string object_id;
    uint64_t size = 0;
    transport::PreparedBulkObject object;
  };
  struct Exported {
    std::string dir;
    std::vector<ExportedFile> files;  // by name
  };
  using ExportDone = std::function<void(const Result<Exported>& exported, uint32_t round)>;
  void ExportAsync(uint64_t round, const std::string& format, ExportDone done);

 private:
  JobRunner(const JobServices& services, std::string job_id)
      : services_(services), job_id_(std::move(job_id)), reads_(job_id_ + "-reads"), work_(job_id_) {}

  // Builds the model and the driver (`resume`: RoundDriver::Resume, else Create).
  Status Start(bool resume);
  // Reads the committed rounds' summaries and the dense state size from the store.
  Status LoadRoundSummaries();
  Status OpenLog();
  void Log(const std::string& line, bool warn = false);
  void Fail(const Status& status);
  // Frees the driver and the model (the job finished, failed or was stopped).
  void Release();
  void RefreshRecord();

  bool OpenRound(int64_t now_ms);
  // Cluster mode: logs the opened round's plan when it is the first or changed (with the planner's
  // reasons), or why none could be made.
  void LogPlan(uint32_t round);
  // ---- link probes (job_runner_probes.cc) ----
  // Before a round opens: decides whether to probe (DecideProbes), runs the campaign; false while one runs.
  bool TickProbes(int64_t now_ms);
  void StartProbeCampaign(ProbeDecision decision, std::vector<std::string> members, int64_t now_ms);
  // Sends the next probes, fails those past their deadline; true when every probe is done.
  bool AdvanceProbeCampaign(int64_t now_ms);
  void FailProbe(ProbeCampaign::Probe& probe, const std::string& error, int64_t now_ms);
  void FinishProbeCampaign(int64_t now_ms);
  // Reads the stored matrix (after Start) and hands it to the driver.
  void LoadLinks();
  void ApplyLinks();
  std::vector<WorkerInventory> EligibleInventory() const;
  // Cluster mode: re-forms the islands that lost a member (RoundDriver::ReformIslands), logging each
  // change; false when no island is left and the round was abandoned for a re-plan.
  bool ReformIslands(int64_t now_ms);
  // The open round's island of a worker (null: none, or not cluster mode).
  const RoundIsland* IslandOf(const std::string& worker_id) const;
  // Cluster mode: the open round's islands in /metrics (members, incarnation); islands not in it (or
  // every island, once the job stopped running) show 0 members.
  void PublishIslandMetrics();
  // The open round's islands as GetJobReply shows them.
  void AddIslandStatuses(v1::GetJobReply* reply) const;
  void SendRoundStarts();
  void SendRoundStart(const WorkerEntry& worker);
  // What a RoundStart went to: the routing id, and in cluster mode the island incarnation (a re-formed
  // island's members get a new RoundStart).
  std::string RoundStartKey(const WorkerEntry& worker) const;
  // Starts closing the round (RoundDriver::BeginClose) and posts its slow step; FinishClose follows.
  void CloseRound(int64_t now_ms);
  // Posts a round's ComputeClose on the task queue; its done commits it (FinishClose) and broadcasts.
  void PostClose(std::shared_ptr<RoundClose> close, size_t selected);
  // A committed aggregate's checksum and, above the inline limit, its bulk object, computed off the loop.
  struct AggregateObject {
    std::string checksum;  // "" when not computed
    std::optional<transport::PreparedBulkObject> object;
  };
  void FinishClose(const std::shared_ptr<RoundClose>& close, const std::shared_ptr<RoundDriver>& driver,
                   const Status& computed, const AggregateObject& aggregate, size_t selected,
                   std::chrono::steady_clock::time_point started);
  // The open round stays open until the store can take its commit (Unavailable), logged once.
  void WaitForStorage(const Status& why);
  // The checksum and (above `inline_limit`) the bulk object of an aggregate (any thread).
  static AggregateObject PrepareAggregate(const std::vector<uint8_t>& aggregate, uint64_t inline_limit,
                                          const std::string& object_id);
  std::string AggregateObjectId(uint64_t round) const;
  // After a commit: summary, metrics, broadcast, log lines, and the job's end.
  void OnCommitted(const CommittedRound& committed, const AggregateObject& aggregate, size_t selected, double close_s,
                   int64_t now_ms);
  // ---- secure aggregation (job_runner_secagg.cc) ----
  // The session of a round StartRound just opened (InvalidArgument when the spec does not fit the round).
  Status OpenSecAggSession(const RoundStart& start);
  // Closes stages at their deadlines; commits a finished session; re-plans the round of a failed one.
  void TickSecAgg(int64_t now_ms);
  void CommitSecAgg(int64_t now_ms);
  // Workers that joined the open round's session (they need no further RoundStart).
  std::vector<std::string> SecAggJoined() const;
  // RoundCommitted of `committed` to every alive worker.
  void Broadcast(const CommittedRound& committed, const AggregateObject& aggregate, int64_t now_ms);
  // Serves an aggregate as bulk object "aggregate/<job>/<round>".
  Status OfferAggregate(uint64_t round, std::string bytes, int64_t now_ms, std::string* object_id);
  // Serves a snapshot as bulk object "snapshot/<job>/<round>" and describes it in `reply`.
  Status OfferSnapshot(uint32_t round, int64_t now_ms, v1::CatchUpReply* reply);
  // What CatchUpAsync reads off the loop: the plan, and the bulk objects it needs that were not served when it
  // was asked (object id -> prepared).
  struct CatchUpRead {
    CatchUpPlan plan;
    std::map<std::string, transport::PreparedBulkObject> prepared;
  };
  static Result<CatchUpRead> ReadCatchUp(checkpoint::CheckpointStore* store, const std::string& job_id,
                                         int64_t snapshot_every, uint32_t from_round, uint32_t to_round,
                                         uint64_t inline_limit, const std::set<std::string>& served);
  // The reply to a catch-up from `read`: prepared objects offered, served ones renewed (one that expired in
  // the meantime is read again here).
  Result<v1::CatchUpReply> CatchUpReply(const v1::CatchUpRequest& request, uint32_t to, CatchUpRead read,
                                        int64_t now_ms);
  // The files of an export directory read for their bulk checksums, object ids `id_prefix`/<name> (any thread).
  static Result<Exported> PrepareExportFiles(const std::string& dir, const std::string& id_prefix);

  JobServices services_;
  std::string job_id_;
  JobSpec spec_;
  checkpoint::JobRecord record_;
  // While running. Shared with the task queue's steps, which keep them alive after a stop.
  std::shared_ptr<RoundDriver> driver_;
  std::shared_ptr<JobModel> model_;  // evaluation and exports (used only on the task queue)
  std::unique_ptr<JobLog> log_;
  std::unique_ptr<SecAggRound> secagg_;   // the open round's session, under secure aggregation
  std::vector<v1::RoundSummary> rounds_;  // committed rounds, in order
  uint64_t dense_state_bytes_ = 0;
  uint64_t bytes_pulled_ = 0;  // upload payloads pulled as bulk objects (all rounds)
  std::string weights_hash_;   // of the last committed round's state
  uint64_t version_ = 1;
  // The open round: to whom RoundStart went (worker -> routing id it was sent to).
  std::map<std::string, std::string> round_start_sent_;
  int64_t round_opened_ms_ = 0;
  double slowest_train_seconds_ = 0;  // of the open round's accepted uploads
  std::string storage_wait_;          // why the open round cannot commit (store not writable); "" = it can
  std::string last_plan_error_;       // logged once per change
  std::string last_plan_failure_;     // the cluster planner's, logged once per change
  std::string last_batches_;          // the members' batches (or why none), logged once per change
  std::string last_outer_;            // H and codec when auto (and why), logged once per change
  // Cluster mode: the last opened round's plan, kept after the job ends (in memory: a restarted
  // coordinator shows it again once it re-opens a round).
  std::optional<v1::ClusterPlanView> plan_view_;
  // Cluster mode: each island incarnation's rendezvous keys ("<island>/<incarnation>" -> key -> value).
  std::map<std::string, std::map<std::string, std::string>> island_stores_;
  // Cluster mode: re-formations after a lost member since this runner started, in all and per island.
  uint64_t island_reforms_ = 0;
  std::map<std::string, uint32_t> island_reforms_by_island_;
  std::set<std::string> metric_islands_;  // islands with /metrics series
  int64_t next_plan_ms_ = 0;
  // Cluster mode: the measured links, the campaign in progress, drift observations.
  std::optional<checkpoint::JobLinksRecord> links_;
  std::unique_ptr<ProbeCampaign> campaign_;
  DriftTracker drift_;
  std::map<std::string, std::string> drifted_;  // worker -> the drift line, until re-probed
  // Last: destroyed first, they wait for a running step while the rest is still there. work_ runs the rounds'
  // closes, snapshots and exports in order; reads_ the catch-ups, which must not wait behind an evaluation.
  TaskQueue reads_;
  TaskQueue work_;
};

}  // namespace tributary
