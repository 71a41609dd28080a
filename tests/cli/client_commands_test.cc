// The job commands (submit, jobs, status, wait, logs, stop, download) run as the real `tributary`
// binary against an unreachable endpoint and against a scripted coordinator: a real transport::Server
// (CURVE or insecure) in this process answering from test-defined replies. The end-to-end tests
// against the real coordinator daemon live in tests/system/.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "federation/job_spec.h"
#include "tests/cli/cli_util.h"
#include "transport/bulk.h"
#include "transport/channel.h"
#include "transport/message.h"
#include "transport/security.h"

namespace tributary::testutil {
namespace {

namespace fs = std::filesystem;
using transport::Envelope;

// A loopback port nothing listens on (bound, then released).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

int CountOccurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A coordinator stand-in: answers each request with handler(request); serves BulkRequests from `bulk`.
class ScriptedCoordinator {
 public:
  using Handler = std::function<Envelope(const Envelope& request)>;

  ScriptedCoordinator(transport::ServerOptions options, Handler handler) : handler_(std::move(handler)) {
    options.name = "scripted-coordinator";
    auto server = transport::Server::Bind("tcp://127.0.0.1:*", std::move(options));
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    endpoint_ = server_->endpoint();
  }
  static transport::ServerOptions Insecure() {
    transport::ServerOptions options;
    options.insecure = true;
    return options;
  }
  ~ScriptedCoordinator() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Call after adding bulk objects; the server is used by the serving thread only from here on.
  void Start() {
    thread_ = std::thread([this] {
      while (!stop_) {
        Result<transport::Incoming> in = server_->Receive(20);
        if (!in.ok()) continue;
        const Envelope& request = in->message.envelope;
        if (request.body_case() == Envelope::kBulkRequest) {
          bulk.Serve(*server_, *in).IgnoreError();
          continue;
        }
        ++requests_;
        Envelope reply = handler_(request);
        if (reply.body_case() == Envelope::BODY_NOT_SET) continue;  // "lost": no reply at all
        server_->Reply(*in, std::move(reply)).IgnoreError();
      }
    });
  }
  const std::string& endpoint() const { return endpoint_; }
  int requests() const { return requests_.load(); }

  transport::BulkSender bulk;

 private:
  Handler handler_;
  std::unique_ptr<transport::Server> server_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

Envelope Reply() {
  return transport::NewEnvelope("coordinator");
}

v1::JobStatus Job(const std::string& id, const std::string& state, uint64_t round, uint64_t total) {
  v1::JobStatus job;
  job.set_job_id(id);
  job.set_name("tiny ferret");
  job.set_state(state);
  job.set_mode("ferret");
  job.set_round(round);
  job.set_total_rounds(total);
  job.set_participants(3);
  job.set_loss(2.5);
  job.set_heldout_loss(std::nan(""));
  job.set_bytes_up(12345);
  job.set_bytes_down(67890);
  job.set_updated_unix_ms(1700000000000);
  return job;
}

Envelope GetJobReplyFor(const v1::JobStatus& job) {
  Envelope reply = Reply();
  *reply.mutable_get_job_reply()->mutable_job() = job;
  return reply;
}

class ClientCommandsTest : public ::testing::Test {
 protected:
  // The developer's own default profile must not leak into the tests.
  void SetUp() override {
    const char* old = std::getenv("XDG_CONFIG_HOME");
    if (old != nullptr) saved_xdg_ = old;
    had_xdg_ = old != nullptr;
    ::setenv("XDG_CONFIG_HOME", config_home_.path().c_str(), 1);
  }
  void TearDown() override {
    if (had_xdg_) {
      ::setenv("XDG_CONFIG_HOME", saved_xdg_.c_str(), 1);
    } else {
      ::unsetenv("XDG_CONFIG_HOME");
    }
  }

