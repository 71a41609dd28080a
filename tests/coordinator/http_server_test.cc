#include "coordinator/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "coordinator/dashboard_assets.h"
#include "coordinator/metrics.h"
#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

// Shared state the callbacks read, standing in for the coordinator daemon's job table.
struct FakeCoordinator {
  std::mutex mutex;
  std::vector<std::string> not_ready;
  std::map<std::string, nlohmann::json> jobs;
  nlohmann::json workers = {{"now_unix_ms", 5000}, {"workers", {{{"worker_id", "w1"}, {"liveness", "alive"}}}}};
  bool list_fails = false;
  CoordinatorMetrics metrics;

  HttpCallbacks Callbacks() {
    HttpCallbacks callbacks;
    callbacks.not_ready = [this] {
      std::lock_guard<std::mutex> lock(mutex);
      return not_ready;
    };
    callbacks.metrics_text = [this] { return metrics.RenderText(); };
    callbacks.list_jobs = [this]() -> Result<nlohmann::json> {
      std::lock_guard<std::mutex> lock(mutex);
      if (list_fails) return Status::Internal("job store: read failed");
      nlohmann::json list = nlohmann::json::array();
      for (const auto& [id, job] : jobs) list.push_back(job);
      return list;
    };
    callbacks.get_job = [this](const std::string& id) -> Result<nlohmann::json> {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = jobs.find(id);
      if (it == jobs.end()) return Status::NotFound("job '" + id + "' does not exist");
      return it->second;
    };
    callbacks.list_workers = [this]() -> Result<nlohmann::json> {
      std::lock_guard<std::mutex> lock(mutex);
      return workers;
    };
    return callbacks;
  }
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.jobs["alpha"] = {{"id", "alpha"}, {"state", "running"}, {"round", 3}};
    fake_.jobs["beta"] = {{"id", "beta"}, {"state", "completed"}, {"round", 10}};
    server_ = std::make_unique<HttpServer>(fake_.Callbacks());
    Status started = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(started.ok()) << started.ToString();
    ASSERT_GT(server_->port(), 0);
  }

  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    return client;
  }

  FakeCoordinator fake_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, HealthzIsOkWhileServing) {
  httplib::Client client = Client();
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
  EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
}

TEST_F(HttpServerTest, HeadIsServedWithoutBody) {
  httplib::Client client = Client();
  auto res = client.Head("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());
}

TEST_F(HttpServerTest, ReadyzFollowsTheReadinessCallback) {
  httplib::Client client = Client();
  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  {
    std::lock_guard<std::mutex> lock(fake_.mutex);
    fake_.not_ready = {"job store not open", "no workers registered"};
  }
  res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("job store not open"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("no workers registered"), std::string::npos) << res->body;

  // Liveness does not depend on readiness.
  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  {
    std::lock_guard<std::mutex> lock(fake_.mutex);
    fake_.not_ready.clear();
  }
  res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, MetricsUseTheTextFormatAndReflectEvents) {
  fake_.metrics.OnRoundCommitted("alpha", 30.0, 0.5, 4096, 8192);
  fake_.metrics.OnRoundCommitted("alpha", 40.0, 0.5, 4096, 8192);
  fake_.metrics.SetWorkersAlive(7);
  httplib::Client client = Client();
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  const std::string content_type = res->get_header_value("Content-Type");
  EXPECT_EQ(content_type.rfind("text/plain", 0), 0u) << content_type;
  EXPECT_NE(content_type.find("version=0.0.4"), std::string::npos) << content_type;
  EXPECT_NE(res->body.find("\ntributary_rounds_committed_total{job=\"alpha\"} 2\n"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\ntributary_bytes_uploaded_total{job=\"alpha\"} 8192\n"), std::string::npos);
  EXPECT_NE(res->body.find("\ntributary_workers_alive 7\n"), std::string::npos);
  // The body is exactly what the metrics object renders now.
  EXPECT_EQ(res->body, fake_.metrics.RenderText());
}

TEST_F(HttpServerTest, JobListIsJson) {
  httplib::Client client = Client();
  auto res = client.Get("/api/jobs");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  ASSERT_TRUE(body.is_array());
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["id"], "alpha");
  EXPECT_EQ(body[1]["state"], "completed");
}

TEST_F(HttpServerTest, JobListErrorIsJson500) {
  {
    std::lock_guard<std::mutex> lock(fake_.mutex);
    fake_.list_fails = true;
  }
  httplib::Client client = Client();
  auto res = client.Get("/api/jobs");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(res->body)["error"], "job store: read failed");
}

