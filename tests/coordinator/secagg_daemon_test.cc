// Secure aggregation through the coordinator daemon in-process (Coordinator::Create + Run on a thread, real
// sockets on loopback, a real RocksDB store), its five clients played by hand with transport::Clients and
// real SecAggClients (federation/secagg.h): round 1 loses two clients after they sent their masked inputs,
// round 2 two clients after they shared keys; both rounds commit the survivors' weighted mean (checked
// against the plain aggregate within quantization), and the store holds no client's payload or quantized
// vector, only metadata records and the committed aggregate.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <thread>

#include "checkpoint/store.h"
#include "coordinator/coordinator.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/secagg.h"
#include "federation/secagg_job.h"
#include "tests/common/daemon_world.h"
#include "tests/common/temp_dir.h"
#include "transport/channel.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;
using transport::Envelope;
using transport::Message;

constexpr int kWaitMs = 30000;  // generous: a failure, not a timing assertion
constexpr int kClients = 5;

std::string Str(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), v.end());
}
std::vector<uint8_t> Vec(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

// One scripted worker: its connection, registration and SecAgg requests.
struct Peer {
  std::string id;
  std::unique_ptr<transport::Client> client;
  uint64_t samples = 0;
  std::vector<uint8_t> payload;
  std::optional<SecAggClient> secagg;
  SecAggRoundParams params;
  uint64_t weight_unit = 0;
  std::vector<uint32_t> quantized;  // the input it masked

  // Sends `request` and returns the reply answering it (pushed messages are dropped).
  Message Call(const Envelope& request) {
    EXPECT_TRUE(client->Send(request).ok());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
    while (std::chrono::steady_clock::now() < deadline) {
      auto in = client->Receive(50);
      if (in.ok() && in->envelope.in_reply_to() == request.message_id()) return std::move(*in);
    }
    ADD_FAILURE() << id << ": no reply";
    return {};
  }

  v1::SecAggReply Ask(const std::string& job, uint32_t round, uint32_t stage, const std::vector<uint8_t>& bytes) {
    Envelope env = transport::NewEnvelope(id);
    v1::SecAggRequest* r = env.mutable_secagg_request();
    r->set_job_id(job);
    r->set_round(round);
    r->set_worker_id(id);
    r->set_stage(stage);
    r->set_session(params.config.session);
    r->set_message(Str(bytes));
    r->set_num_samples(samples);
    r->set_loss(1.5);
    Message reply = Call(env);
    EXPECT_TRUE(reply.envelope.has_secagg_reply()) << transport::BodyName(reply.envelope.body_case());
    return reply.envelope.secagg_reply();
  }

  // Polls (empty message) until the stage's answer is no longer pending.
  v1::SecAggReply Await(const std::string& job, uint32_t round, uint32_t stage) {
    for (int i = 0; i < kWaitMs / 50; ++i) {
      v1::SecAggReply reply = Ask(job, round, stage, {});
      if (!reply.pending()) return reply;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << id << ": stage " << stage << " stayed pending";
    return {};
  }
};

// Connects `p` to the coordinator and registers it with its dataset size (after a restart too).
void ConnectAndRegister(const std::string& endpoint, transport::ClientOptions options, Peer& p) {
  options.name = p.id;
  auto client = transport::Client::Connect(endpoint, options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  p.client = std::move(*client);
  Envelope reg = transport::NewEnvelope(p.id);
  reg.mutable_register_worker()->set_worker_id(p.id);
  v1::DatasetInfo* d = reg.mutable_register_worker()->mutable_capabilities()->add_datasets();
  d->set_name("letters");
  d->set_samples(p.samples);
  reg.mutable_register_worker()->mutable_capabilities()->set_memory_bytes(uint64_t{8} << 30);
  ASSERT_TRUE(p.Call(reg).envelope.register_ack().accepted());
}

class SecAggDaemonTest : public ::testing::Test {
 protected:
  testutil::DaemonWorld world{64};
  testutil::TempDir data;

  JobSpec Spec() const {
    const std::string yaml = "name: secagg daemon test\nmodel:\n  base: " + world.model_dir +
                             "\ndata:\n  dataset: letters\n  seq_len: 64\n"
                             "federation:\n  mode: ferret\n  rounds: 2\n  seed: 9\n  min_clients: 5\n"
                             "  deadline_floor_s: 300\n  deadline_ceiling_s: 600\n"
                             "train:\n  local_steps: 1\n  batch_size: 4\n  lr: 0.1\n"
                             "ferret:\n  k: 16\n"
                             "secure_aggregation:\n  enabled: true\n  clip: 100\n  threshold: 3\n"
                             "  stage_timeout_s: 1\n";
    auto spec = ParseJobSpec(yaml, "secagg test spec");
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return *spec;
  }
};

// Each peer's payload of `round`: the method's encoding of a random step from `global`.
void MakePayloads(const FederatedMethod& method, const Arena& global, uint32_t round, std::vector<Peer>& peers) {
  for (size_t i = 0; i < peers.size(); ++i) {
    std::mt19937 rng(static_cast<uint32_t>(100 * round + i));
    std::normal_distribution<float> normal(0.0f, 0.01f);
    Arena w_new(global.table_ptr());
    w_new.CopyFrom(global);
    for (size_t t = 0; t < w_new.table().size(); ++t)
      for (float& x : w_new.span(t)) x -= normal(rng);
    auto payload = method.EncodeUpdate(global, w_new, round);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    peers[i].payload = *payload;
  }
}

// The plain round's aggregate of the `survivors` (peer indices) applied to `state`.
void ApplyPlain(const JobSpec& spec, const FederatedMethod& method, const std::vector<Peer>& peers,
                const std::vector<size_t>& survivors, uint32_t round, Arena* state) {
  std::vector<ClientPayload> clients;
  for (size_t i : survivors) clients.push_back({peers[i].id, peers[i].samples, peers[i].payload});
  auto aggregation = Aggregation::Create(spec.aggregation);
  auto plain = method.Aggregate(clients, spec.aggregation_weights, **aggregation, *state, round);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  ASSERT_TRUE(method.Apply(plain->bytes, round, state).ok());
}

// One round's session: every peer joins and advertises; `stop_after` peers send nothing after that stage.
void RunSession(const std::string& job, uint32_t round, const JobSpec& spec, const FederatedMethod& method,
                const Arena& global, std::vector<Peer>& peers, const std::vector<size_t>& stoppers,
                uint32_t stop_after) {
  auto active = [&](size_t i, uint32_t stage) {
    return stage <= stop_after || std::find(stoppers.begin(), stoppers.end(), i) == stoppers.end();
  };
  for (Peer& p : peers) {
    p.params.config.session = 0;
    v1::SecAggReply joined = p.Ask(job, round, 0, {});
    for (int i = 0; i < kWaitMs / 50 && joined.pending(); ++i) {  // the round is not open yet
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      joined = p.Ask(job, round, 0, {});
    }
    ASSERT_FALSE(joined.pending() || joined.dropped() || joined.restart()) << joined.reason();
    p.params = {{joined.session(), joined.dim(), joined.threshold(), joined.neighbours()},
                joined.client_id(),
                joined.num_clients(),
                joined.clip(),
                QuantizeRounding::kNearest};
    auto client = SecAggClient::Create(p.params.config, p.params.client_id);
    ASSERT_TRUE(client.ok());
    p.secagg.emplace(std::move(*client));
  }
  for (Peer& p : peers) p.Ask(job, round, 1, p.secagg->AdvertiseKeys().Serialize());
  std::vector<v1::SecAggReply> answers(peers.size());
  for (size_t i = 0; i < peers.size(); ++i) answers[i] = peers[i].Await(job, round, 1);
  for (size_t i = 0; i < peers.size(); ++i) {
    peers[i].weight_unit = answers[i].weight_unit();
    auto shares = peers[i].secagg->ShareKeys(KeyDirectoryMsg::Parse(Vec(answers[i].message())).value());
    ASSERT_TRUE(shares.ok()) << shares.status().ToString();
    if (active(i, 2)) peers[i].Ask(job, round, 2, shares->Serialize());
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    if (!active(i, 2)) continue;
    answers[i] = peers[i].Await(job, round, 2);
    Peer& p = peers[i];
    const double weight = SecAggClientWeight(spec.aggregation_weights, p.samples, p.weight_unit);
    auto input = MakeSecAggInput(method, p.payload, global, round, 0, weight, p.params, 1);
    ASSERT_TRUE(input.ok()) << input.status().ToString();
    EXPECT_EQ(input->clipped_coordinates, 0);
    p.quantized = input->quantized;
    if (!active(i, 3)) continue;
    auto masked = p.secagg->MaskInput(ForwardedSharesMsg::Parse(Vec(answers[i].message())).value(), p.quantized);
    ASSERT_TRUE(masked.ok()) << masked.status().ToString();
    p.Ask(job, round, 3, masked->Serialize());
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    if (!active(i, 3)) continue;
    answers[i] = peers[i].Await(job, round, 3);  // after the stage timeout when peers stopped
    if (!active(i, 4)) continue;
    auto response = peers[i].secagg->Unmask(UnmaskRequestMsg::Parse(Vec(answers[i].message())).value());
    ASSERT_TRUE(response.ok()) << response.status().ToString();
    peers[i].Ask(job, round, 4, response->Serialize());
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    if (!active(i, 4)) continue;
    v1::SecAggReply done = peers[i].Await(job, round, 4);
    EXPECT_FALSE(done.dropped() || done.restart()) << done.reason();  // done, or the round is committed
  }
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) != haystack.end();
}

// Every key and value of every column family of the store, read with RocksDB itself (so compressed
// tables are seen decompressed).
std::string StoreBytes(const std::string& dir) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, families, &handles, &db).ok());
  std::string all;
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
    for (it->SeekToFirst(); it->Valid(); it->Next()) all += it->key().ToString() + it->value().ToString();
    db->DestroyColumnFamilyHandle(handle);
  }
  delete db;
  EXPECT_GT(names.size(), 3u);
  return all;
}

