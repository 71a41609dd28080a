// The worker daemon against a scripted coordinator (a transport::Server in the test) over loopback
// sockets: registration, heartbeats, a round's upload checked against RunTasklet in-process, applied
// rounds reported in heartbeats, catch-up, and re-registration.
#include "worker/worker_daemon.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <optional>
#include <thread>

#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "federation/replica_state.h"
#include "federation/tasklet.h"
#include "peft/ferret.h"
#include "tests/common/daemon_world.h"
#include "tests/common/federation_util.h"
#include "tests/common/temp_dir.h"
#include "tests/common/tiny_llama.h"
#include "transport/bulk.h"
#include "worker/compute_loop.h"

namespace tributary {
namespace {

using testutil::TempDir;
using transport::Envelope;
using transport::Incoming;

constexpr char kDataset[] = "letters";
constexpr uint32_t kHeartbeatMs = 100;
constexpr int kWaitMs = 20000;   // generous: a failure, not a timing assertion
constexpr int64_t kSeqLen = 64;  // a prompt plus its response fits a row: the loss is not all masked

// The job's world (tests/common/daemon_world.h) and its spec.
struct World : testutil::DaemonWorld {
  World() : DaemonWorld(kSeqLen) {}

  // The spec as the coordinator sends it (YAML) and as the worker parses it.
  JobSpec Spec(const std::string& mode) const {
    JobSpec spec;
    spec.name = "daemon-test";
    spec.base_model = model_dir;
    spec.dataset = kDataset;
    spec.seq_len = kSeqLen;
    spec.mode = mode;
    spec.rounds = 5;
    spec.seed = 9;
    spec.local_steps = 2;
    spec.batch_size = 4;
    spec.lr = 0.1;
    spec.optimizer = "sgd";
    spec.ferret.K = 64;
    spec.eval_dataset = "heldout";  // as a job with evaluation has; only the coordinator reads it
    auto parsed = ParseJobSpec(EffectiveJobSpecYaml(spec), "test spec");
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    return *parsed;
  }
};

std::string Bytes(const std::vector<uint8_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

// A coordinator that answers Register and Heartbeat by itself and hands everything else to the test.
class ScriptedCoordinator {
 public:
  explicit ScriptedCoordinator(transport::ServerOptions options) {
    auto server = transport::Server::Bind("tcp://127.0.0.1:*", std::move(options));
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }
  const std::string& endpoint() const { return server_->endpoint(); }

  bool ack_heartbeats = true;
  bool not_found_next_heartbeat = false;
  int registers = 0;
  std::string control_routing_id;
  std::vector<v1::Heartbeat> heartbeats;
  std::vector<Envelope::BodyCase> received;  // every message, in order

  // Receives (answering registrations and heartbeats) until a message satisfies `match`.
  std::optional<Incoming> WaitFor(const std::function<bool(const Incoming&)>& match, int timeout_ms = kWaitMs) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto in = server_->Receive(100);
      if (!in.ok()) continue;
      received.push_back(in->message.envelope.body_case());
      Answer(*in);
      if (match(*in)) return std::move(*in);
    }
    ADD_FAILURE() << "the expected message did not arrive";
    return std::nullopt;
  }
  std::optional<Incoming> WaitForBody(Envelope::BodyCase body) {
    return WaitFor([body](const Incoming& in) { return in.message.envelope.body_case() == body; });
  }
  // Waits for a heartbeat reporting replica (job, round, hash).
  bool WaitForReplica(const std::string& job, uint64_t round, const std::string& hash) {
    return WaitFor([&](const Incoming& in) {
             if (!in.message.envelope.has_heartbeat()) return false;
             for (const v1::ReplicaState& r : in.message.envelope.heartbeat().replicas())
               if (r.job_id() == job && r.round() == round && r.weights_hash() == hash) return true;
             return false;
           })
        .has_value();
  }
  // Sends a push to the worker's control connection.
  void Push(Envelope envelope) {
    ASSERT_FALSE(control_routing_id.empty());
    ASSERT_TRUE(server_->Send(control_routing_id, envelope).ok());
  }
  void Reply(const Incoming& request, Envelope reply) { ASSERT_TRUE(server_->Reply(request, std::move(reply)).ok()); }
  transport::Server& server() { return *server_; }

