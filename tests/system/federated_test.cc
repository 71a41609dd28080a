// Whole jobs through real daemons: a coordinator and 4 workers as processes on loopback (CURVE on),
// real RocksDB, driven over the wire protocol.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <cmath>
#include <filesystem>

#include "base/file_util.h"
#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"
#include "federation/replica_state.h"
#include "peft/ferret.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// Runs one ferret job in a fresh cluster; returns the final weights hash.
std::string RunFerretJob(const std::string& dir, uint64_t seed, int rounds, v1::GetJobReply* out = nullptr) {
  TestCluster cluster(dir);
  const std::string yaml = JobYaml(cluster.base_model(), "ferret", rounds, seed);
  const std::string job_id = Submit(cluster.client(), yaml);
  v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  EXPECT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  if (out != nullptr) *out = job;
  return job.rounds_size() > 0 ? job.rounds(job.rounds_size() - 1).weights_hash() : "";
}

TEST(FederatedSystemTest, FerretJobTrainsWithFormulaBytesAndReplicasInSync) {
  TestDir dir;
  std::string yaml;
  std::string job_id;
  {
    TestCluster cluster(dir.path());
    yaml = JobYaml(cluster.base_model(), "ferret", 3, 5);
    const double initial = InitialHeldOutLoss(cluster, yaml);
    job_id = Submit(cluster.client(), yaml);
    ASSERT_FALSE(job_id.empty());
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
    ASSERT_EQ(job.rounds_size(), 3);
    for (const v1::RoundSummary& r : job.rounds()) EXPECT_EQ(r.participants(), 4u) << "round " << r.round();
    const double final_loss = job.rounds(2).heldout_loss();
    EXPECT_LT(final_loss, initial - 0.5) << "held-out loss " << initial << " -> " << final_loss;
    EXPECT_LT(job.rounds(2).train_loss(), job.rounds(0).train_loss());
    // Workers report their replicas in heartbeats: wait until all four reported the last round.
    ExpectReplicasAtFinalHash(cluster.client(), job_id, 3, job.rounds(2).weights_hash(), 4);

    // The daemon's HTTP endpoint: probes, Prometheus metrics and the JSON job view.
    httplib::Client http("127.0.0.1", cluster.cluster().http_port());
    auto ready = http.Get("/readyz");
    ASSERT_TRUE(ready) << httplib::to_string(ready.error());
    EXPECT_EQ(ready->status, 200);
    auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("tributary_rounds_committed_total{job=\"" + job_id + "\"} 3"), std::string::npos)
        << metrics->body;
    EXPECT_NE(metrics->body.find("tributary_workers_alive 4"), std::string::npos) << metrics->body;
    EXPECT_NE(metrics->body.find("tributary_jobs{state=\"completed\"} 1"), std::string::npos) << metrics->body;
    auto api = http.Get("/api/jobs/" + job_id);
    ASSERT_TRUE(api);
    EXPECT_EQ(api->status, 200);
    EXPECT_NE(api->body.find("FINISHED:COMPLETED"), std::string::npos) << api->body;
  }
  // With the daemons stopped, the store holds every accepted upload: each one's size is the spec's
  // 8 + 4 L + sum_l K_l * b, and the rounds' byte counts are their sums.
  auto spec = ParseJobSpec(yaml, "spec");
  ASSERT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  ASSERT_TRUE(model.ok());
  auto blocks = MakeFerretBlocks(spec->ferret, (*model)->initial_state().table());
  ASSERT_TRUE(blocks.ok());
  const size_t num_blocks = blocks->size();
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir.path()) / "store" / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint32_t round = 1; round <= 3; ++round) {
    auto updates = (*store)->ListUpdates(job_id, round);
    ASSERT_TRUE(updates.ok());
    ASSERT_EQ(updates->size(), 4u);
    uint64_t sum = 0;
    for (const checkpoint::UpdateRecord& u : *updates) {
      const auto* bytes = reinterpret_cast<const uint8_t*>(u.payload.data());
      ASSERT_GE(u.payload.size(), 8u);
      const size_t blocks_in_header = bytes[4] | (bytes[5] << 8);
      ASSERT_EQ(blocks_in_header, num_blocks);
      const size_t b = bytes[6] == 0 ? 4 : 2;
      size_t expected = 8 + 4 * num_blocks, pos = 8;
      for (size_t l = 0; l < num_blocks; ++l) {
        const size_t k = bytes[pos + 2] | (bytes[pos + 3] << 8);
        expected += k * b;
        pos += 4 + k * b;
      }
      EXPECT_EQ(u.payload.size(), expected) << u.worker_id << " round " << round;
      sum += u.payload.size();
    }
    auto record = (*store)->GetRound(job_id, round);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->metrics.bytes_up, sum);
  }
}

