// The coordinator's HTTP endpoint (default port 7401): health and readiness probes for init
// systems and orchestrators, Prometheus metrics, a read-only JSON view of jobs and workers, and the
// dashboard page that draws that view (docs/dashboard.md).
//
// Routes (GET and HEAD only; any other method on a known route is 405 with `Allow: GET, HEAD`):
//   /healthz          200 "ok" while the process serves requests (liveness)
//   /readyz           200 "ready", or 503 "not ready: <what>; <what>" from the readiness callback
//   /metrics          Prometheus text format 0.0.4 from the metrics callback
//   /api/jobs         JSON from the job-list callback
//   /api/jobs/<id>    JSON from the job callback; 404 {"error": ..., "job": <id>} for unknown ids
//   /api/workers      JSON from the workers callback
//   /                 the dashboard page; /dashboard/<file> its script and style sheet (embedded files)
// Any other path is 404 with a JSON error. A route whose callback is not set answers 503. Every
// response carries a Content-Security-Policy that lets a page load only from this server.
//
// With a bearer token set, /metrics and /api/* answer 401 (`WWW-Authenticate: Bearer`) unless the
// request has `Authorization: Bearer <token>`; the probes and the page's static files stay open (the
// page holds no data: it asks /api with the token the user gives it).
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
struct Request;
struct Response;
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
  // The registered workers as JSON (coordinator/job_view.h WorkersViewJson).
  std::function<Result<nlohmann::json>()> list_workers;
};

struct HttpServerOptions {
  // Required on /metrics and /api/* when not empty (compared in constant time).
  std::string bearer_token;
};

// The token in `path` (coordinator.http_token_file) without surrounding whitespace; "" for an empty
// path (no token). InvalidArgument naming the file when it holds no token or one with inner spaces or
// control characters, the read error otherwise.
Result<std::string> LoadHttpToken(const std::string& path);

class HttpServer {
 public:
  explicit HttpServer(HttpCallbacks callbacks, HttpServerOptions options = {});
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
  void RegisterDashboard(httplib::Server& server);
  // True when the request may read a protected route; otherwise fills res with the 401.
  bool Authorized(const httplib::Request& req, httplib::Response& res) const;

  const HttpCallbacks callbacks_;
  const HttpServerOptions options_;
  mutable std::mutex mutex_;  // guards the fields below against concurrent Start/Stop
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tributary