 private:
  void Answer(const Incoming& in) {
    const Envelope& envelope = in.message.envelope;
    if (envelope.has_register_worker()) {
      ++registers;
      control_routing_id = in.peer.routing_id;
      Envelope ack = transport::NewEnvelope("coordinator");
      ack.mutable_register_ack()->set_accepted(true);
      ack.mutable_register_ack()->set_coordinator_id("scripted");
      ack.mutable_register_ack()->set_heartbeat_interval_ms(kHeartbeatMs);
      ack.mutable_register_ack()->set_heartbeat_miss_limit(3);
      Reply(in, ack);
    } else if (envelope.has_heartbeat()) {
      heartbeats.push_back(envelope.heartbeat());
      if (not_found_next_heartbeat) {
        not_found_next_heartbeat = false;
        Reply(in, transport::ErrorEnvelope("coordinator", envelope.message_id(),
                                           Status::NotFound("worker 'w1' is not registered")));
      } else if (ack_heartbeats) {
        Envelope ack = transport::NewEnvelope("coordinator");
        ack.mutable_heartbeat_ack()->set_sequence(envelope.heartbeat().sequence());
        Reply(in, ack);
      }
    }
  }

  std::unique_ptr<transport::Server> server_;
};

// The daemon on its own thread; stopped and joined on destruction.
class RunningWorker {
 public:
  explicit RunningWorker(WorkerOptions options) {
    auto daemon = WorkerDaemon::Create(std::move(options));
    EXPECT_TRUE(daemon.ok()) << daemon.status().ToString();
    if (!daemon.ok()) return;
    daemon_ = std::move(*daemon);
    thread_ = std::thread([this] { result_ = daemon_->Run(&stop_); });
  }
  ~RunningWorker() { Stop().IgnoreError(); }
  // What SIGTERM does: the daemon drains (WorkerDaemon::Run) while the test goes on.
  void RequestStop() { stop_ = true; }
  Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::unique_ptr<WorkerDaemon> daemon_;
  std::thread thread_;
  Status result_;
};

WorkerOptions Options(const World& world, const std::string& endpoint) {
  WorkerOptions options;
  options.worker_id = "w1";
  options.coordinator = endpoint;
  options.insecure = true;
  options.datasets = {{kDataset, world.data_path, world.num_examples}};
  options.capabilities.hostname = "test-host";
  options.capabilities.cores = 2;
  options.default_heartbeat_interval_ms = kHeartbeatMs;
  options.request_timeout_ms = 5000;
  return options;
}

Envelope Committed(const std::string& job, uint64_t round, const std::vector<uint8_t>& aggregate,
                   uint64_t weights_hash) {
  Envelope envelope = transport::NewEnvelope("coordinator");
  v1::RoundCommitted* c = envelope.mutable_round_committed();
  c->set_job_id(job);
  c->set_round(round);
  c->set_participants(1);
  c->set_aggregate(Bytes(aggregate));
  c->set_aggregate_size(aggregate.size());
  c->set_aggregate_checksum(transport::ObjectChecksum(aggregate.data(), aggregate.size()));
  c->set_weights_hash(HashHex(weights_hash));
  return envelope;
}

// Runs `round` on the oracle as another worker would and applies it as the committed aggregate.
std::vector<uint8_t> OracleRound(const JobSpec& spec, uint32_t round, const std::vector<SequenceRow>& rows,
                                 LlamaModel& model) {
  TaskletInput input{spec, round, "other", &rows};
  auto result = testutil::RunModelTasklet(input, model);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(testutil::ApplyRound(spec, round, result->payload, &model.params()).ok());
  return result->payload;
}

// A CatchUpReply that brings a replica from round 0 to round 1 with the inline `aggregate`.
Envelope CatchUpToRound1(const std::string& job_id, const JobSpec& spec, const std::vector<uint8_t>& aggregate,
                         uint64_t hash) {
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::CatchUpReply* body = reply.mutable_catch_up_reply();
  body->set_job_id(job_id);
  body->set_spec_yaml(EffectiveJobSpecYaml(spec));
  body->set_state("RUNNING");
  body->set_last_committed_round(1);
  v1::CommittedAggregate* round1 = body->add_rounds();
  round1->set_round(1);
  round1->set_aggregate(Bytes(aggregate));
  round1->set_weights_hash(HashHex(hash));
  return reply;
}

TEST(WorkerDaemonTest, CreateRefusesBadOptions) {
  World world;
  WorkerOptions options = Options(world, "tcp://127.0.0.1:1");
  options.worker_id = "";
  EXPECT_EQ(WorkerDaemon::Create(options).status().code(), StatusCode::kInvalidArgument);
  options = Options(world, "127.0.0.1:1");
  EXPECT_EQ(WorkerDaemon::Create(options).status().code(), StatusCode::kInvalidArgument);
  options = Options(world, "tcp://127.0.0.1:1");
  options.insecure = false;  // and no keys
  EXPECT_EQ(WorkerDaemon::Create(options).status().code(), StatusCode::kInvalidArgument);
  options = Options(world, "tcp://127.0.0.1:1");
  options.datasets.push_back(options.datasets[0]);
  EXPECT_EQ(WorkerDaemon::Create(options).status().code(), StatusCode::kInvalidArgument);
}

TEST(WorkerDaemonTest, RegistersTrainsUploadsAppliesCatchesUpAndReregisters) {
  World world;
  const JobSpec spec = world.Spec("ferret");
  const std::string yaml = EffectiveJobSpecYaml(spec);
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  RunningWorker worker(Options(world, coordinator.endpoint()));

  // Registration with the datasets, then heartbeats at the interval the RegisterAck set.
  auto reg = coordinator.WaitForBody(Envelope::kRegisterWorker);
  ASSERT_TRUE(reg.has_value());
  const v1::Register& r = reg->message.envelope.register_worker();
  EXPECT_EQ(r.worker_id(), "w1");
  EXPECT_EQ(r.hostname(), "test-host");
  ASSERT_EQ(r.capabilities().datasets_size(), 1);
  EXPECT_EQ(r.capabilities().datasets(0).name(), kDataset);
  EXPECT_EQ(r.capabilities().datasets(0).samples(), static_cast<uint64_t>(world.num_examples));
  EXPECT_EQ(r.capabilities().cpu_cores(), 2u);
  auto third = coordinator.WaitFor([](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().sequence() >= 3;
  });
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->message.envelope.heartbeat().worker_id(), "w1");
  EXPECT_EQ(third->message.envelope.heartbeat().state(), "idle");
  ASSERT_GE(coordinator.heartbeats.size(), 3u);
  for (size_t i = 1; i < coordinator.heartbeats.size(); ++i)
    EXPECT_EQ(coordinator.heartbeats[i].sequence(), coordinator.heartbeats[i - 1].sequence() + 1);