TEST_F(HttpServerTest, SingleJobIsJson) {
  httplib::Client client = Client();
  auto res = client.Get("/api/jobs/beta");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body, fake_.jobs["beta"]);
}

TEST_F(HttpServerTest, UnknownJobIs404WithJsonError) {
  httplib::Client client = Client();
  auto res = client.Get("/api/jobs/gamma");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["job"], "gamma");
  ASSERT_TRUE(body["error"].is_string());
  EXPECT_NE(body["error"].get<std::string>().find("gamma"), std::string::npos);
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  httplib::Client client = Client();
  for (const char* path : {"/nope", "/api", "/api/jobs/alpha/rounds", "/healthz/extra", "/dashboard/nope.js",
                           "/dashboard/", "/index.html"}) {
    auto res = client.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_TRUE(nlohmann::json::parse(res->body).contains("error")) << path;
  }
  auto res = client.Post("/nope", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(HttpServerTest, NonGetMethodsAre405) {
  httplib::Client client = Client();
  auto post = client.Post("/api/jobs", R"({"name": "x"})", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
  EXPECT_TRUE(nlohmann::json::parse(post->body).contains("error"));

  auto put = client.Put("/api/jobs/alpha", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  auto del = client.Delete("/api/jobs/alpha");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
  auto patch = client.Patch("/metrics", "", "text/plain");
  ASSERT_TRUE(patch);
  EXPECT_EQ(patch->status, 405);
  auto options = client.Options("/healthz");
  ASSERT_TRUE(options);
  EXPECT_EQ(options->status, 405);
  // The refused requests changed nothing.
  std::lock_guard<std::mutex> lock(fake_.mutex);
  EXPECT_EQ(fake_.jobs.size(), 2u);
}

TEST_F(HttpServerTest, ConcurrentRequestsFromSeveralThreads) {
  constexpr int kThreads = 4;
  constexpr int kRequestsPerThread = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client client = Client();
      const char* paths[] = {"/healthz", "/metrics", "/api/jobs", "/api/jobs/alpha"};
      for (int i = 0; i < kRequestsPerThread; ++i) {
        fake_.metrics.OnUploadRejected("late");
        auto res = client.Get(paths[(t + i) % 4]);
        if (res && res->status == 200) good.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(good.load(), kThreads * kRequestsPerThread);
  httplib::Client client = Client();
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  const std::string expected_line =
      "\ntributary_rejected_uploads_total{reason=\"late\"} " + std::to_string(kThreads * kRequestsPerThread) + "\n";
  EXPECT_NE(res->body.find(expected_line), std::string::npos) << res->body;
}

TEST_F(HttpServerTest, SecondServerOnTheSamePortFailsNamingTheAddress) {
  const int port = server_->port();
  HttpServer second(HttpCallbacks{});
  Status status = second.Start("127.0.0.1", port);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(status.IsIOError()) << status.ToString();
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos) << status.message();
  EXPECT_FALSE(second.running());
  // The first server is unaffected.
  auto res = Client().Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, StartWhileRunningIsRefused) {
  Status status = server_->Start("127.0.0.1", 0);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  EXPECT_TRUE(server_->running());
}

TEST_F(HttpServerTest, StopThenStartAgain) {
  const int first_port = server_->port();
  server_->Stop();
  EXPECT_FALSE(server_->running());
  EXPECT_EQ(server_->port(), 0);
  {
    httplib::Client client("127.0.0.1", first_port);
    client.set_connection_timeout(2);
    auto res = client.Get("/healthz");
    EXPECT_FALSE(res) << "server still answers after Stop()";
  }
  server_->Stop();  // idempotent

  // Restart on the same port (SO_REUSEADDR) and answer again.
  Status status = server_->Start("127.0.0.1", first_port);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(server_->port(), first_port);
  auto res = Client().Get("/api/jobs/alpha");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerStandaloneTest, InvalidPortAndHost) {
  HttpServer server(HttpCallbacks{});
  Status status = server.Start("127.0.0.1", 70000);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  status = server.Start("192.0.2.1", 0);
  EXPECT_TRUE(status.IsIOError()) << status.ToString();
  EXPECT_NE(status.message().find("192.0.2.1:0"), std::string::npos) << status.message();
  EXPECT_FALSE(server.running());
}

TEST(HttpServerStandaloneTest, MissingCallbacksAnswer503ButHealthzStaysUp) {
  HttpServer server(HttpCallbacks{});
  Status status = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(status.ok()) << status.ToString();
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(10);
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  for (const char* path : {"/readyz", "/metrics", "/api/jobs", "/api/jobs/alpha", "/api/workers"}) {
    auto res = client.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 503) << path;
  }
  auto job = client.Get("/api/jobs/alpha");
  ASSERT_TRUE(job);
  EXPECT_EQ(nlohmann::json::parse(job->body)["job"], "alpha");
}

TEST(HttpServerStandaloneTest, ThrowingCallbackIs500) {
  HttpCallbacks callbacks;
  callbacks.list_jobs = []() -> Result<nlohmann::json> { return nlohmann::json::parse("{not json"); };
  HttpServer server(std::move(callbacks));
  Status status = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(status.ok()) << status.ToString();
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(10);
  auto res = client.Get("/api/jobs");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_TRUE(nlohmann::json::parse(res->body).contains("error"));
}

// ---- the dashboard page, /api/workers and the bearer token ----

constexpr const char* kCsp = "default-src 'self'";

TEST_F(HttpServerTest, DashboardPageAndFilesAreServedWithTheirTypesAndCsp) {
  httplib::Client client = Client();
  const std::vector<std::pair<std::string, std::string>> files = {
      {"/", "text/html; charset=utf-8"},
      {"/dashboard/app.js", "text/javascript; charset=utf-8"},
      {"/dashboard/style.css", "text/css; charset=utf-8"}};
  for (const auto& [path, type] : files) {
    auto res = client.Get(path.c_str());
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->get_header_value("Content-Type"), type) << path;
    EXPECT_EQ(res->get_header_value("Content-Security-Policy").rfind(kCsp, 0), 0u) << path;
    EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff") << path;
    // Served from the bytes compiled in, unchanged.
    const DashboardAsset* asset = FindDashboardAsset(path == "/" ? "index.html" : path.substr(11));
    ASSERT_NE(asset, nullptr) << path;
    EXPECT_EQ(res->body, std::string(asset->body)) << path;
  }
  auto page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find(R"(<script src="dashboard/app.js")"), std::string::npos);
  EXPECT_NE(page->body.find(R"(<link rel="stylesheet" href="dashboard/style.css">)"), std::string::npos);
  // The API answers carry the same policy (a JSON body opened as a page cannot run anything either).
  auto api = client.Get("/api/jobs");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->get_header_value("Content-Security-Policy").rfind(kCsp, 0), 0u);
  EXPECT_EQ(api->get_header_value("Cache-Control"), "no-store");
}