  // Runs a job command against `endpoint` in insecure mode with a short reply timeout.
  ProcessResult RunInsecure(const std::string& endpoint, std::vector<std::string> args, double timeout_s = 5) {
    std::vector<std::string> full = {"--set", "client.request_timeout_s=" + std::to_string(timeout_s)};
    full.insert(full.end(), args.begin(), args.end());
    full.insert(full.end(), {"--coordinator", endpoint, "--insecure"});
    return RunTributary(full);
  }

  TempDir config_home_;
  std::string saved_xdg_;
  bool had_xdg_ = false;
};

TEST_F(ClientCommandsTest, UnreachableCoordinatorExits2WithOneLine) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(FreePort());
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"status", "j1"}, {"jobs"}, {"wait", "j1"}, {"logs", "j1"}, {"stop", "j1"}}) {
    ProcessResult r = RunInsecure(endpoint, args, 0.3);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_EQ(
        CountOccurrences(r.err, "cannot reach coordinator " + endpoint + ": no reply within 0.3 s (is it running"), 1)
        << r.err;
    EXPECT_NE(r.err.find("tributary: error: " + args[0] + ": cannot reach coordinator"), std::string::npos)
        << "the documented error line (docs/cli.md): " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // JSON mode: the same failure as one envelope on stdout, with the process's exit code.
  ProcessResult r = RunInsecure(endpoint, {"status", "j1", "--format", "json"}, 0.3);
  EXPECT_EQ(r.exit_code, 2);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["command"], "status");
  EXPECT_EQ(j["exit_code"], 2);
  EXPECT_EQ(j["error"]["code"], "CONNECTION_FAILED");
  EXPECT_NE(j["error"]["message"].get<std::string>().find(endpoint), std::string::npos);
}