  // Round 1: the upload equals what RunTasklet gives in-process for the same replica and rows.
  auto oracle = world.Replica();
  Envelope start = transport::NewEnvelope("coordinator");
  v1::RoundStart* s = start.mutable_round_start();
  s->set_job_id("job-1");
  s->set_round(1);
  s->set_mode("ferret");
  s->set_committed_round(0);
  s->set_seed(spec.seed);
  s->set_local_steps(static_cast<uint32_t>(spec.local_steps));
  s->set_weights_hash(HashHex(WeightsHash(oracle->params())));
  s->set_job_spec_yaml(yaml);
  coordinator.Push(start);
  auto upload_in = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload_in.has_value());
  EXPECT_NE(upload_in->peer.routing_id, coordinator.control_routing_id) << "uploads go on the work connection";
  const v1::UploadUpdate& upload = upload_in->message.envelope.upload_update();
  TaskletInput input{spec, 1, "w1", &world.rows};
  auto expected = testutil::RunModelTasklet(input, *oracle);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  EXPECT_EQ(upload.job_id(), "job-1");
  EXPECT_EQ(upload.round(), 1u);
  EXPECT_EQ(upload.worker_id(), "w1");
  EXPECT_EQ(upload.payload_kind(), "ferret_coefficients");
  EXPECT_EQ(upload.num_samples(), world.rows.size());
  EXPECT_EQ(upload.payload(), Bytes(expected->payload));
  EXPECT_EQ(upload.payload_size(), expected->payload.size());
  EXPECT_EQ(upload.payload_checksum(), transport::ObjectChecksum(upload.payload().data(), upload.payload().size()));
  EXPECT_DOUBLE_EQ(upload.loss(), expected->train_loss);
  EXPECT_GT(expected->train_loss, 0);
  auto blocks = MakeFerretBlocks(spec.ferret, oracle->params().table());
  ASSERT_TRUE(blocks.ok());
  const auto* payload_bytes = reinterpret_cast<const uint8_t*>(upload.payload().data());
  auto parsed =
      ParsePayload({payload_bytes, upload.payload().size()}, {static_cast<int>(blocks->size()), spec.ferret.K});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->round, 1u);
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_job_id("job-1");
  ack.mutable_upload_ack()->set_round(1);
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload_in, ack);

  // RoundCommitted(1) (this worker's update as the aggregate) is applied; the heartbeat reports the hash.
  ASSERT_TRUE(testutil::ApplyRound(spec, 1, expected->payload, &oracle->params()).ok());
  const uint64_t hash1 = WeightsHash(oracle->params());
  ASSERT_NE(hash1, WeightsHash(world.base->params())) << "the round must change the model";
  coordinator.Push(Committed("job-1", 1, expected->payload, hash1));
  EXPECT_TRUE(coordinator.WaitForReplica("job-1", 1, HashHex(hash1)));

  // RoundCommitted(3) skips round 2: the worker catches up on the work connection, then applies 3.
  const std::vector<uint8_t> aggregate2 = OracleRound(spec, 2, world.rows, *oracle);
  const uint64_t hash2 = WeightsHash(oracle->params());
  const std::vector<uint8_t> aggregate3 = OracleRound(spec, 3, world.rows, *oracle);
  const uint64_t hash3 = WeightsHash(oracle->params());
  ASSERT_TRUE(hash2 != hash1 && hash3 != hash2);
  coordinator.Push(Committed("job-1", 3, aggregate3, hash3));
  auto catch_up = coordinator.WaitForBody(Envelope::kCatchUpRequest);
  ASSERT_TRUE(catch_up.has_value());
  const v1::CatchUpRequest& request = catch_up->message.envelope.catch_up_request();
  EXPECT_EQ(request.job_id(), "job-1");
  EXPECT_EQ(request.worker_id(), "w1");
  EXPECT_EQ(request.from_round(), 1u);
  EXPECT_TRUE(request.to_round() == 2 || request.to_round() == 3) << request.to_round();
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::CatchUpReply* body = reply.mutable_catch_up_reply();
  body->set_job_id("job-1");
  body->set_spec_yaml(yaml);
  body->set_state("RUNNING");
  body->set_last_committed_round(3);
  v1::CommittedAggregate* round2 = body->add_rounds();
  round2->set_round(2);
  round2->set_aggregate(Bytes(aggregate2));
  round2->set_weights_hash(HashHex(hash2));
  if (request.to_round() == 3) {
    v1::CommittedAggregate* round3 = body->add_rounds();
    round3->set_round(3);
    round3->set_aggregate(Bytes(aggregate3));
    round3->set_weights_hash(HashHex(hash3));
  }
  coordinator.Reply(*catch_up, reply);
  EXPECT_TRUE(coordinator.WaitForReplica("job-1", 3, HashHex(hash3)));

  // A NotFound answer to a heartbeat (coordinator restart) makes it register again, with its rounds.
  const int registers_before = coordinator.registers;
  coordinator.not_found_next_heartbeat = true;
  auto again = coordinator.WaitForBody(Envelope::kRegisterWorker);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(coordinator.registers, registers_before + 1);
  const auto& applied = again->message.envelope.register_worker().applied_rounds();
  ASSERT_EQ(applied.count("job-1"), 1u);
  EXPECT_EQ(applied.at("job-1"), 3u);
  EXPECT_TRUE(worker.Stop().ok());
}