// Nothing the page loads comes from elsewhere: no absolute URL but the SVG namespace name, no inline
// script or style (the policy would block them, so the page would silently break).
TEST(DashboardAssetsTest, FetchNothingFromElsewhereAndHaveNoInlineCode) {
  ASSERT_EQ(kDashboardAssetCount, 3u);
  for (size_t i = 0; i < kDashboardAssetCount; ++i) {
    std::string body(kDashboardAssets[i].body);
    const std::string name(kDashboardAssets[i].name);
    ASSERT_FALSE(body.empty()) << name;
    EXPECT_EQ(body.find("https://"), std::string::npos) << name;
    for (size_t at = body.find("http://"); at != std::string::npos; at = body.find("http://", at + 1))
      EXPECT_EQ(body.compare(at, 26, "http://www.w3.org/2000/svg"), 0) << name << " at " << at;
    EXPECT_EQ(body.find("@import"), std::string::npos) << name;
    EXPECT_EQ(body.find("url("), std::string::npos) << name;
    EXPECT_EQ(body.find("innerHTML"), std::string::npos) << name << ": data goes in as text only";
  }
  const std::string html(FindDashboardAsset("index.html")->body);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("<style"), std::string::npos);
  EXPECT_EQ(html.find("style=\""), std::string::npos);
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(\son[a-z]+\s*=)"))) << "no inline event handler attributes";
}