TEST_F(ClientCommandsTest, MissingOrBadConnectionSettingsAreArgumentErrors) {
  ProcessResult r = RunTributary({"status", "j1"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--coordinator"), std::string::npos) << r.err;

  r = RunTributary({"status", "j1", "--coordinator", "tcp://127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--key"), std::string::npos) << r.err;

  TempDir dir;
  const std::string missing = dir.path() + "/nobody.key";
  const std::string garbage_pub = dir.Write("coordinator.pub", "this is not a key\n");
  r = RunTributary(
      {"status", "j1", "--coordinator", "tcp://127.0.0.1:1", "--key", missing, "--coordinator-key", garbage_pub});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;

  std::string my_public_key;
  ASSERT_TRUE(transport::WriteKeyPairFiles(dir.path() + "/me", false, &my_public_key).ok());
  r = RunTributary({"status", "j1", "--coordinator", "tcp://127.0.0.1:1", "--key", dir.path() + "/me.key",
                    "--coordinator-key", garbage_pub});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(garbage_pub), std::string::npos) << r.err;
}

struct Keys {
  TempDir dir;
  transport::KeyPair server = transport::GenerateKeyPair().value();
  transport::KeyPair client = transport::GenerateKeyPair().value();
  Keys() {
    EXPECT_TRUE(transport::WriteKeyPair(server, dir.path() + "/coordinator", false).ok());
    EXPECT_TRUE(transport::WriteKeyPair(client, dir.path() + "/alice", false).ok());
  }
  transport::ServerOptions ServerAllowing(const std::string& client_key) const {
    transport::ServerOptions options;
    options.keys = server;
    auto list = transport::AllowList::Parse(client_key + " alice\n", "test.allow");
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    options.allow_list = std::move(list).value();
    return options;
  }
};

TEST_F(ClientCommandsTest, RefusedClientKeyExits2NamingTheKey) {
  Keys keys;
  const transport::KeyPair stranger = transport::GenerateKeyPair().value();
  ScriptedCoordinator coordinator(keys.ServerAllowing(stranger.public_key), [](const Envelope&) {
    Envelope reply = Reply();
    reply.mutable_list_jobs_reply();
    return reply;
  });
  coordinator.Start();
  ProcessResult r =
      RunTributary({"--set", "client.request_timeout_s=5", "jobs", "--coordinator", coordinator.endpoint(), "--key",
                    keys.dir.path() + "/alice.key", "--coordinator-key", keys.dir.path() + "/coordinator.pub"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(CountOccurrences(r.err, "cannot reach coordinator " + coordinator.endpoint()), 1) << r.err;
  EXPECT_NE(r.err.find(keys.client.public_key), std::string::npos) << r.err;
  EXPECT_EQ(coordinator.requests(), 0);
}

TEST_F(ClientCommandsTest, DefaultProfileWithCurveKeysListsJobs) {
  Keys keys;
  ScriptedCoordinator coordinator(keys.ServerAllowing(keys.client.public_key), [](const Envelope& request) {
    Envelope reply = Reply();
    if (request.body_case() != Envelope::kListJobs) return transport::ErrorEnvelope("c", 0, Status::Internal("?"));
    *reply.mutable_list_jobs_reply()->add_jobs() = Job("job-a", "RUNNING", 2, 5);
    *reply.mutable_list_jobs_reply()->add_jobs() = Job("job-b", "FINISHED:COMPLETED", 5, 5);
    return reply;
  });
  coordinator.Start();
  // The profile lives in $XDG_CONFIG_HOME/tributary/client.yaml; its key paths are relative to it.
  fs::create_directories(config_home_.path() + "/tributary");
  fs::copy_file(keys.dir.path() + "/alice.key", config_home_.path() + "/tributary/alice.key");
  fs::permissions(config_home_.path() + "/tributary/alice.key", fs::perms::owner_read | fs::perms::owner_write);
  fs::copy_file(keys.dir.path() + "/coordinator.pub", config_home_.path() + "/tributary/coordinator.pub");
  config_home_.Write("tributary/client.yaml", "client:\n  coordinator: " + coordinator.endpoint() +
                                                  "\n  secret_key: alice.key\n  coordinator_key: coordinator.pub\n");

  ProcessResult r = RunTributary({"jobs", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["command"], "jobs");
  ASSERT_EQ(j["data"]["jobs"].size(), 2u);
  EXPECT_EQ(j["data"]["jobs"][1]["job_id"], "job-b");
  EXPECT_EQ(j["data"]["jobs"][0]["round"], 2);
  EXPECT_TRUE(j["data"]["jobs"][0]["heldout_loss"].is_null());

  r = RunTributary({"jobs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("job-a"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2/5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FINISHED:COMPLETED"), std::string::npos) << r.out;

  // An explicit --config replaces the default profile.
  TempDir other;
  const std::string empty_profile = other.Write("empty.yaml", "log:\n  level: info\n");
  r = RunTributary({"--config", empty_profile, "jobs"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("no coordinator endpoint"), std::string::npos) << r.err;
}

TEST_F(ClientCommandsTest, SubmitSendsTheEffectiveSpecAndToken) {
  std::mutex mutex;
  std::vector<v1::SubmitJob> received;
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [&](const Envelope& request) {
    std::lock_guard<std::mutex> lock(mutex);
    received.push_back(request.submit_job());
    Envelope reply = Reply();
    reply.mutable_submit_job_reply()->set_accepted(true);
    reply.mutable_submit_job_reply()->set_job_id("job-42");
    reply.mutable_submit_job_reply()->set_existing(received.size() > 1);
    return reply;
  });
  coordinator.Start();
  const std::vector<std::string> args = {
      "submit", "examples/jobs/ferret-dolly.yaml", "--set", "federation.rounds=3", "--submit-token", "run-7"};
  ProcessResult r = RunInsecure(coordinator.endpoint(), args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job-42\n");
  std::vector<std::string> json_args = args;
  json_args.insert(json_args.end(), {"--format", "json"});
  r = RunInsecure(coordinator.endpoint(), json_args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["data"]["job_id"], "job-42");
  EXPECT_EQ(j["data"]["existing"], true);

  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].submit_token(), "run-7");
  EXPECT_FALSE(received[0].dry_run());
  Result<JobSpec> sent = ParseJobSpec(received[0].spec_yaml(), "sent spec");
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  Result<JobSpec> local = LoadJobSpec("examples/jobs/ferret-dolly.yaml", {"federation.rounds=3"});
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(sent->rounds, 3);
  EXPECT_EQ(JobSpecHash(*sent), JobSpecHash(*local));
}

TEST_F(ClientCommandsTest, SubmitRefusalAndJsonErrorEnvelopes) {
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [](const Envelope& request) {
    if (request.submit_job().submit_token() == "taken") {
      return transport::ErrorEnvelope(
          "c", 0, Status::AlreadyExists("submit token 'taken' names job job-1, submitted with a different spec"));
    }
    Envelope reply = Reply();
    reply.mutable_submit_job_reply()->set_accepted(false);
    reply.mutable_submit_job_reply()->set_error("dataset 'dolly' is held by no worker");
    return reply;
  });
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"submit", "examples/jobs/ferret-dolly.yaml"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("dataset 'dolly' is held by no worker"), std::string::npos) << r.err;

  // The coordinator's Error reply keeps its code: a reused token with another spec.
  r = RunInsecure(coordinator.endpoint(),
                  {"submit", "examples/jobs/ferret-dolly.yaml", "--submit-token", "taken", "--format", "json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto conflict = nlohmann::json::parse(r.out);
  EXPECT_EQ(conflict["error"]["code"], "ALREADY_EXISTS");
  EXPECT_NE(conflict["error"]["message"].get<std::string>().find("job-1"), std::string::npos);

  // An invalid spec never connects; in JSON mode the error is an envelope on stdout.
  TempDir dir;
  const std::string bad = dir.Write("job.yaml", "federation:\n  rounds: zero\n");
  r = RunInsecure(coordinator.endpoint(), {"submit", bad, "--format", "json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["exit_code"], 4);
  EXPECT_EQ(j["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_NE(j["error"]["message"].get<std::string>().find(bad), std::string::npos);
  EXPECT_EQ(coordinator.requests(), 2);

  // --dry-run uses the same envelope.
  r = RunTributary({"submit", "examples/jobs/ferret-dolly.yaml", "--dry-run", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["data"]["mode"], "ferret");
  EXPECT_EQ(j["data"]["dry_run"], true);
}

// Scripted job states for `wait`: RUNNING for `running_polls` polls, then `final_state`.
ScriptedCoordinator::Handler JobThatEnds(std::shared_ptr<std::atomic<int>> polls, int running_polls,
                                         std::string final_state) {
  return [=](const Envelope& request) {
    if (request.get_job().job_id() != "j1") {
      return transport::ErrorEnvelope("c", 0, Status::NotFound("job '" + request.get_job().job_id() + "' not found"));
    }
    const int n = polls->fetch_add(1);
    if (running_polls < 0 || n < running_polls) return GetJobReplyFor(Job("j1", "RUNNING", n, 4));
    v1::JobStatus job = Job("j1", final_state, 4, 4);
    if (final_state == "FINISHED:FAILED") job.set_error("round 3: no quorum");
    return GetJobReplyFor(job);
  };
}

TEST_F(ClientCommandsTest, WaitExitCodesFollowTheFinalState) {
  struct Case {
    std::string final_state;
    int expected_exit;
  };
  for (const Case& c : {Case{"FINISHED:COMPLETED", 0}, Case{"FINISHED:FAILED", 1}, Case{"FINISHED:STOPPED", 1}}) {
    auto polls = std::make_shared<std::atomic<int>>(0);
    ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), JobThatEnds(polls, 2, c.final_state));
    coordinator.Start();
    ProcessResult r = RunInsecure(coordinator.endpoint(), {"wait", "j1"});
    EXPECT_EQ(r.exit_code, c.expected_exit) << c.final_state << ": " << r.err;
    EXPECT_NE(r.out.find(c.final_state), std::string::npos) << r.out;
    EXPECT_EQ(polls->load(), 3) << c.final_state;  // polled until the state was terminal, then stopped
    if (c.expected_exit != 0) {
      EXPECT_NE(r.err.find(c.final_state), std::string::npos) << r.err;
    }
    if (c.final_state == "FINISHED:FAILED") {
      EXPECT_NE(r.err.find("no quorum"), std::string::npos) << r.err;
    }

    polls->store(0);
    r = RunInsecure(coordinator.endpoint(), {"wait", "j1", "--format", "json"});
    EXPECT_EQ(r.exit_code, c.expected_exit) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["ok"], c.expected_exit == 0);
    EXPECT_EQ(j["exit_code"], c.expected_exit);
    EXPECT_EQ(j["data"]["state"], c.final_state);
  }
}

TEST_F(ClientCommandsTest, WaitTimeoutExits3AndUnknownJobExits4) {
  auto polls = std::make_shared<std::atomic<int>>(0);
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), JobThatEnds(polls, -1, ""));
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"wait", "j1", "--timeout", "1", "--format", "json"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["error"]["code"], "TIMEOUT");
  EXPECT_EQ(j["data"]["state"], "RUNNING");
  EXPECT_GE(polls->load(), 2);

  r = RunInsecure(coordinator.endpoint(), {"wait", "nope"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("job 'nope' not found"), std::string::npos) << r.err;
}

TEST_F(ClientCommandsTest, WaitRidesOutUnansweredPollsOnceTheCoordinatorAnswered) {
  auto polls = std::make_shared<std::atomic<int>>(0);
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [polls](const Envelope&) {
    const int n = polls->fetch_add(1);
    if (n == 0) return GetJobReplyFor(Job("j1", "RUNNING", 1, 4));
    if (n <= 2) return Envelope();  // two requests lost, as in a coordinator restart
    return GetJobReplyFor(Job("j1", "FINISHED:COMPLETED", 4, 4));
  });
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"wait", "j1"}, 0.5);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(CountOccurrences(r.err, "retrying"), 2) << r.err;
  EXPECT_EQ(polls->load(), 4);
}