Envelope Start(const std::string& job, uint64_t round, const std::string& weights_hash, const JobSpec& spec) {
  Envelope envelope = transport::NewEnvelope("coordinator");
  v1::RoundStart* s = envelope.mutable_round_start();
  s->set_job_id(job);
  s->set_round(round);
  s->set_mode(spec.mode);
  s->set_committed_round(round - 1);
  s->set_seed(spec.seed);
  s->set_local_steps(static_cast<uint32_t>(spec.local_steps));
  s->set_weights_hash(weights_hash);
  s->set_job_spec_yaml(EffectiveJobSpecYaml(spec));
  return envelope;
}

TEST(WorkerDaemonTest, HashMismatchDropsTheReplicaAndTheNextRoundRebuildsItByCatchUp) {
  World world;
  const JobSpec spec = world.Spec("fedavg");
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  RunningWorker worker(Options(world, coordinator.endpoint()));
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());

  auto oracle = world.Replica();
  coordinator.Push(Start("job-3", 1, HashHex(WeightsHash(oracle->params())), spec));
  auto upload1 = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload1.has_value());
  EXPECT_EQ(upload1->message.envelope.upload_update().payload_kind(), "dense_delta");
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload1, ack);
  const std::string& payload1 = upload1->message.envelope.upload_update().payload();
  const std::vector<uint8_t> aggregate1(payload1.begin(), payload1.end());
  ASSERT_TRUE(testutil::ApplyRound(spec, 1, aggregate1, &oracle->params()).ok());
  const uint64_t hash1 = WeightsHash(oracle->params());

  // A committed hash that disagrees with the replica's: the replica is dropped (no longer reported).
  coordinator.Push(Committed("job-3", 1, aggregate1, hash1 ^ 1));
  auto without = coordinator.WaitFor([](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().replicas_size() == 0;
  });
  ASSERT_TRUE(without.has_value());

  // Round 2 rebuilds it from the base model by catch-up, then trains on the synced replica.
  coordinator.Push(Start("job-3", 2, HashHex(hash1), spec));
  auto catch_up = coordinator.WaitForBody(Envelope::kCatchUpRequest);
  ASSERT_TRUE(catch_up.has_value());
  EXPECT_EQ(catch_up->message.envelope.catch_up_request().from_round(), 0u);
  EXPECT_EQ(catch_up->message.envelope.catch_up_request().to_round(), 1u);
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::CatchUpReply* body = reply.mutable_catch_up_reply();
  body->set_job_id("job-3");
  body->set_spec_yaml(EffectiveJobSpecYaml(spec));
  body->set_state("RUNNING");
  body->set_last_committed_round(1);
  v1::CommittedAggregate* round1 = body->add_rounds();
  round1->set_round(1);
  round1->set_aggregate(payload1);
  round1->set_weights_hash(HashHex(hash1));
  coordinator.Reply(*catch_up, reply);
  auto upload2 = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload2.has_value());
  TaskletInput input{spec, 2, "w1", &world.rows};
  auto expected = testutil::RunModelTasklet(input, *oracle);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  EXPECT_EQ(upload2->message.envelope.upload_update().round(), 2u);
  EXPECT_EQ(upload2->message.envelope.upload_update().payload(), Bytes(expected->payload));
  EXPECT_TRUE(worker.Stop().ok());
}