TEST_F(HttpServerTest, WorkersRouteServesTheCallbacksJson) {
  httplib::Client client = Client();
  auto res = client.Get("/api/workers");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["now_unix_ms"], 5000);
  ASSERT_EQ(body["workers"].size(), 1u);
  EXPECT_EQ(body["workers"][0]["worker_id"], "w1");
  auto post = client.Post("/api/workers", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
}

class HttpTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.jobs["alpha"] = {{"id", "alpha"}, {"state", "running"}};
    server_ = std::make_unique<HttpServer>(fake_.Callbacks(), HttpServerOptions{"s3cret-Token_42"});
    Status started = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(started.ok()) << started.ToString();
  }

  httplib::Result Get(const std::string& path, const std::string& authorization = "") const {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(10);
    httplib::Headers headers;
    if (!authorization.empty()) headers.emplace("Authorization", authorization);
    return client.Get(path.c_str(), headers);
  }

  FakeCoordinator fake_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpTokenTest, ApiAndMetricsNeedTheToken) {
  for (const char* path : {"/api/jobs", "/api/jobs/alpha", "/api/jobs/unknown", "/api/workers", "/metrics", "/api/x"}) {
    auto missing = Get(path);
    ASSERT_TRUE(missing) << path;
    EXPECT_EQ(missing->status, 401) << path;
    EXPECT_EQ(missing->get_header_value("WWW-Authenticate"), R"(Bearer realm="tributary")") << path;
    EXPECT_EQ(missing->get_header_value("Content-Type"), "application/json") << path;
    EXPECT_EQ(missing->body.find("alpha"), std::string::npos) << path << ": a 401 shows no data";

    for (const char* wrong : {"Bearer s3cret-Token_4", "Bearer s3cret-Token_42x", "Bearer S3CRET-TOKEN_42",
                              "Basic s3cret-Token_42", "s3cret-Token_42", "Bearer "}) {
      auto refused = Get(path, wrong);
      ASSERT_TRUE(refused) << path;
      EXPECT_EQ(refused->status, 401) << path << " with '" << wrong << "'";
      EXPECT_EQ(refused->get_header_value("WWW-Authenticate").rfind("Bearer realm=", 0), 0u);
    }
    auto wrong = Get(path, "Bearer nope");
    ASSERT_TRUE(wrong);
    EXPECT_NE(wrong->get_header_value("WWW-Authenticate").find(R"(error="invalid_token")"), std::string::npos);
  }
  auto jobs = Get("/api/jobs", "Bearer s3cret-Token_42");
  ASSERT_TRUE(jobs);
  EXPECT_EQ(jobs->status, 200);
  EXPECT_EQ(nlohmann::json::parse(jobs->body)[0]["id"], "alpha");
  auto lower_scheme = Get("/api/workers", "bearer s3cret-Token_42");
  ASSERT_TRUE(lower_scheme);
  EXPECT_EQ(lower_scheme->status, 200) << "the auth scheme is case-insensitive (RFC 7235)";
  auto metrics = Get("/metrics", "Bearer s3cret-Token_42");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  auto unknown = Get("/api/jobs/unknown", "Bearer s3cret-Token_42");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST_F(HttpTokenTest, ProbesAndThePageShellNeedNoToken) {
  for (const char* path : {"/healthz", "/readyz", "/", "/dashboard/app.js", "/dashboard/style.css"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_FALSE(res->has_header("WWW-Authenticate")) << path;
  }
  auto wrong = Get("/healthz", "Bearer nope");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 200) << "a probe does not look at credentials";
}

TEST(HttpTokenFileTest, LoadsOneTrimmedWordAndRefusesTheRest) {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/token";
  auto none = LoadHttpToken("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");

  ASSERT_TRUE(WriteFileAtomic(path, "  abc-DEF_123.~ \n").ok());
  auto token = LoadHttpToken(path);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, "abc-DEF_123.~");

  for (const char* bad : {"", " \n\t", "two words", "tab\tinside", "caf\xc3\xa9"}) {
    ASSERT_TRUE(WriteFileAtomic(path, bad).ok());
    auto refused = LoadHttpToken(path);
    ASSERT_FALSE(refused.ok()) << "'" << bad << "'";
    EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
    EXPECT_NE(refused.status().message().find(path), std::string::npos) << refused.status().ToString();
  }
  auto missing = LoadHttpToken(dir.path() + "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().ToString().find("coordinator.http_token_file"), std::string::npos)
      << missing.status().ToString();
}

}  // namespace
}  // namespace tributary