TEST(FederatedSystemTest, SameSeedGivesBitIdenticalModelAndCoordinatorKillResumesToIt) {
  TestDir a, b, c;
  const std::string first = RunFerretJob(a.path(), 9, 3);
  const std::string second = RunFerretJob(b.path(), 9, 3);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, second) << "same seed, same data, same cluster: the final weights must be bit-identical";

  // kill -9 the coordinator in round 2 after it accepted an upload; restart it on the same store.
  TestCluster cluster(c.path());
  const std::string job_id = Submit(cluster.client(), JobYaml(cluster.base_model(), "ferret", 3, 9));
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [&](const v1::GetJobReply& job) {
    for (const std::string& line : JobLog(cluster.client(), job_id)) {
      if (line.find("round 2: upload from") != std::string::npos) return true;
    }
    (void)job;
    return false;
  }));
  cluster.cluster().KillCoordinator(SIGKILL);
  ASSERT_TRUE(cluster.cluster().StartCoordinator().ok());
  cluster.Reconnect();
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ASSERT_EQ(job.rounds_size(), 3);
  EXPECT_EQ(job.rounds(2).weights_hash(), first) << "the resumed job must end where the fault-free run ended";
  bool resumed = false;
  for (const std::string& line : JobLog(cluster.client(), job_id))
    resumed = resumed || line.find("resumed after a coordinator restart") != std::string::npos;
  EXPECT_TRUE(resumed);
}

TEST(FederatedSystemTest, WorkerKilledMidRoundCatchesUpToTheCoordinatorsModel) {
  TestDir dir;
  TestCluster cluster(dir.path());
  // Quorum 3 of 4, min_clients 3 and a short deadline, so rounds go on while worker-2 is down; a snapshot every round,
  // so the restarted worker (no replica, 2+ rounds behind) catches up from a snapshot, not by replay.
  const std::string job_id =
      Submit(cluster.client(), JobYaml(cluster.base_model(), "ferret", 5, 21,
                                       {"federation.min_clients=3", "federation.quorum=0.75",
                                        "federation.deadline_floor_s=2", "checkpoint.snapshot_every=1"}));
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) {
    return job.rounds_size() == 1 && job.workers_size() > 0;  // round 2 is open
  }));
  cluster.cluster().KillWorker(1, SIGKILL);
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 2; }));
  auto after_kill = GetJob(cluster.client(), job_id);
  ASSERT_TRUE(after_kill.ok());
  EXPECT_EQ(after_kill->rounds(1).participants(), 3u) << "round 2 completes without the killed worker";
  ASSERT_TRUE(cluster.cluster().StartWorker(1).ok());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  const std::string final_hash = job.rounds(job.rounds_size() - 1).weights_hash();
  // The restarted worker caught up (replay or snapshot) and holds the coordinator's final model.
  ExpectReplicaReaches(cluster.client(), job_id, "worker-2", 5, final_hash);
  auto log = ReadFileToString((fs::path(dir.path()) / "coordinator.log").string());
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("catch-up for worker 'worker-2' from round 0 to"), std::string::npos) << *log;
  EXPECT_NE(log->find("snapshot of round"), std::string::npos) << "the restarted worker should load a snapshot";
}

TEST(FederatedSystemTest, FedAvgAndLoraJobsRunConcurrently) {
  TestDir dir;
  TestCluster cluster(dir.path());
  const std::string fedavg = Submit(cluster.client(), JobYaml(cluster.base_model(), "fedavg", 2, 3));
  const std::string lora = Submit(cluster.client(), JobYaml(cluster.base_model(), "lora", 2, 3));
  for (const std::string& job_id : {fedavg, lora}) {
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    EXPECT_EQ(job.job().state(), "FINISHED:COMPLETED") << job_id << ": " << job.job().error();
    ASSERT_EQ(job.rounds_size(), 2);
    EXPECT_LT(job.rounds(1).heldout_loss(), job.rounds(0).heldout_loss() + 0.05) << job.job().mode();
    // Dense modes send the whole trainable state per client.
    EXPECT_EQ(job.rounds(0).bytes_up(), 4 * job.job().dense_state_bytes()) << job.job().mode();
  }
}

}  // namespace
}  // namespace tributary::system_test