// A tasklet that throws (std::bad_alloc, as one too large for the host's memory does) does not kill the
// daemon: the job's problem names the job and round and goes out in every heartbeat, and the replica is
// dropped. Once the job commits the round without this worker, its back-off is over: the problem clears,
// the replica is warmed by catch-up, and the next round it is sent trains and uploads.
TEST(WorkerDaemonTest, ATaskletThatThrowsIsReportedAsCannotTrainAndTheWorkerGoesOn) {
  World world;
  const JobSpec spec = world.Spec("ferret");
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  std::atomic<int> throws{1};
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.before_tasklet = [&throws](const std::string&, uint64_t) {
    if (throws.fetch_sub(1) > 0) throw std::bad_alloc();
  };
  RunningWorker worker(options);
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());

  auto oracle = world.Replica();
  coordinator.Push(Start("job-oom", 1, HashHex(WeightsHash(oracle->params())), spec));
  auto reported = coordinator.WaitFor([](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().problems_size() > 0;
  });
  ASSERT_TRUE(reported.has_value());
  const v1::Heartbeat& hb = reported->message.envelope.heartbeat();
  ASSERT_EQ(hb.problems_size(), 1);
  EXPECT_EQ(hb.problems(0).job_id(), "job-oom");
  EXPECT_EQ(hb.problems(0).round(), 1u);
  EXPECT_NE(hb.problems(0).reason().find("out of memory while training job job-oom round 1 (std::bad_alloc)"),
            std::string::npos)
      << hb.problems(0).reason();
  EXPECT_EQ(hb.replicas_size(), 0) << "the replica the exception interrupted is dropped";
  // The daemon goes on: heartbeats keep coming, with the problem.
  const uint64_t sequence = hb.sequence();
  auto later = coordinator.WaitFor([sequence](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().sequence() >= sequence + 3;
  });
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->message.envelope.heartbeat().problems_size(), 1);

  // The job commits round 1 without this worker: the problem clears and the replica is warmed.
  const std::vector<uint8_t> aggregate1 = OracleRound(spec, 1, world.rows, *oracle);
  const uint64_t hash1 = WeightsHash(oracle->params());
  coordinator.Push(Committed("job-oom", 1, aggregate1, hash1));
  auto catch_up = coordinator.WaitForBody(Envelope::kCatchUpRequest);
  ASSERT_TRUE(catch_up.has_value());
  coordinator.Reply(*catch_up, CatchUpToRound1("job-oom", spec, aggregate1, hash1));
  auto cleared = coordinator.WaitFor([&](const Incoming& in) {
    if (!in.message.envelope.has_heartbeat() || in.message.envelope.heartbeat().problems_size() != 0) return false;
    for (const v1::ReplicaState& r : in.message.envelope.heartbeat().replicas())
      if (r.job_id() == "job-oom" && r.round() == 1 && r.weights_hash() == HashHex(hash1)) return true;
    return false;
  });
  ASSERT_TRUE(cleared.has_value());

  // Round 2 trains and uploads.
  coordinator.Push(Start("job-oom", 2, HashHex(hash1), spec));
  auto upload = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload.has_value());
  EXPECT_EQ(upload->message.envelope.upload_update().round(), 2u);
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_job_id("job-oom");
  ack.mutable_upload_ack()->set_round(2);
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload, ack);
  EXPECT_TRUE(worker.Stop().ok());
}

