// The coordinator's HTTP endpoint (default port 7401): health and readiness probes for init
// systems and orchestrators, Prometheus metrics, and a read-only JSON view of jobs.
//
// Routes (GET and HEAD only; any other method on a known route is 405 with `Allow: GET, HEAD`):
//   /healthz          200 "ok" while the process serves requests (liveness)
//   /readyz           200 "ready", or 503 "not ready: <what>; <what>" from the readiness callback
//   /metrics          Prometheus text format 0.0.4 from the metrics callback
//   /api/jobs         JSON from the job-list callback
//   /api/jobs/<id>    JSON from the job callback; 404 {"error": ..., "job": <id>} for unknown ids
// Any other path is 404 with a JSON error. A route whose callback is not set answers 503.
//
// The server knows nothing about coordinator state: the daemon plugs its state in through the
// std::function callbacks, which run on httplib's worker threads and must be thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace tributary {

struct HttpCallbacks {
  // Names of the components that are not ready ("job store not open"); empty when ready.
  std::function<std::vector<std::string>()> not_ready;
  // Prometheus text format 0.0.4 (e.g. CoordinatorMetrics::RenderText).
  std::function<std::string()> metrics_text;
  // All jobs as JSON.
  std::function<Result<nlohmann::json>()> list_jobs;
  // One job as JSON; a NotFound status means the id is unknown (404).
  std::function<Result<nlohmann::json>(const std::string& job_id)> get_job;
};

class HttpServer {
 public:
  explicit HttpServer(HttpCallbacks callbacks);
  ~HttpServer();  // stops the server
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (port 0 picks a free port; see port()) and serves on a background thread.
  // IOError naming host:port when the address cannot be bound; FailedPrecondition when running.
  Status Start(const std::string& host, int port);

  // Stops accepting, finishes in-flight requests and joins the thread. Idempotent; the server can
  // be started again afterwards.
  void Stop();

  bool running() const;
  // The bound port while running (the chosen one when Start was given 0); 0 when stopped.
  int port() const;

 private:
  void RegisterRoutes(httplib::Server& server);

  const HttpCallbacks callbacks_;
  mutable std::mutex mutex_;  // guards the fields below against concurrent Start/Stop
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tributary