TEST_F(SecAggDaemonTest, RoundsCommitTheSurvivorsSumAfterDropoutsAndTheStoreHoldsNoUpdate) {
  const JobSpec spec = Spec();
  CoordinatorOptions options;
  options.listen = "tcp://127.0.0.1:*";
  options.data_dir = data.path();
  options.insecure = true;
  options.heartbeat_interval_ms = 1000;
  options.heartbeat_misses = 600;  // the peers do not heartbeat
  options.restart_grace_ms = 0;
  auto created = Coordinator::Create(options);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Coordinator> coordinator = std::move(*created);
  std::atomic<bool> stop{false};
  std::thread loop([&] { coordinator->Run(&stop).IgnoreError(); });

  transport::ClientOptions client_options;
  client_options.insecure = true;
  std::vector<Peer> peers(kClients);
  for (int i = 0; i < kClients; ++i) {
    Peer& p = peers[static_cast<size_t>(i)];
    p.id = "w" + std::to_string(i + 1);
    p.samples = 10 + 7 * static_cast<uint64_t>(i);
    ConnectAndRegister(coordinator->endpoint(), client_options, p);
  }
  client_options.name = "cli";
  auto cli = transport::Client::Connect(coordinator->endpoint(), client_options);
  ASSERT_TRUE(cli.ok());
  Envelope submit = transport::NewEnvelope("cli");
  submit.mutable_submit_job()->set_spec_yaml(EffectiveJobSpecYaml(spec));
  auto submitted = (*cli)->Request(submit, kWaitMs);
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job = submitted->envelope.submit_job_reply().job_id();
  ASSERT_FALSE(job.empty()) << submitted->envelope.submit_job_reply().error();

  // A plain UploadUpdate is refused for a SecAgg job.
  Envelope upload = transport::NewEnvelope("w1");
  upload.mutable_upload_update()->set_job_id(job);
  upload.mutable_upload_update()->set_round(1);
  upload.mutable_upload_update()->set_worker_id("w1");
  const v1::UploadAck ack = peers[0].Call(upload).envelope.upload_ack();
  EXPECT_FALSE(ack.accepted());
  EXPECT_NE(ack.reason().find("uses secure aggregation"), std::string::npos) << ack.reason();

  auto replica = world.Replica();
  auto method = CreateMethod(spec, replica->params().table_ptr());
  ASSERT_TRUE(method.ok());
  Arena expected(replica->params().table_ptr());
  expected.CopyFrom(replica->params());
  // Round 1: w4 and w5 stop after their masked inputs (they are in the sum; the others unmask it).
  MakePayloads(**method, expected, 1, peers);
  RunSession(job, 1, spec, **method, expected, peers, {3, 4}, 3);
  std::vector<std::vector<uint8_t>> round_payloads[2];
  std::vector<std::vector<uint32_t>> round_quantized[2];
  for (const Peer& p : peers) round_payloads[0].push_back(p.payload), round_quantized[0].push_back(p.quantized);
  Arena plain(expected.table_ptr());
  plain.CopyFrom(expected);
  ApplyPlain(spec, **method, peers, {0, 1, 2, 3, 4}, 1, &plain);
  // Round 2 (from the committed round 1, fetched below): w2 and w5 stop after sharing keys (dropped).
  Envelope get = transport::NewEnvelope("cli");
  get.mutable_get_job()->set_job_id(job);
  for (int i = 0; i < kWaitMs / 50; ++i) {
    auto reply = (*cli)->Request(get, kWaitMs);
    ASSERT_TRUE(reply.ok());
    if (reply->envelope.get_job_reply().job().round() >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;  // pause here: the aggregate of round 1 comes from the store
  loop.join();
  coordinator.reset();
  {
    auto store = checkpoint::CheckpointStore::Open((fs::path(data.path()) / "store").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto r1 = (*store)->GetRound(job, 1);
    ASSERT_TRUE(r1.ok()) << r1.status().ToString();
    ASSERT_TRUE((*method)->Apply(Vec(r1->aggregate), 1, &expected).ok());
    ASSERT_EQ(r1->participants.size(), 5u);
    for (const auto& p : r1->participants) EXPECT_FALSE(p.excluded) << p.worker_id;
  }
  double diff = 0;
  for (int64_t i = 0; i < plain.size(); ++i)
    diff = std::max(diff, std::fabs(double{plain.data()[i]} - expected.data()[i]));
  EXPECT_LT(diff, 1e-5) << "round 1: secure vs plain weighted mean";

  // The coordinator restarts (the job resumes at round 1 and opens round 2 with a fresh session).
  created = Coordinator::Create(options);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  coordinator = std::move(*created);
  stop = false;
  loop = std::thread([&] { coordinator->Run(&stop).IgnoreError(); });
  for (Peer& p : peers) {
    ConnectAndRegister(coordinator->endpoint(), client_options, p);
  }
  MakePayloads(**method, expected, 2, peers);
  RunSession(job, 2, spec, **method, expected, peers, {1, 4}, 2);
  for (const Peer& p : peers) round_payloads[1].push_back(p.payload), round_quantized[1].push_back(p.quantized);
  plain.CopyFrom(expected);
  ApplyPlain(spec, **method, peers, {0, 2, 3}, 2, &plain);
  client_options.name = "cli";
  cli = transport::Client::Connect(coordinator->endpoint(), client_options);
  ASSERT_TRUE(cli.ok());
  std::string state;
  for (int i = 0; i < kWaitMs / 50 && state.rfind("FINISHED", 0) != 0; ++i) {
    auto reply = (*cli)->Request(get, kWaitMs);
    ASSERT_TRUE(reply.ok());
    state = reply->envelope.get_job_reply().job().state();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(state, "FINISHED:COMPLETED");
  stop = true;
  loop.join();
  coordinator.reset();

  const std::string store_dir = (fs::path(data.path()) / "store").string();
  auto store = checkpoint::CheckpointStore::Open(store_dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto r2 = (*store)->GetRound(job, 2);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  ASSERT_TRUE((*method)->Apply(Vec(r2->aggregate), 2, &expected).ok());
  diff = 0;
  for (int64_t i = 0; i < plain.size(); ++i)
    diff = std::max(diff, std::fabs(double{plain.data()[i]} - expected.data()[i]));
  EXPECT_LT(diff, 1e-5) << "round 2: secure vs plain weighted mean of the survivors";
  // The round's report lists the survivors and, excluded, the clients that dropped after sharing keys.
  std::vector<std::string> excluded;
  for (const auto& p : r2->participants)
    if (p.excluded) excluded.push_back(p.worker_id);
  EXPECT_EQ(excluded, (std::vector<std::string>{"w2", "w5"}));
  EXPECT_EQ(r2->participants.size(), 5u);
  for (const auto& p : r2->participants) EXPECT_TRUE(std::isnan(p.anomaly_score));

  // What is stored: per included client a metadata record without payload; no client's payload or
  // quantized vector anywhere in the store's files (the committed aggregates are, as a control).
  for (uint32_t round : {1u, 2u}) {
    auto updates = (*store)->ListUpdates(job, round);
    ASSERT_TRUE(updates.ok());
    EXPECT_EQ(updates->size(), round == 1 ? 5u : 3u);
    for (const auto& u : *updates) EXPECT_TRUE(u.payload.empty()) << u.worker_id;
  }
  store->reset();  // closed: the scan opens it read-only
  const std::string bytes = StoreBytes(store_dir);
  ASSERT_TRUE(Contains(bytes, r2->aggregate)) << "the scan must see stored values";
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < peers.size(); ++i) {
      EXPECT_FALSE(Contains(bytes, Str(round_payloads[r][i]))) << "round " << r + 1 << " payload of " << peers[i].id;
      const auto& q = round_quantized[r][i];
      if (q.empty()) continue;
      const std::string qbytes(reinterpret_cast<const char*>(q.data()), q.size() * sizeof(uint32_t));
      EXPECT_FALSE(Contains(bytes, qbytes)) << "round " << r + 1 << " quantized input of " << peers[i].id;
    }
  }
}

}  // namespace
}  // namespace tributary
