#include "coordinator/http_server.h"

#include <httplib.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <regex>
#include <utility>

#include "base/file_util.h"
#include "coordinator/dashboard_assets.h"
#include "coordinator/metrics.h"

namespace tributary {
namespace {

constexpr const char* kJsonContentType = "application/json";
constexpr const char* kPlainContentType = "text/plain; charset=utf-8";
constexpr const char* kJobRoutePattern = R"(/api/jobs/([^/]+))";
constexpr const char* kAssetRoutePattern = R"(/dashboard/([^/]+))";
// The page may load its script, style sheet and data from this server only; nothing inline, no frames.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
  static const std::regex kAssetRoute(kAssetRoutePattern);
  return path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/api/jobs" ||
         path == "/api/workers" || path == "/" || std::regex_match(path, kJobRoute) ||
         std::regex_match(path, kAssetRoute);
}

// What the bearer token guards: everything that shows state (the probes and the page shell do not).
bool IsProtectedPath(const std::string& path) {
  return path == "/metrics" || path == "/api" || path.rfind("/api/", 0) == 0;
}

// The token of an "Authorization: Bearer <token>" header; "" when there is none.
std::string BearerTokenOf(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  constexpr size_t kScheme = 7;  // "Bearer "
  if (header.size() <= kScheme || strncasecmp(header.c_str(), "Bearer ", kScheme) != 0) return "";
  const size_t begin = header.find_first_not_of(' ', kScheme);
  const size_t end = header.find_last_not_of(' ');
  return begin == std::string::npos ? "" : header.substr(begin, end - begin + 1);
}

// Constant-time in the tokens' contents and lengths: both are hashed, and the digests compared.
bool TokenMatches(const std::string& given, const std::string& expected) {
  unsigned char a[crypto_generichash_BYTES];
  unsigned char b[crypto_generichash_BYTES];
  crypto_generichash(a, sizeof(a), reinterpret_cast<const unsigned char*>(given.data()), given.size(), nullptr, 0);
  crypto_generichash(b, sizeof(b), reinterpret_cast<const unsigned char*>(expected.data()), expected.size(), nullptr,
                     0);
  return sodium_memcmp(a, b, sizeof(a)) == 0;
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

// A route answering the JSON of `callback` (503 naming `what` when it is not set, its error's status).
httplib::Server::Handler JsonListRoute(std::function<Result<nlohmann::json>()> callback, const std::string& what) {
  return Guarded([callback = std::move(callback), what](const httplib::Request&, httplib::Response& res) {
    if (!callback) return SetJson(res, 503, {{"error", what + " is not available"}});
    Result<nlohmann::json> body = callback();
    if (!body.ok()) return SetJson(res, HttpStatusFor(body.status()), {{"error", body.status().message()}});
    SetJson(res, 200, *body);
  });
}

// The token check before any route runs (a 401 tells nothing about which ids exist), and the security
// headers on every answer, errors included.
void InstallPolicies(httplib::Server& server,
                     std::function<bool(const httplib::Request&, httplib::Response&)> authorized) {
  server.set_pre_routing_handler(
      [authorized = std::move(authorized)](const httplib::Request& req, httplib::Response& res) {
        if (!IsProtectedPath(req.path) || authorized(req, res)) return httplib::Server::HandlerResponse::Unhandled;
        return httplib::Server::HandlerResponse::Handled;
      });
  server.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", kContentSecurityPolicy);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-store");
  });
}

}  // namespace

Result<std::string> LoadHttpToken(const std::string& path) {
  if (path.empty()) return std::string();
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status().WithContext("coordinator.http_token_file");
  const size_t begin = text->find_first_not_of(" \t\r\n");
  if (begin == std::string::npos)
    return Status::InvalidArgument("coordinator.http_token_file " + path + ": the file holds no token");
  const std::string token = text->substr(begin, text->find_last_not_of(" \t\r\n") - begin + 1);
  for (char c : token) {
    if (c <= ' ' || c > '~')
      return Status::InvalidArgument("coordinator.http_token_file " + path +
                                     ": the token must be one word of printable ASCII characters");
  }
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0)
    spdlog::warn("coordinator.http_token_file {}: readable by every user (chmod 600 it)", path);
  return token;
}

HttpServer::HttpServer(HttpCallbacks callbacks, HttpServerOptions options)
    : callbacks_(std::move(callbacks)), options_(std::move(options)) {
  if (sodium_init() < 0) spdlog::error("http server: libsodium failed to initialize");
}

bool HttpServer::Authorized(const httplib::Request& req, httplib::Response& res) const {
  if (options_.bearer_token.empty()) return true;
  const std::string given = BearerTokenOf(req);
  if (!given.empty() && TokenMatches(given, options_.bearer_token)) return true;
  // RFC 6750: no credentials gets the bare challenge; wrong ones say invalid_token.
  res.set_header("WWW-Authenticate",
                 given.empty() ? R"(Bearer realm="tributary")" : R"(Bearer realm="tributary", error="invalid_token")");
  SetJson(res, 401,
          {{"error", given.empty() ? "this needs an Authorization: Bearer header (coordinator.http_token_file)"
                                   : "the bearer token is not the coordinator's"}});
  return false;
}

void HttpServer::RegisterDashboard(httplib::Server& server) {
  const auto serve = [](const std::string& name, httplib::Response& res) {
    const DashboardAsset* asset = FindDashboardAsset(name);
    if (asset == nullptr) return SetJson(res, 404, {{"error", "no dashboard file '" + name + "'"}});
    res.status = 200;
    res.set_content(std::string(asset->body), std::string(asset->content_type).c_str());
  };
  server.Get("/", Guarded([serve](const httplib::Request&, httplib::Response& res) { serve("index.html", res); }));
  server.Get(kAssetRoutePattern, Guarded([serve](const httplib::Request& req, httplib::Response& res) {
               serve(req.matches[1].str(), res);
             }));
}

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

  server.Get("/api/jobs", JsonListRoute(callbacks_.list_jobs, "job listing"));
  server.Get("/api/workers", JsonListRoute(callbacks_.list_workers, "the worker list"));

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

  RegisterDashboard(server);

  InstallPolicies(server, [this](const httplib::Request& req, httplib::Response& res) { return Authorized(req, res); });

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
