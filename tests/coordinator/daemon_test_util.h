// What the coordinator daemon tests share: the coordinator in-process (Coordinator::Create + Run on a
// thread, CURVE on loopback, a real RocksDB store in a temp dir), workers played by hand with
// transport::Clients (ScriptedWorker: registration, heartbeats, uploads inline or pulled as bulk objects),
// the job's world and spec, and in-process rounds to check the committed aggregates against.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "coordinator/coordinator.h"
#include "federation/aggregator.h"
#include "federation/method.h"
#include "federation/tasklet.h"
#include "tests/common/daemon_world.h"
#include "tests/common/federation_util.h"
#include "tests/common/temp_dir.h"
#include "transport/bulk.h"
#include "transport/channel.h"

namespace tributary::daemontest {

namespace fs = std::filesystem;
using testutil::TempDir;
using transport::Envelope;
using transport::Message;

inline constexpr char kDataset[] = "letters";
constexpr int64_t kSeqLen = 64;
constexpr int kWaitMs = 30000;  // generous: a failure, not a timing assertion
constexpr auto kHeartbeatEvery = std::chrono::milliseconds(300);

// Every log line, for checks of what the coordinator logged.
class CapturingSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  bool Contains(const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const std::string& line : lines_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

// The job's world (tests/common/daemon_world.h; the dataset is also the held-out set) and its spec.
struct World : testutil::DaemonWorld {
  World() : DaemonWorld(kSeqLen) {}

  JobSpec Spec() const {
    const std::string yaml = "name: daemon test\nmodel:\n  base: " + model_dir + "\ndata:\n  dataset: " + kDataset +
                             "\n  seq_len: " + std::to_string(kSeqLen) +
                             "\nfederation:\n  mode: ferret\n  rounds: 2\n  seed: 9\n  min_clients: 2\n  quorum: 1.0\n"
                             "  deadline_floor_s: 300\n  deadline_ceiling_s: 600\n"
                             "train:\n  local_steps: 2\n  batch_size: 4\n  lr: 0.1\n  optimizer: sgd\n"
                             "ferret:\n  k: 64\neval:\n  dataset: heldout\n  every: 1\n";
    auto spec = ParseJobSpec(yaml, "test spec");
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return *spec;
  }
};

struct Keys {
  transport::KeyPair coordinator = transport::GenerateKeyPair().value();
  transport::KeyPair w1 = transport::GenerateKeyPair().value();
  transport::KeyPair w2 = transport::GenerateKeyPair().value();
  transport::KeyPair stranger = transport::GenerateKeyPair().value();  // admitted, but owns no worker id
  transport::KeyPair cli = transport::GenerateKeyPair().value();

  transport::AllowList AllowList() const {
    auto list = transport::AllowList::Parse(w1.public_key + " w1\n" + w2.public_key + " w2\n" + stranger.public_key +
                                                " stranger\n" + cli.public_key + " cli\n",
                                            "test.allow");
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    return *list;
  }
};

// Coordinator::Create + Run on its own thread; stopped and joined on destruction.
class RunningCoordinator {
 public:
  explicit RunningCoordinator(CoordinatorOptions options) {
    auto coordinator = Coordinator::Create(std::move(options));
    EXPECT_TRUE(coordinator.ok()) << coordinator.status().ToString();
    if (!coordinator.ok()) return;
    coordinator_ = std::move(*coordinator);
    thread_ = std::thread([this] { result_ = coordinator_->Run(&stop_); });
  }
  ~RunningCoordinator() { Stop().IgnoreError(); }
  Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return result_;
  }
  bool ok() const { return coordinator_ != nullptr; }
  // Stops and destroys the coordinator (closing its store).
  Status Close() {
    Status stopped = Stop();
    coordinator_.reset();
    return stopped;
  }
  const std::string& endpoint() const { return coordinator_->endpoint(); }
  int http_port() const { return coordinator_->http_port(); }

 private:
  std::atomic<bool> stop_{false};
  std::unique_ptr<Coordinator> coordinator_;
  std::thread thread_;
  Status result_;
};

inline std::unique_ptr<transport::Client> Connect(const std::string& endpoint, const Keys& keys,
                                                  const transport::KeyPair& mine) {
  transport::ClientOptions options;
  options.name = "test";
  options.keys = mine;
  options.server_public_key = keys.coordinator.public_key;
  auto client = transport::Client::Connect(endpoint, options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

// A worker played by hand on one connection: it heartbeats while it waits, serves BulkRequests for
// the uploads it offers as bulk objects, and keeps every other message for the test.
class ScriptedWorker {
 public:
  ScriptedWorker(const std::string& endpoint, const Keys& keys, const transport::KeyPair& mine, std::string worker_id)
      : worker_id_(std::move(worker_id)), client_(Connect(endpoint, keys, mine)) {}

  const std::string& worker_id() const { return worker_id_; }
  bool registered = false;
  std::vector<v1::ReplicaState> replicas;  // reported in heartbeats
  std::vector<v1::JobProblem> problems;    // reported in heartbeats: jobs it says it cannot train
  int bulk_requests_served = 0;
  transport::BulkSender bulk{"test-worker"};

  v1::RegisterAck Register(const v1::Capabilities& capabilities) {
    Envelope request = transport::NewEnvelope(worker_id_);
    v1::Register* reg = request.mutable_register_worker();
    reg->set_worker_id(worker_id_);
    reg->set_hostname("test-host");
    *reg->mutable_capabilities() = capabilities;
    std::optional<Message> reply = Call(request);
    if (!reply || !reply->envelope.has_register_ack()) {
      ADD_FAILURE() << worker_id_ << ": no RegisterAck";
      return {};
    }
    registered = reply->envelope.register_ack().accepted();
    return reply->envelope.register_ack();
  }

  // Sends `request` and waits for the message answering it.
  std::optional<Message> Call(const Envelope& request) {
    if (!client_->Send(request).ok()) return std::nullopt;
    const uint64_t id = request.message_id();
    return WaitFor([id](const Message& m) { return m.envelope.in_reply_to() == id; });
  }

  // Waits for a message satisfying `match` (earlier unmatched messages first).
  std::optional<Message> WaitFor(const std::function<bool(const Message&)>& match, int timeout_ms = kWaitMs) {
    Message m;
    if (Poll(match, timeout_ms, &m)) return m;
    ADD_FAILURE() << worker_id_ << ": the expected message did not arrive";
    return std::nullopt;
  }

  // Heartbeats and serves bulk requests for `ms`, keeping what arrives.
  void Idle(int ms) {
    Poll([](const Message&) { return false; }, ms, nullptr);
  }

  std::optional<Message> WaitForBody(Envelope::BodyCase body) {
    return WaitFor([body](const Message& m) { return m.envelope.body_case() == body; });
  }

  // Heartbeats (with the replicas) when one is due.
  void Pump() {
    if (!registered || std::chrono::steady_clock::now() < next_heartbeat_) return;
    next_heartbeat_ = std::chrono::steady_clock::now() + kHeartbeatEvery;
    Envelope hb = transport::NewEnvelope(worker_id_);
    hb.mutable_heartbeat()->set_worker_id(worker_id_);
    hb.mutable_heartbeat()->set_state("idle");
    hb.mutable_heartbeat()->set_sequence(++sequence_);
    for (const v1::ReplicaState& r : replicas) *hb.mutable_heartbeat()->add_replicas() = r;
    for (const v1::JobProblem& p : problems) *hb.mutable_heartbeat()->add_problems() = p;
    EXPECT_TRUE(client_->Send(hb).ok());
  }

  // Sends an upload and returns its UploadAck.
  v1::UploadAck Upload(const v1::UploadUpdate& upload) {
    Envelope request = transport::NewEnvelope(worker_id_);
    *request.mutable_upload_update() = upload;
    std::optional<Message> reply = Call(request);
    if (!reply || !reply->envelope.has_upload_ack()) {
      ADD_FAILURE() << worker_id_ << ": no UploadAck for round " << upload.round() << " of " << upload.job_id();
      return {};
    }
    return reply->envelope.upload_ack();
  }

 private:
  // Whether a message satisfying `match` arrived within timeout_ms (moved to *out).
  bool Poll(const std::function<bool(const Message&)>& match, int timeout_ms, Message* out) {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (match(*it)) {
        *out = std::move(*it);
        inbox_.erase(it);
        return true;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      Pump();
      auto in = client_->Receive(50);
      if (!in.ok()) continue;
      if (in->envelope.has_bulk_request()) {
        ++bulk_requests_served;
        EXPECT_TRUE(bulk.Serve(*client_, *in).ok());
        continue;
      }
      if (in->envelope.has_heartbeat_ack()) continue;
      if (match(*in)) {
        *out = std::move(*in);
        return true;
      }
      inbox_.push_back(std::move(*in));
    }
    return false;
  }

  std::string worker_id_;
  std::unique_ptr<transport::Client> client_;
  std::deque<Message> inbox_;
  uint64_t sequence_ = 0;
  std::chrono::steady_clock::time_point next_heartbeat_;
};

inline v1::Capabilities WorkerCapabilities(int64_t samples, const std::string& fabric_id) {
  v1::Capabilities caps;
  caps.set_cpu_cores(2);
  caps.set_memory_bytes(uint64_t{8} << 30);
  v1::Nic* nic = caps.add_nics();
  nic->set_name("eth0");
  nic->set_kind("ethernet");
  nic->set_speed_mbps(10000);
  nic->set_fabric_id(fabric_id);
  v1::Nic* virt = caps.add_nics();  // not placeable: left out of the inventory
  virt->set_name("docker0");
  virt->set_kind("other");
  v1::DatasetInfo* data = caps.add_datasets();
  data->set_name(kDataset);
  data->set_samples(static_cast<uint64_t>(samples));
  return caps;
}

inline std::string Bytes(const std::vector<uint8_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

// The UploadUpdate of a tasklet result, inline.
inline v1::UploadUpdate InlineUpload(const std::string& job_id, uint64_t round, const std::string& worker_id,
                                     const TaskletResult& result) {
  v1::UploadUpdate u;
  u.set_job_id(job_id);
  u.set_round(round);
  u.set_worker_id(worker_id);
  u.set_num_samples(result.num_samples);
  u.set_loss(result.train_loss);
  u.set_payload_kind("ferret_coefficients");
  u.set_payload(Bytes(result.payload));
  u.set_payload_size(result.payload.size());
  u.set_payload_checksum(transport::ObjectChecksum(result.payload.data(), result.payload.size()));
  u.set_train_seconds(0.5);
  return u;
}

// The same upload announced as a bulk object the coordinator pulls from the worker.
inline v1::UploadUpdate BulkUpload(ScriptedWorker& worker, const v1::UploadUpdate& inline_upload) {
  v1::UploadUpdate u = inline_upload;
  const std::string object_id = "upload/" + u.job_id() + "/" + std::to_string(u.round()) + "/" + worker.worker_id();
  EXPECT_TRUE(worker.bulk
                  .AddObject(object_id, std::make_shared<transport::MemorySource>(
                                            std::make_shared<const std::string>(inline_upload.payload())))
                  .ok());
  u.clear_payload();
  u.set_payload_object_id(object_id);
  return u;
}

inline Result<Message> Ask(transport::Client& cli, const Envelope& request) {
  return cli.Request(request, kWaitMs);
}

// Submits `yaml` as the CLI would; the job id, or the coordinator's refusal.
inline Result<std::string> SubmitYaml(transport::Client& cli, const std::string& yaml) {
  Envelope submit = transport::NewEnvelope("cli");
  submit.mutable_submit_job()->set_spec_yaml(yaml);
  TRIB_ASSIGN_OR_RETURN(Message reply, Ask(cli, submit));
  return reply.envelope.submit_job_reply().job_id();
}

inline Result<v1::GetJobReply> GetJobReply(transport::Client& cli, const std::string& job_id) {
  Envelope get = transport::NewEnvelope("cli");
  get.mutable_get_job()->set_job_id(job_id);
  TRIB_ASSIGN_OR_RETURN(Message reply, Ask(cli, get));
  return reply.envelope.get_job_reply();
}

// The aggregate the coordinator must commit for `uploads` (ascending worker id), computed in-process;
// applies it to `replica` (whose weights hash is then the round's).
inline std::vector<uint8_t> ExpectedRound(const JobSpec& spec, uint32_t round,
                                          const std::vector<std::pair<std::string, TaskletResult>>& uploads,
                                          LlamaModel& replica) {
  auto method = CreateMethod(spec, replica.params().table_ptr());
  EXPECT_TRUE(method.ok());
  std::vector<ClientPayload> clients;
  clients.reserve(uploads.size());
  for (const auto& [worker, result] : uploads)
    clients.push_back({worker, result.num_samples, {result.payload.data(), result.payload.size()}});
  auto aggregation = Aggregation::Create(spec.aggregation);
  EXPECT_TRUE(aggregation.ok());
  auto aggregate = (*method)->Aggregate(clients, spec.aggregation_weights, **aggregation, replica.params(), round);
  EXPECT_TRUE(aggregate.ok()) << aggregate.status().ToString();
  EXPECT_TRUE((*method)->Apply(aggregate->bytes, round, &replica.params()).ok());
  return aggregate->bytes;
}

inline TaskletResult Train(const JobSpec& spec, uint32_t round, const std::string& worker, const World& world,
                           LlamaModel& replica) {
  TaskletInput input{spec, round, worker, &world.rows};
  auto result = testutil::RunModelTasklet(input, replica);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? *result : TaskletResult{};
}

class CoordinatorDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sink_ = std::make_shared<CapturingSink>();
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  void TearDown() override {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }

  CoordinatorOptions Options(const World& world, const TempDir& data) const {
    CoordinatorOptions options;
    options.listen = "tcp://127.0.0.1:*";
    options.http_listen = "127.0.0.1:0";
    options.data_dir = data.path();
    options.keys = keys_.coordinator;
    options.allow_list = keys_.AllowList();
    options.heartbeat_interval_ms = 1000;
    options.heartbeat_misses = 10;
    options.restart_grace_ms = 0;
    options.eval_data = {{"heldout", world.data_path}};
    return options;
  }

  Keys keys_;
  std::shared_ptr<CapturingSink> sink_;
};

}  // namespace tributary::daemontest
