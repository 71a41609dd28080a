// Internal state of the coordinator daemon, shared by coordinator.cc (socket loop, worker registry),
// coordinator_jobs.cc (job lifecycle and rounds) and coordinator_api.cc (CLI requests).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "checkpoint/store.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"
#include "coordinator/job_log.h"
#include "coordinator/job_model.h"
#include "coordinator/metrics.h"
#include "coordinator/round_driver.h"
#include "federation/job_spec.h"
#include "scheduler/scheduler.h"
#include "transport/bulk.h"
#include "transport/channel.h"

namespace tributary {

int64_t UnixMillis();

struct WorkerEntry {
  std::string worker_id;
  std::string routing_id;  // of the control connection (pushes go there)
  std::string public_key;  // CURVE key it registered with ("" when insecure)
  std::string hostname;
  std::string peer;  // PeerInfo::Describe, for logs
  WorkerInventory inventory;
  std::string state;  // from the last heartbeat
  std::vector<v1::ReplicaState> replicas;
  bool declared_dead = false;
};

struct JobEntry {
  std::string job_id;
  JobSpec spec;
  checkpoint::JobRecord record;         // cached; the store is the truth
  std::unique_ptr<RoundDriver> driver;  // while RUNNING
  std::unique_ptr<JobModel> model;      // while RUNNING (evaluation, exports)
  std::unique_ptr<JobLog> log;
  std::vector<v1::RoundSummary> rounds;  // committed rounds, in order
  uint64_t dense_state_bytes = 0;
  uint64_t bytes_pulled = 0;  // upload payloads pulled as bulk objects (all rounds)
  std::string weights_hash;   // of the last committed round's state
  // The open round: to whom RoundStart went (worker -> routing id it was sent to).
  std::map<std::string, std::string> round_start_sent;
  int64_t round_opened_ms = 0;
  double slowest_train_seconds = 0;  // of the open round's accepted uploads
  std::string last_plan_error;       // logged once per change
  int64_t next_plan_ms = 0;
};

// Where an UploadAck goes: the sender of the UploadUpdate (inline, or after its payload was pulled).
struct UploadReplyTo {
  std::string routing_id;
  uint64_t message_id = 0;
  std::string peer;  // PeerInfo::Describe, for logs
};

// A dense upload whose payload the coordinator pulls from the worker (UploadUpdate.payload_object_id).
struct PendingPull {
  UploadReplyTo reply_to;
  v1::UploadUpdate upload;  // payload empty
  std::unique_ptr<transport::BufferSink> sink;
  std::unique_ptr<transport::BulkReceiver> receiver;
  int64_t last_progress_ms = 0;
  int resets = 0;
};

struct Coordinator::Impl {
  CoordinatorOptions options;
  std::string coordinator_id;
  std::unique_ptr<checkpoint::CheckpointStore> store;
  std::unique_ptr<transport::Server> server;
  std::unique_ptr<HttpServer> http;
  CoordinatorMetrics metrics;
  transport::BulkSender bulk{"coordinator"};
  std::map<std::string, int64_t> bulk_expiry_ms;  // object id -> when it is dropped
  std::map<std::string, PendingPull> pulls;       // worker id + "/" + object id -> pull in progress

  std::map<std::string, WorkerEntry> workers;
  std::map<std::string, std::unique_ptr<JobEntry>> jobs;
  int64_t started_ms = 0;

  // What the HTTP callbacks read (they run on other threads).
  std::mutex view_mu;
  nlohmann::json jobs_view = nlohmann::json::array();
  std::vector<std::string> not_ready;

  // ---- coordinator.cc ----
  void Handle(transport::Incoming& in);
  void HandleRegister(const transport::Incoming& in);
  void HandleHeartbeat(const transport::Incoming& in);
  // The registered worker a request claims to come from, checked against the sender's key.
  Result<WorkerEntry*> AuthorizedWorker(const std::string& worker_id, const transport::PeerInfo& peer);
  void MarkDeadWorkers(int64_t now_ms);
  std::vector<WorkerInventory> AliveInventory() const;
  void Reply(const transport::Incoming& request, transport::Envelope reply);
  void ReplyError(const transport::Incoming& request, const Status& status);
  void PublishView();
  void ExpireBulkObjects(int64_t now_ms);

  // ---- coordinator_jobs.cc ----
  Status LoadJobs();
  // Builds a running job's driver, model, evaluator (Create for a new job, Resume after a restart).
  Status StartJob(JobEntry* job, bool resume);
  void FailJob(JobEntry* job, const Status& status);
  void TickJobs(int64_t now_ms);
  void TickJob(JobEntry* job, int64_t now_ms);
  void SendRoundStart(JobEntry* job, const WorkerEntry& worker);
  void CloseRound(JobEntry* job, int64_t now_ms);
  void HandleUpload(const transport::Incoming& in);
  // Starts (or, for a re-sent UploadUpdate, resumes) pulling an upload's bulk payload.
  void StartPull(const transport::Incoming& in, JobEntry* job);
  void HandleBulkChunk(const transport::Incoming& in);
  // Re-requests stalled pulls; drops those that keep stalling (the worker is told to retry).
  void TickPulls(int64_t now_ms);
  void RequestChunks(PendingPull& pull);
  void SendUploadAck(const UploadReplyTo& to, transport::Envelope reply);
  void RefuseUpload(const UploadReplyTo& to, const v1::UploadUpdate& u, const std::string& reason, const char* metric,
                    bool retry);
  // The normal acceptance path of an upload with its payload bytes (inline or pulled).
  void AcceptUploadPayload(const UploadReplyTo& to, const v1::UploadUpdate& u, const std::string& payload, bool pulled);
  // Registers an aggregate as bulk object "aggregate/<job>/<round>" (expiring like snapshots).
  Status ServeAggregate(const std::string& job_id, uint64_t round, const std::string& bytes, std::string* object_id);
  void HandleCatchUp(const transport::Incoming& in);
  JobEntry* FindJob(const std::string& job_id);
  v1::JobStatus StatusOf(const JobEntry& job) const;
  void LogJob(JobEntry* job, const std::string& line, bool warn = false);

  // ---- coordinator_api.cc ----
  void HandleSubmit(const transport::Incoming& in);
  void HandleListJobs(const transport::Incoming& in);
  void HandleGetJob(const transport::Incoming& in);
  void HandleStopJob(const transport::Incoming& in);
  void HandleFetchLogs(const transport::Incoming& in);
  void HandleExport(const transport::Incoming& in);
  Result<std::string> CreateJob(const JobSpec& spec, const std::string& submit_token);
};

}  // namespace tributary