// A worker left out of a job's rounds for a problem tries again after 1, 2, 4, 8, then at most 16 committed
// rounds, counting its failures in a row.
TEST(ComputeLoopTest, AProblemSitsOutTwiceAsManyCommittedRoundsAfterEachFailureInARow) {
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 1), 5u);  // cleared when round 5, the failed one, commits
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 2), 6u);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 3), 8u);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 4), 12u);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 5), 20u);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 6), 20u);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(5, 1000), 5u + ComputeLoop::kMaxRetryBackoffRounds - 1);
  EXPECT_EQ(ComputeLoop::RetryAfterRound(0, 1), 0u);  // a refused RoundStart of round 0 does not wrap
}

TEST(WorkerDaemonTest, UploadAboveTheInlineThresholdIsPulledAsABulkObject) {
  World world;
  const JobSpec spec = world.Spec("fedavg");
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.inline_payload_bytes = 1024;  // the tiny model's fedavg delta is ~100 KiB
  RunningWorker worker(options);
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  auto oracle = world.Replica();
  coordinator.Push(Start("job-5", 1, HashHex(WeightsHash(oracle->params())), spec));
  auto upload = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload.has_value());
  const v1::UploadUpdate u = upload->message.envelope.upload_update();
  EXPECT_TRUE(u.payload().empty());
  EXPECT_EQ(u.payload_object_id(), "upload/job-5/1/w1");

  // Pull it the way the coordinator does: BulkRequests to the routing id the UploadUpdate came from.
  transport::BufferSink sink(u.payload_size());
  transport::BulkReceiver receiver(u.payload_object_id(), &sink, 4, "worker w1");
  receiver.ExpectObjectChecksum(u.payload_checksum());
  while (!receiver.complete()) {
    while (auto request = receiver.NextRequest()) {
      Envelope env = transport::NewEnvelope("coordinator");
      *env.mutable_bulk_request() = *request;
      ASSERT_TRUE(coordinator.server().Send(upload->peer.routing_id, env).ok());
    }
    auto chunk = coordinator.WaitForBody(Envelope::kBulkChunkHeader);
    ASSERT_TRUE(chunk.has_value());
    ASSERT_EQ(chunk->message.bulk.size(), 1u);
    ASSERT_TRUE(receiver.OnChunk(chunk->message.envelope.bulk_chunk_header(), chunk->message.bulk[0]).ok());
  }
  ASSERT_TRUE(receiver.Finish().ok());
  EXPECT_EQ(sink.data().size(), u.payload_size());
  TaskletInput input{spec, 1, "w1", &world.rows};
  auto expected = testutil::RunModelTasklet(input, *oracle);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  EXPECT_EQ(sink.data(), Bytes(expected->payload));
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload, ack);
  // Accepted: the worker goes idle and sends no other upload.
  auto idle = coordinator.WaitFor([](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().state() == "idle";
  });
  ASSERT_TRUE(idle.has_value());
  EXPECT_EQ(std::count(coordinator.received.begin(), coordinator.received.end(), Envelope::kUploadUpdate), 1);
  EXPECT_TRUE(worker.Stop().ok());
}

TEST(WorkerDaemonTest, RefusesADensePayloadAboveTheLimit) {
  World world;
  const JobSpec spec = world.Spec("fedavg");
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.max_dense_payload_bytes = 1024;  // the tiny model's fedavg delta is ~100 KiB
  RunningWorker worker(options);
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  auto oracle = world.Replica();
  coordinator.Push(Start("job-4", 1, HashHex(WeightsHash(oracle->params())), spec));
  // Idle again with the job's replica loaded: the RoundStart was handled, and nothing was uploaded.
  auto done = coordinator.WaitFor([](const Incoming& in) {
    if (!in.message.envelope.has_heartbeat()) return false;
    const v1::Heartbeat& h = in.message.envelope.heartbeat();
    return h.state() == "idle" && h.replicas_size() == 1 && h.replicas(0).job_id() == "job-4";
  });
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(std::count(coordinator.received.begin(), coordinator.received.end(), Envelope::kUploadUpdate), 0);
  EXPECT_TRUE(worker.Stop().ok());
}

