#include "coordinator/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

#include "coordinator/metrics.h"

namespace tributary {
namespace {

constexpr const char* kJsonContentType = "application/json";
constexpr const char* kPlainContentType = "text/plain; charset=utf-8";
constexpr const char* kJobRoutePattern = R"(/api/jobs/([^/]+))";

void SetJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Replace invalid UTF-8 instead of throwing: a job name from a user must not turn into a 500.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", kJsonContentType);
}

void SetText(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, kPlainContentType);
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kNotFound: return 404;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kTimeout: return 504;
    case StatusCode::kPermissionDenied: return 403;
    default: return 500;
  }
}

bool IsKnownPath(const std::string& path) {
  static const std::regex kJobRoute(kJobRoutePattern);
  return path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/api/jobs" ||
         std::regex_match(path, kJobRoute);
}

// Runs a route handler, turning an exception escaping a callback into a 500 with its message.
template <typename Handler>
httplib::Server::Handler Guarded(Handler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const std::exception& e) {
      SetJson(res, 500, {{"error", std::string("internal error: ") + e.what()}});
    } catch (...) {
      SetJson(res, 500, {{"error", "internal error"}});
    }
  };
}

std::string JoinNotReady(const std::vector<std::string>& items) {
  std::string out = "not ready:";
  for (size_t i = 0; i < items.size(); ++i) out += (i == 0 ? " " : "; ") + items[i];
  return out;
}

}  // namespace

HttpServer::HttpServer(HttpCallbacks callbacks) : callbacks_(std::move(callbacks)) {}

HttpServer::~HttpServer() {
  Stop();
}

void HttpServer::RegisterRoutes(httplib::Server& server) {
  server.Get("/healthz", Guarded([](const httplib::Request&, httplib::Response& res) { SetText(res, 200, "ok"); }));

  server.Get("/readyz", Guarded([this](const httplib::Request&, httplib::Response& res) {
               if (!callbacks_.not_ready) return SetText(res, 503, "not ready: no readiness check installed");
               const std::vector<std::string> not_ready = callbacks_.not_ready();
               if (not_ready.empty()) return SetText(res, 200, "ready");
               SetText(res, 503, JoinNotReady(not_ready));
             }));

  server.Get("/metrics", Guarded([this](const httplib::Request&, httplib::Response& res) {
               if (!callbacks_.metrics_text) return SetText(res, 503, "metrics are not available");
               res.status = 200;
               res.set_content(callbacks_.metrics_text(), kPrometheusTextContentType);
             }));

  server.Get("/api/jobs", Guarded([this](const httplib::Request&, httplib::Response& res) {
               if (!callbacks_.list_jobs) return SetJson(res, 503, {{"error", "job listing is not available"}});
               Result<nlohmann::json> jobs = callbacks_.list_jobs();
               if (!jobs.ok()) return SetJson(res, HttpStatusFor(jobs.status()), {{"error", jobs.status().message()}});
               SetJson(res, 200, *jobs);
             }));

  server.Get(kJobRoutePattern, Guarded([this](const httplib::Request& req, httplib::Response& res) {
               const std::string job_id = req.matches[1].str();
               if (!callbacks_.get_job) {
                 return SetJson(res, 503, {{"error", "job lookup is not available"}, {"job", job_id}});
               }
               Result<nlohmann::json> job = callbacks_.get_job(job_id);
               if (!job.ok()) {
                 return SetJson(res, HttpStatusFor(job.status()), {{"error", job.status().message()}, {"job", job_id}});
               }
               SetJson(res, 200, *job);
             }));

  // The API is read-only: known routes refuse other methods with 405, unknown paths stay 404.
  const httplib::Server::Handler refuse = Guarded([](const httplib::Request& req, httplib::Response& res) {
    if (!IsKnownPath(req.path)) {
      return SetJson(res, 404, {{"error", "no route for " + req.method + " " + req.path}});
    }
    res.set_header("Allow", "GET, HEAD");
    SetJson(res, 405, {{"error", "method " + req.method + " is not allowed on " + req.path + " (read-only API)"}});
  });
  server.Post(".*", refuse);
  server.Put(".*", refuse);
  server.Patch(".*", refuse);
  server.Delete(".*", refuse);
  server.Options(".*", refuse);

  // Unrouted GET/HEAD paths arrive here as a bare 404; give them a JSON body like the API errors.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (res.status != 404 || !res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        SetJson(res, 404, {{"error", "no route for " + req.method + " " + req.path}});
        return httplib::Server::HandlerResponse::Handled;
      }));

  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("http: {} {} {} from {} -> {} ({} bytes)", req.method, req.path, req.version, req.remote_addr,
                  res.status, res.body.size());
  });
}

Status HttpServer::Start(const std::string& host, int port) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string address = host + ":" + std::to_string(port);
  if (server_) {
    return Status::FailedPrecondition("http server: cannot start on " + address + ": already serving on port " +
                                      std::to_string(port_));
  }
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument("http server: port " + std::to_string(port) + " is outside [0, 65535]");
  }
  auto server = std::make_unique<httplib::Server>();
  RegisterRoutes(*server);
  // SO_REUSEADDR only: a restart is not blocked by TIME_WAIT sockets, but unlike httplib's default
  // (which may add SO_REUSEPORT) a second process on the same port fails instead of sharing it.
  server->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Keep-alive connections hold a worker thread; a short timeout keeps Stop() prompt.
  server->set_keep_alive_timeout(2);

  errno = 0;
  int bound_port = -1;
  if (port == 0) {
    bound_port = server->bind_to_any_port(host);
  } else if (server->bind_to_port(host, port)) {
    bound_port = port;
  }
  if (bound_port <= 0) {
    const int err = errno;
    return Status::IOError("http server: cannot listen on " + address +
                           (err != 0 ? std::string(": ") + std::strerror(err) : std::string(": bind failed")));
  }

  // listen_after_bind() marks the server running when its accept loop starts; wait for that so
  // a Stop() right after Start() cannot miss the flag and leave the loop running forever.
  auto finished = std::make_shared<std::atomic<bool>>(false);
  httplib::Server* raw = server.get();
  thread_ = std::thread([raw, finished] {
    if (!raw->listen_after_bind()) spdlog::warn("http server: accept loop ended with an error");
    finished->store(true);
  });
  while (!raw->is_running() && !finished->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (finished->load()) {
    thread_.join();
    return Status::IOError("http server: accept loop on " + address + " ended at start");
  }
  server_ = std::move(server);
  port_ = bound_port;
  spdlog::info("http server: listening on {}:{}", host, port_);
  return Status::OK();
}

void HttpServer::Stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  spdlog::info("http server: stopped serving port {}", port_);
  port_ = 0;
}

bool HttpServer::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return server_ != nullptr;
}

int HttpServer::port() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return port_;
}

}  // namespace tributary
