// Cluster mode through real daemons on loopback (docs/cluster.md): 4 workers in 2 islands of 2, each
// island one data-parallel group over gloo (rendezvous through the coordinator), an outer round every
// train.local_steps inner steps with the int8 codec and Nesterov outer optimizer.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"
#include "federation/outer_codec.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kIslands = {"cluster.islands=['a=worker-1,worker-2', 'b=worker-3,worker-4']",
                                           "cluster.codec=int8"};

std::string ClusterYaml(const TestCluster& cluster, int rounds, std::vector<std::string> overrides) {
  overrides.insert(overrides.end(), kIslands.begin(), kIslands.end());
  return JobYaml(cluster.base_model(), "cluster", rounds, 7, overrides);
}

bool LogHas(const std::vector<std::string>& log, const std::string& text) {
  for (const std::string& line : log)
    if (line.find(text) != std::string::npos) return true;
  return false;
}

// The int8 upload of one island: per tensor a 256-entry fp32 codebook and one byte per value.
uint64_t Int8PayloadBytes(const std::string& yaml) {
  auto spec = ParseJobSpec(yaml, "spec");
  EXPECT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  EXPECT_TRUE(model.ok());
  uint64_t bytes = 0;
  for (const TensorEntry& entry : (*model)->initial_state().table().entries())
    bytes += OuterCodecBytes(OuterCodec::kInt8, entry.numel);
  return bytes;
}

TEST(ClusterSystemTest, TwoIslandsTrainWithLeaderUploadsOfTheCodecsSizeAndEqualReplicas) {
  TestDir dir;
  std::string yaml, job_id;
  {
    TestCluster cluster(dir.path());
    yaml = ClusterYaml(cluster, 3, {});
    const double initial = InitialHeldOutLoss(cluster, yaml);
    job_id = Submit(cluster.client(), yaml);
    ASSERT_FALSE(job_id.empty());
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
    ASSERT_EQ(job.rounds_size(), 3);
    for (const v1::RoundSummary& r : job.rounds()) EXPECT_EQ(r.participants(), 2u) << "one upload per island";
    EXPECT_LT(job.rounds(2).heldout_loss(), initial - 0.5)
        << "held-out loss " << initial << " -> " << job.rounds(2).heldout_loss();
    // Every member of both islands applies each outer step to the same bits.
    ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& j) {
      int at_last = 0;
      for (const auto& r : j.replicas()) at_last += r.round() == 3 ? 1 : 0;
      return at_last == 4;
    }));
    auto synced = GetJob(cluster.client(), job_id);
    ASSERT_TRUE(synced.ok());
    for (const v1::ReplicaState& replica : synced->replicas())
      EXPECT_EQ(replica.weights_hash(), synced->rounds(2).weights_hash()) << replica.worker_id();
    const std::vector<std::string> log = JobLog(cluster.client(), job_id);
    EXPECT_FALSE(LogHas(log, "re-formed")) << "no member was lost";
  }
  // The store: per round exactly the two leaders' uploads, each the codec's size for this model.
  const uint64_t expected = Int8PayloadBytes(yaml);
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir.path()) / "store" / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint32_t round = 1; round <= 3; ++round) {
    auto updates = (*store)->ListUpdates(job_id, round);
    ASSERT_TRUE(updates.ok());
    ASSERT_EQ(updates->size(), 2u);
    EXPECT_EQ((*updates)[0].worker_id, "worker-1");
    EXPECT_EQ((*updates)[1].worker_id, "worker-3");
    for (const checkpoint::UpdateRecord& u : *updates) EXPECT_EQ(u.payload.size(), expected) << u.worker_id;
    auto record = (*store)->GetRound(job_id, round);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->metrics.bytes_up, 2 * expected);
    EXPECT_EQ(record->aggregate.size(), expected) << "the broadcast is in the codec too";
  }
}

TEST(ClusterSystemTest, KilledMemberIsEvictedItsIslandReformsAndTheOtherIslandLosesNoStep) {
  TestDir dir;
  TestCluster cluster(dir.path());
  // Long enough inner phases that the kill lands inside round 2; min_clients 3 so round 3 may start
  // while the killed worker is down.
  const std::string job_id = Submit(
      cluster.client(),
      ClusterYaml(cluster, 4, {"train.local_steps=40", "federation.min_clients=3", "cluster.collective_timeout_s=2"}));
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) {
    return job.rounds_size() == 1 && job.workers_size() > 0;  // round 2 is open
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster.cluster().KillWorker(1, SIGKILL);  // worker-2, island a's second member
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 2; }));
  const std::vector<std::string> log = JobLog(cluster.client(), job_id);
  EXPECT_TRUE(LogHas(log, "round 2: island a lost worker-2: re-formed as incarnation")) << "island a re-forms";
  EXPECT_FALSE(LogHas(log, "re-planning the round")) << "island b's round 2 is never restarted";
  auto after = GetJob(cluster.client(), job_id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->rounds(1).participants(), 2u) << "both islands contribute to round 2";

  // The killed member comes back and rejoins its island at a later round, caught up to the same model.
  ASSERT_TRUE(cluster.cluster().StartWorker(1).ok());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ExpectReplicaReaches(cluster.client(), job_id, "worker-2", 4, job.rounds(3).weights_hash());
  ExpectReplicaReaches(cluster.client(), job_id, "worker-3", 4, job.rounds(3).weights_hash());
}

}  // namespace
}  // namespace tributary::system_test