TEST(WorkerDaemonTest, CurveWorkerWarmsAReplicaByCatchUpAndReregistersWithoutAcks) {
  World world;
  const JobSpec spec = world.Spec("fedavg");
  auto server_keys = transport::GenerateKeyPair();
  auto worker_keys = transport::GenerateKeyPair();
  ASSERT_TRUE(server_keys.ok() && worker_keys.ok());
  transport::ServerOptions server_options;
  server_options.keys = *server_keys;
  ASSERT_TRUE(server_options.allow_list.Add(worker_keys->public_key, "w1").ok());
  ScriptedCoordinator coordinator(server_options);
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.insecure = false;
  options.keys = *worker_keys;
  options.coordinator_public_key = server_keys->public_key;
  RunningWorker worker(options);

  auto reg = coordinator.WaitForBody(Envelope::kRegisterWorker);
  ASSERT_TRUE(reg.has_value());
  EXPECT_EQ(reg->peer.public_key, worker_keys->public_key);

  // A committed round of a job it has no replica of, on its dataset: it loads one and catches up from 0.
  auto oracle = world.Replica();
  const std::vector<uint8_t> aggregate1 = OracleRound(spec, 1, world.rows, *oracle);
  const uint64_t hash1 = WeightsHash(oracle->params());
  ASSERT_NE(hash1, WeightsHash(world.base->params())) << "the round must change the model";
  coordinator.Push(Committed("job-2", 1, aggregate1, hash1));
  auto catch_up = coordinator.WaitForBody(Envelope::kCatchUpRequest);
  ASSERT_TRUE(catch_up.has_value());
  EXPECT_EQ(catch_up->peer.public_key, worker_keys->public_key);
  EXPECT_EQ(catch_up->message.envelope.catch_up_request().from_round(), 0u);
  coordinator.Reply(*catch_up, CatchUpToRound1("job-2", spec, aggregate1, hash1));
  EXPECT_TRUE(coordinator.WaitForReplica("job-2", 1, HashHex(hash1)));

  // No HeartbeatAck for heartbeat_miss_limit intervals: it registers again.
  const int registers_before = coordinator.registers;
  coordinator.ack_heartbeats = false;
  EXPECT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  EXPECT_EQ(coordinator.registers, registers_before + 1);
  EXPECT_TRUE(worker.Stop().ok());
}

Envelope RoundOneStart(const World& world, const JobSpec& spec) {
  Envelope start = transport::NewEnvelope("coordinator");
  v1::RoundStart* s = start.mutable_round_start();
  s->set_job_id("job-1");
  s->set_round(1);
  s->set_mode("ferret");
  s->set_committed_round(0);
  s->set_seed(spec.seed);
  s->set_local_steps(static_cast<uint32_t>(spec.local_steps));
  s->set_weights_hash(HashHex(WeightsHash(world.base->params())));
  s->set_job_spec_yaml(EffectiveJobSpecYaml(spec));
  return start;
}

bool IsHeartbeat(const Incoming& in, const std::string& state) {
  return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().state() == state;
}

// A stop request during an upload: the worker keeps heartbeating ("uploading"), waits for the upload's
// ack instead of giving it up, and only then sends its "leaving"
// heartbeat and stops.
TEST(WorkerDaemonTest, StopDrainsTheUploadInProgressThenSaysItIsLeaving) {
  World world;
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.drain_timeout_ms = 60000;
  options.request_timeout_ms = 60000;  // the upload is not re-sent while the test holds its ack back
  RunningWorker worker(options);
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  ASSERT_TRUE(coordinator.WaitFor([](const Incoming& in) { return in.message.envelope.has_heartbeat(); }).has_value());
  coordinator.Push(RoundOneStart(world, world.Spec("ferret")));
  auto upload = coordinator.WaitForBody(Envelope::kUploadUpdate);
  ASSERT_TRUE(upload.has_value());

  worker.RequestStop();
  // Three heartbeats after the stop request, all "uploading": the worker stays up for its upload (a
  // worker that gave the upload up would have sent "leaving" or gone silent).
  bool left_early = false;
  int uploading = 0;
  ASSERT_TRUE(coordinator
                  .WaitFor([&](const Incoming& in) {
                    left_early = left_early || IsHeartbeat(in, "leaving");
                    uploading += IsHeartbeat(in, "uploading") ? 1 : 0;
                    return left_early || uploading == 3;
                  })
                  .has_value());
  EXPECT_FALSE(left_early) << "the worker left before its upload was acknowledged";
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_job_id("job-1");
  ack.mutable_upload_ack()->set_round(1);
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload, ack);
  ASSERT_TRUE(coordinator.WaitFor([](const Incoming& in) { return IsHeartbeat(in, "leaving"); }).has_value());
  EXPECT_TRUE(worker.Stop().ok());
}

// The drain is bounded: an upload never acknowledged is given up after drain_timeout_ms, and the worker
// still says it is leaving and stops cleanly.
TEST(WorkerDaemonTest, DrainTimeoutGivesUpTheUploadAndStops) {
  World world;
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.drain_timeout_ms = 300;
  RunningWorker worker(options);
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  ASSERT_TRUE(coordinator.WaitFor([](const Incoming& in) { return in.message.envelope.has_heartbeat(); }).has_value());
  coordinator.Push(RoundOneStart(world, world.Spec("ferret")));
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kUploadUpdate).has_value());

  worker.RequestStop();
  ASSERT_TRUE(coordinator.WaitFor([](const Incoming& in) { return IsHeartbeat(in, "leaving"); }).has_value());
  EXPECT_TRUE(worker.Stop().ok());
}

