// The coordinator daemon's state (coordinator.h): its components — the worker registry, the bulk
// objects, the upload intake and one JobRunner per job — and the glue around them: coordinator.cc
// (socket loop, dispatch, worker messages, HTTP view) and coordinator_api.cc (CLI requests).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/task_queue.h"
#include "checkpoint/store.h"
#include "coordinator/bulk_objects.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"
#include "coordinator/job_runner.h"
#include "coordinator/metrics.h"
#include "coordinator/registration_writer.h"
#include "coordinator/upload_intake.h"
#include "coordinator/worker_logs.h"
#include "coordinator/worker_registry.h"
#include "transport/channel.h"
#include "transport/multistream_serve.h"

namespace tributary {

// A copy of `in` (without bulk frames) for a reply that comes later, from a task queue's `done`.
inline std::shared_ptr<transport::Incoming> KeepRequest(const transport::Incoming& in) {
  auto request = std::make_shared<transport::Incoming>();
  request->peer = in.peer;
  request->message.envelope = in.message.envelope;
  return request;
}

struct Coordinator::Impl {
  CoordinatorOptions options;
  std::string coordinator_id;
  int64_t started_ms = 0;
  std::unique_ptr<checkpoint::CheckpointStore> store;
  std::unique_ptr<transport::Server> server;
  CoordinatorMetrics metrics;
  BulkObjects bulk;
  std::unique_ptr<WorkerRegistry> workers;
  std::unique_ptr<RegistrationWriter> registrations;  // Register's records, written off the loop
  std::map<std::string, std::unique_ptr<JobRunner>> jobs;
  // Submitted jobs are built here (model read, initial snapshot written), one at a time, off the loop. After
  // `jobs`: destroyed first, a job being built is dropped before the rest goes.
  TaskQueue submissions{"submissions"};
  std::unique_ptr<UploadIntake> uploads;
  std::unique_ptr<ProbeServer> probe_server;  // uplink probes' target (coordinator_probes.cc); null: none
  // Multistream offers (coordinator_multistream.cc); null when coordinator.multistream_min_bytes is 0. After
  // `metrics` and `bulk`: its threads report to the metrics until it is destroyed.
  std::unique_ptr<transport::MultistreamServer> multistream;
  WorkerLogs worker_logs;           // lines workers shipped per job (`tributary logs JOB --worker W`)
  int64_t last_log_refusal_ms = 0;  // refused WorkerLogLines are logged at most once a minute

  // What the HTTP callbacks read (they run on other threads), rebuilt when a component's version moved.
  std::mutex view_mu;
  nlohmann::json jobs_view = nlohmann::json::array();  // job objects (JobStatusJson)
  std::map<std::string, nlohmann::json> job_details;   // job id -> JobDetailJson
  std::vector<std::string> not_ready;
  uint64_t published_version = 0;
  int64_t view_ms = 0;        // when PublishView last ran
  int64_t view_build_ms = 0;  // how long it took: the next waits 20 times as long
  int64_t alive_workers = 0;
  std::string status_line;  // the last one given to options.hooks.status
  uint64_t status_version = UINT64_MAX;
  int64_t status_alive = -1;
  // WorkersViewJson, built on the loop only when the HTTP endpoint asks for it (it covers every worker):
  // a request counts itself in workers_view_asked and waits until the loop served that many.
  nlohmann::json workers_view;
  uint64_t workers_view_asked = 0;   // under view_mu
  uint64_t workers_view_served = 0;  // under view_mu
  std::condition_variable workers_view_ready;
  uint64_t workers_view_version = 0;
  int64_t workers_view_ms = 0;
  int64_t workers_view_build_ms = 0;  // how long the last rebuild took: the next one waits 20 times as long
  int64_t last_tick_ms = 0;           // Tick: a loop that stalled does not count against the workers' heartbeats
  std::unique_ptr<PeerRateLimiter> rate_limiter;
  int64_t rate_reports_ms = 0;  // refusals are logged at most once a second (and per peer less often)
  // Last, so it is stopped first: its callbacks read the view and the metrics.
  std::unique_ptr<HttpServer> http;

  // ---- coordinator.cc ----
  // What every JobRunner is given.
  JobServices Services();
  // Loads every stored job (resuming the running ones).
  Status LoadJobs();
  // Serves the HTTP endpoint (coordinator.http_listen) from the published view.
  Status StartHttp();
  void Handle(transport::Incoming& in);
  void HandleRegister(const transport::Incoming& in);
  void HandleHeartbeat(const transport::Incoming& in);
  void HandleCatchUp(const transport::Incoming& in);
  void HandleSecAgg(const transport::Incoming& in);
  void HandleIslandStore(const transport::Incoming& in);
  // ---- coordinator_probes.cc ----
  // Listens for uplink probes on the host of options.listen (any free port); logs and goes on without.
  void StartProbeServer();
  void HandleProbeReport(const transport::Incoming& in);
  // ---- coordinator_multistream.cc ----
  // Validates the multistream options and starts the MultistreamServer (none when they turn it off).
  Status StartMultistream();
  // A MultistreamRequest: offers a served object over parallel TCP streams, or refuses with an Error.
  void HandleMultistreamRequest(const transport::Incoming& in);
  void Tick(int64_t now_ms);
  void Reply(const transport::Incoming& request, transport::Envelope reply);
  void ReplyError(const transport::Incoming& request, const Status& status);
  JobRunner* FindJob(const std::string& job_id);
  // Rebuilds the HTTP view and the job gauges when a job or the registry changed since the last one.
  void PublishViewIfChanged();
  void PublishView();
  // Gives options.hooks.status the summary line when the jobs or the alive workers changed.
  void ReportStatus();

  // ---- coordinator_api.cc ----
  void HandleSubmit(const transport::Incoming& in);
  void HandleListJobs(const transport::Incoming& in);
  void HandleListWorkers(const transport::Incoming& in);
  void HandleGetJob(const transport::Incoming& in);
  void HandleStopJob(const transport::Incoming& in);
  void HandleFetchLogs(const transport::Incoming& in);
  void HandleExport(const transport::Incoming& in);
  // Answers an ExportModel request once its export finished: the files offered as bulk objects, or the error.
  void ReplyExport(const transport::Incoming& in, const Result<JobRunner::Exported>& exported, uint32_t round);
  // A worker's log lines (WorkerLogLines); FetchLogs with a worker_id reads them.
  void HandleWorkerLogLines(const transport::Incoming& in);
  void HandleFetchWorkerLogs(const transport::Incoming& in);
  // Answers the HTTP requests waiting for the workers view (/api/workers): rebuilt when the registry's liveness
  // moved or a second passed, at most 4 times a second (less often when a build is slow).
  void ServeWorkersView(int64_t now_ms);
  void BuildWorkersView(int64_t now_ms);
};

}  // namespace tributary
