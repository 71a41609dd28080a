#include "coordinator/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/metrics.h"

namespace tributary {
namespace {

// Shared state the callbacks read, standing in for the coordinator daemon's job table.
struct FakeCoordinator {
  std::mutex mutex;
  std::vector<std::string> not_ready;
  std::map<std::string, nlohmann::json> jobs;
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
  for (const char* path : {"/", "/nope", "/api", "/api/jobs/alpha/rounds", "/healthz/extra"}) {
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
  for (const char* path : {"/readyz", "/metrics", "/api/jobs", "/api/jobs/alpha"}) {
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

}  // namespace
}  // namespace tributary