TEST_F(ClientCommandsTest, StatusShowsRoundsReplicasAndProgress) {
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [](const Envelope&) {
    Envelope reply = GetJobReplyFor(Job("j1", "RUNNING", 2, 4));
    v1::GetJobReply* body = reply.mutable_get_job_reply();
    body->add_workers("w1");
    body->add_workers("w2");
    for (int r = 1; r <= 2; ++r) {
      v1::RoundSummary* round = body->add_rounds();
      round->set_round(r);
      round->set_participants(2);
      round->set_train_loss(3.0 - r);
      round->set_heldout_loss(r == 2 ? 1.75 : std::nan(""));
      round->set_bytes_up(1000 * r);
      round->set_weights_hash("00000000000000a" + std::to_string(r));
    }
    v1::ReplicaState* replica = body->add_replicas();
    replica->set_worker_id("w2");
    replica->set_job_id("j1");
    replica->set_round(2);
    replica->set_weights_hash("00000000000000a2");
    return reply;
  });
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"status", "j1", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const nlohmann::json& data = j["data"];
  EXPECT_EQ(data["job"]["bytes_up"], 12345);
  ASSERT_EQ(data["rounds"].size(), 2u);
  EXPECT_TRUE(data["rounds"][0]["heldout_loss"].is_null());
  EXPECT_DOUBLE_EQ(data["rounds"][1]["heldout_loss"].get<double>(), 1.75);
  EXPECT_EQ(data["replicas"][0]["worker_id"], "w2");
  EXPECT_EQ(data["workers"].size(), 2u);

  r = RunInsecure(coordinator.endpoint(), {"status", "j1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2/4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("50%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("00000000000000a1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1.7500"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("island"), std::string::npos) << "no island lines outside cluster mode\n" << r.out;
}

TEST_F(ClientCommandsTest, StatusShowsTheOpenRoundsIslands) {
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [](const Envelope&) {
    v1::JobStatus job = Job("j1", "RUNNING", 1, 3);
    job.set_mode("cluster");
    job.set_islands(2);
    job.set_island_reforms(1);
    Envelope reply = GetJobReplyFor(job);
    for (const char* name : {"a", "b"}) {
      v1::IslandStatus* island = reply.mutable_get_job_reply()->add_islands();
      island->set_island_id(name);
      island->set_incarnation(name[0] == 'a' ? 1796611270873 : 1796611270871);
      island->add_members(name[0] == 'a' ? "worker-1" : "worker-3");
      if (name[0] == 'b') island->add_members("worker-4");
      island->set_leader(island->members(0));
      island->set_reported(name[0] == 'b');
      island->set_reforms(name[0] == 'a' ? 1 : 0);
    }
    v1::ClusterPlanView* plan = reply.mutable_get_job_reply()->mutable_plan();
    plan->set_round(1);
    plan->set_local_steps(25);
    plan->set_codec("int8");
    v1::IslandPlanView* b = plan->add_islands();
    b->set_name("b");
    b->set_leader("worker-4");
    b->add_ring("worker-4");
    b->add_ring("worker-3");
    (*b->mutable_shares())["worker-3"] = 0.5;
    (*b->mutable_shares())["worker-4"] = 0.5;
    b->add_reasons("leader worker-4: best uplink to the coordinator, 900 Mbit/s");
    return reply;
  });
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"status", "j1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("islands       2 training, 1 re-formation(s) so far"), std::string::npos) << r.out;
  EXPECT_NE(
      r.out.find("island a  incarnation 1796611270873  leader worker-1  members worker-1  reported no  reforms 1"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("island b  incarnation 1796611270871  leader worker-3  members worker-3,worker-4  reported yes"
                       "  reforms 0"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("plan (made when round 1 opened"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker-4(0.50) > worker-3(0.50)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("H 25, codec int8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  b: leader worker-4: best uplink to the coordinator, 900 Mbit/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("in islands    0 B"), std::string::npos) << r.out;

  r = RunInsecure(coordinator.endpoint(), {"status", "j1", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json data = nlohmann::json::parse(r.out)["data"];
  EXPECT_EQ(data["plan"]["islands"][0]["ring"], nlohmann::json::array({"worker-4", "worker-3"}));
  EXPECT_EQ(data["plan"]["local_steps"], 25);
  EXPECT_EQ(data["job"]["island_bytes"], 0);
  EXPECT_EQ(data["job"]["islands"], 2);
  EXPECT_EQ(data["job"]["island_reforms"], 1);
  ASSERT_EQ(data["islands"].size(), 2u);
  EXPECT_EQ(data["islands"][1]["members"], nlohmann::json::array({"worker-3", "worker-4"}));
  EXPECT_EQ(data["islands"][1]["reported"], true);
}

TEST_F(ClientCommandsTest, LogsPagesThroughTheLogAndFollowsUntilEof) {
  constexpr uint64_t kLines = 2500;
  auto available = std::make_shared<std::atomic<uint64_t>>(kLines);  // lines the job has written so far
  auto finished = std::make_shared<std::atomic<bool>>(false);
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [=](const Envelope& request) {
    const v1::FetchLogs& ask = request.fetch_logs();
    Envelope reply = Reply();
    v1::FetchLogsReply* body = reply.mutable_fetch_logs_reply();
    uint64_t line = ask.from_line();
    const uint64_t end = available->load();
    for (; line < end && body->lines_size() < static_cast<int>(ask.max_lines()); ++line) {
      body->add_lines("line " + std::to_string(line));
    }
    body->set_next_line(line);
    // Follow mode: an empty poll makes the job write 10 more lines; it finishes at 2520.
    if (finished->load()) {
      body->set_eof(line == end);
    } else if (body->lines_size() == 0) {
      if (available->fetch_add(10) + 10 >= kLines + 20) finished->store(true);
    }
    return reply;
  });
  coordinator.Start();
  finished->store(true);
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"logs", "j1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expected;
  for (uint64_t i = 0; i < kLines; ++i) expected += "line " + std::to_string(i) + "\n";
  EXPECT_EQ(r.out, expected);

  finished->store(false);
  r = RunInsecure(coordinator.endpoint(), {"logs", "j1", "--follow", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["data"]["eof"], true);
  ASSERT_EQ(j["data"]["lines"].size(), kLines + 20);
  EXPECT_EQ(j["data"]["lines"][kLines + 19], "line " + std::to_string(kLines + 19));
}

TEST_F(ClientCommandsTest, StopReportsTheStateAndRefusesAFinishedJob) {
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [](const Envelope& request) {
    Envelope reply = Reply();
    v1::StopJobReply* body = reply.mutable_stop_job_reply();
    if (request.stop_job().job_id() == "running") {
      body->set_stopped(true);
      body->set_state("FINISHED:STOPPED");
    } else {
      body->set_stopped(false);
      body->set_state("FINISHED:COMPLETED");
      body->set_error("job already finished");
    }
    return reply;
  });
  coordinator.Start();
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"stop", "running", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["data"]["state"], "FINISHED:STOPPED");
  r = RunInsecure(coordinator.endpoint(), {"stop", "done"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("FINISHED:COMPLETED"), std::string::npos) << r.err;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

TEST_F(ClientCommandsTest, DownloadFetchesEveryFileAndGuardsTheOutputDir) {
  const std::string model = RandomBytes(3 * 1024 * 1024 + 17, 1);  // several 1 MiB chunks
  const std::string config = "{\"model_type\": \"llama\"}";
  const std::string model_checksum = transport::ObjectChecksum(model.data(), model.size());
  const std::string config_checksum = transport::ObjectChecksum(config.data(), config.size());
  ScriptedCoordinator coordinator(ScriptedCoordinator::Insecure(), [&](const Envelope& request) {
    const v1::ExportModel& ask = request.export_model();
    Envelope reply = Reply();
    v1::ExportModelReply* body = reply.mutable_export_model_reply();
    body->set_job_id(ask.job_id());
    body->set_round(ask.round() == 0 ? 7 : ask.round());
    body->set_format(ask.format());
    if (ask.job_id() == "evil") {
      v1::ExportedFile* file = body->add_files();
      file->set_name("../escaped.json");
      file->set_object_id("config");
      return reply;
    }
    for (const char* id : {"model.safetensors", "config.json"}) {
      v1::ExportedFile* file = body->add_files();
      file->set_name(id);
      file->set_object_id(id);
      const bool is_config = std::string(id) == "config.json";
      file->set_size(is_config ? config.size() : model.size());
      file->set_checksum(is_config ? config_checksum : model_checksum);
    }
    return reply;
  });
  ASSERT_TRUE(coordinator.bulk
                  .AddObject("model.safetensors",
                             std::make_shared<transport::MemorySource>(std::make_shared<const std::string>(model)))
                  .ok());
  ASSERT_TRUE(coordinator.bulk
                  .AddObject("config.json",
                             std::make_shared<transport::MemorySource>(std::make_shared<const std::string>(config)))
                  .ok());
  coordinator.Start();

  TempDir dir;
  const std::string out = dir.path() + "/exported/model";
  ProcessResult r = RunInsecure(coordinator.endpoint(), {"download", "j1", "--format", "safetensors", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(out + "/model.safetensors"), model);
  EXPECT_EQ(ReadFile(out + "/config.json"), config);
  EXPECT_NE(r.out.find(out), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("round 7"), std::string::npos) << r.out;
  const int requests = coordinator.requests();

  // A non-empty directory is refused before anything is asked of the coordinator.
  r = RunInsecure(coordinator.endpoint(), {"download", "j1", "--format", "safetensors", "-o", out});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(out), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(coordinator.requests(), requests);
  r = RunInsecure(coordinator.endpoint(),
                  {"download", "j1", "--round", "3", "--format", "safetensors", "-o", out, "--force"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("round 3"), std::string::npos) << r.out;

  // A file name that would leave the output directory is refused.
  const std::string evil_out = dir.path() + "/evil/inside";
  r = RunInsecure(coordinator.endpoint(), {"download", "evil", "--format", "peft", "-o", evil_out});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("../escaped.json"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.path() + "/evil/escaped.json"));
}

}  // namespace
}  // namespace tributary::testutil