// Runs round 1 of job-1 on a worker with `calibration` (its upload acknowledged) and returns the
// heartbeat that follows the upload: by then the replica was built, and calibrated when enabled.
v1::Heartbeat HeartbeatAfterRoundOne(const World& world, const CalibrationOptions& calibration,
                                     ScriptedCoordinator& coordinator) {
  WorkerOptions options = Options(world, coordinator.endpoint());
  options.calibration = calibration;
  RunningWorker worker(options);
  EXPECT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  coordinator.Push(RoundOneStart(world, world.Spec("ferret")));
  auto upload = coordinator.WaitForBody(Envelope::kUploadUpdate);
  if (!upload.has_value()) return {};
  Envelope ack = transport::NewEnvelope("coordinator");
  ack.mutable_upload_ack()->set_job_id("job-1");
  ack.mutable_upload_ack()->set_round(1);
  ack.mutable_upload_ack()->set_accepted(true);
  coordinator.Reply(*upload, ack);
  auto next = coordinator.WaitFor([](const Incoming& in) { return in.message.envelope.has_heartbeat(); });
  EXPECT_TRUE(worker.Stop().ok());
  return next.has_value() ? next->message.envelope.heartbeat() : v1::Heartbeat{};
}

// The job's replica is calibrated once when it is built; every later heartbeat repeats that one
// measurement (same rate, same time) for the job.
TEST(WorkerDaemonTest, HeartbeatsReportTheJobsCalibratedComputeRateMeasuredOnce) {
  World world;
  transport::ServerOptions server_options;
  server_options.insecure = true;
  ScriptedCoordinator coordinator(server_options);
  RunningWorker worker(Options(world, coordinator.endpoint()));
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kRegisterWorker).has_value());
  coordinator.Push(RoundOneStart(world, world.Spec("ferret")));
  ASSERT_TRUE(coordinator.WaitForBody(Envelope::kUploadUpdate).has_value());
  auto first = coordinator.WaitFor([](const Incoming& in) {
    return in.message.envelope.has_heartbeat() && in.message.envelope.heartbeat().calibrations_size() > 0;
  });
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->message.envelope.heartbeat().calibrations_size(), 1);
  const v1::JobCalibration measured = first->message.envelope.heartbeat().calibrations(0);
  EXPECT_EQ(measured.job_id(), "job-1");
  EXPECT_TRUE(std::isfinite(measured.tokens_per_s()));
  EXPECT_GT(measured.tokens_per_s(), 0);
  EXPECT_GT(measured.measured_unix_ms(), 0);
  int repeated = 0;
  bool changed = false;
  ASSERT_TRUE(coordinator
                  .WaitFor([&](const Incoming& in) {
                    if (!in.message.envelope.has_heartbeat()) return false;
                    const v1::Heartbeat& h = in.message.envelope.heartbeat();
                    changed = changed || h.calibrations_size() != 1 ||
                              h.calibrations(0).SerializeAsString() != measured.SerializeAsString();
                    return changed || ++repeated == 3;
                  })
                  .has_value());
  EXPECT_FALSE(changed) << "the job was calibrated again, or its calibration was lost";
  EXPECT_TRUE(worker.Stop().ok());
}

TEST(WorkerDaemonTest, TokensPerSecondOverridesCalibrationAndCalibrateFalseReportsNone) {
  World world;
  transport::ServerOptions server_options;
  server_options.insecure = true;
  {
    ScriptedCoordinator coordinator(server_options);
    CalibrationOptions overridden;
    overridden.tokens_per_s = 1234.5;
    const v1::Heartbeat heartbeat = HeartbeatAfterRoundOne(world, overridden, coordinator);
    ASSERT_EQ(heartbeat.calibrations_size(), 1);
    EXPECT_EQ(heartbeat.calibrations(0).job_id(), "job-1");
    EXPECT_EQ(heartbeat.calibrations(0).tokens_per_s(), 1234.5) << "the override is reported as given";
  }
  {
    ScriptedCoordinator coordinator(server_options);
    CalibrationOptions disabled;
    disabled.enabled = false;
    const v1::Heartbeat heartbeat = HeartbeatAfterRoundOne(world, disabled, coordinator);
    EXPECT_EQ(heartbeat.replicas_size(), 1) << "the replica was built";
    for (const v1::Heartbeat& h : coordinator.heartbeats) EXPECT_EQ(h.calibrations_size(), 0);
  }
}

}  // namespace
}  // namespace tributary
