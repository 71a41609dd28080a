// Dense (fedavg, lora) payloads above the inline threshold move as bulk objects: uploads pulled by the
// coordinator from each worker, RoundCommitted aggregates and catch-up rounds fetched by the workers.
// The thresholds are lowered (64 KiB; 4 KiB for lora) so the demo model's dense states take every bulk path.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "base/file_util.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kThreshold = 65536;

// The lora adapters of the demo model are ~14 KiB: their test uses a lower threshold.
constexpr uint64_t kLoraThreshold = 4096;

ClusterOptions BulkCluster(uint64_t threshold = kThreshold) {
  ClusterOptions options;
  options.coordinator_args = {"--set", "coordinator.inline_payload_bytes=" + std::to_string(threshold)};
  options.worker_args = {"--set", "worker.inline_payload_bytes=" + std::to_string(threshold)};
  return options;
}

size_t CountLines(const std::vector<std::string>& lines, const std::string& needle) {
  size_t n = 0;
  for (const std::string& line : lines) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

std::string ReadLog(const std::string& dir, const std::string& name) {
  auto text = ReadFileToString((fs::path(dir) / (name + ".log")).string());
  EXPECT_TRUE(text.ok()) << name;
  return text.ok() ? *text : "";
}

TEST(DenseBulkSystemTest, FedAvgUploadsAndAggregatesTravelAsBulkObjects) {
  TestDir dir;
  TestCluster cluster(dir.path(), BulkCluster());
  const std::string job_id = Submit(cluster.client(), JobYaml(cluster.base_model(), "fedavg", 3, 7));
  ASSERT_FALSE(job_id.empty());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ASSERT_EQ(job.rounds_size(), 3);
  ASSERT_GT(job.job().dense_state_bytes(), kThreshold) << "the test needs a dense state above the threshold";
  for (const v1::RoundSummary& r : job.rounds()) {
    EXPECT_EQ(r.participants(), 4u) << "round " << r.round();
    EXPECT_EQ(r.bytes_up(), 4 * job.job().dense_state_bytes()) << "round " << r.round();
  }
  ExpectReplicasAtFinalHash(cluster.client(), job_id, 3, job.rounds(2).weights_hash(), 4);

  // Every accepted upload was pulled, and every aggregate was served as a bulk object.
  const std::vector<std::string> log = JobLog(cluster.client(), job_id);
  EXPECT_EQ(CountLines(log, "pulled as a bulk object"), 12u);
  EXPECT_EQ(CountLines(log, "aggregate served as a bulk object"), 3u);
  // Each worker fetched the aggregates of the rounds it applied from RoundCommitted.
  for (int i = 0; i < 4; ++i) {
    const std::string worker_log = ReadLog(dir.path(), cli::LocalCluster::WorkerName(i));
    EXPECT_NE(worker_log.find("fetching the aggregate of round 3"), std::string::npos)
        << cli::LocalCluster::WorkerName(i);
  }
}

TEST(DenseBulkSystemTest, LoraUploadsAndAggregatesTravelAsBulkObjects) {
  TestDir dir;
  TestCluster cluster(dir.path(), BulkCluster(kLoraThreshold));
  const std::string job_id = Submit(cluster.client(), JobYaml(cluster.base_model(), "lora", 2, 11));
  ASSERT_FALSE(job_id.empty());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ASSERT_EQ(job.rounds_size(), 2);
  ASSERT_GT(job.job().dense_state_bytes(), kLoraThreshold) << "the test needs adapters above the threshold";
  for (const v1::RoundSummary& r : job.rounds()) {
    EXPECT_EQ(r.bytes_up(), 4 * job.job().dense_state_bytes()) << "round " << r.round();
  }
  ExpectReplicasAtFinalHash(cluster.client(), job_id, 2, job.rounds(1).weights_hash(), 4);
  const std::vector<std::string> log = JobLog(cluster.client(), job_id);
  EXPECT_EQ(CountLines(log, "pulled as a bulk object"), 8u);
  EXPECT_EQ(CountLines(log, "aggregate served as a bulk object"), 2u);
}

TEST(DenseBulkSystemTest, RestartedWorkerCatchesUpThroughBulkAggregates) {
  TestDir dir;
  TestCluster cluster(dir.path(), BulkCluster());
  // Quorum 3 of 4 and a short deadline, so rounds go on while worker-2 is down; no snapshots, so the
  // restarted worker (no replica) replays every round from catch-up replies whose aggregates are bulk objects.
  const std::string job_id =
      Submit(cluster.client(), JobYaml(cluster.base_model(), "fedavg", 4, 21,
                                       {"federation.min_clients=3", "federation.quorum=0.75",
                                        "federation.deadline_floor_s=2", "checkpoint.snapshot_every=1000"}));
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 1; }));
  cluster.cluster().KillWorker(1, SIGKILL);
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 2; }));
  ASSERT_TRUE(cluster.cluster().StartWorker(1).ok());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  const std::string final_hash = job.rounds(job.rounds_size() - 1).weights_hash();
  ExpectReplicaReaches(cluster.client(), job_id, "worker-2", 4, final_hash);
  const std::string coordinator_log = ReadLog(dir.path(), "coordinator");
  EXPECT_NE(coordinator_log.find("catch-up for worker 'worker-2' from round 0 to"), std::string::npos);
  // The restarted worker got round 1 (committed before it started) by catch-up, as a bulk object.
  const std::string worker_log = ReadLog(dir.path(), "worker-2");
  const size_t restart = worker_log.rfind("starting:");
  ASSERT_NE(restart, std::string::npos);
  EXPECT_NE(worker_log.find("fetching the aggregate of round 1", restart), std::string::npos) << worker_log;
}

}  // namespace
}  // namespace tributary::system_test
