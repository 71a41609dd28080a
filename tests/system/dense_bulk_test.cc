// Dense (fedavg, lora) payloads above the inline threshold move as bulk objects: uploads pulled by the
// coordinator from each worker, RoundCommitted aggregates and catch-up rounds fetched by the workers.
// The thresholds are lowered (64 KiB; 4 KiB for lora) so the demo model's dense states take every bulk path.
// With the multistream thresholds lowered too, the workers fetch the aggregates over parallel TCP streams
// (docs/multistream.md, "In the daemons"), or on the bulk path when the coordinator cannot offer them.
#include <gtest/gtest.h>
#include <signal.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// The multistream tests run 2 workers (CI time): the transfers, not the federation, are under test.
constexpr int kMultistreamWorkers = 2;

// BulkCluster with multistream transfers of the aggregates (objects of 64 KiB and more).
ClusterOptions MultistreamCluster(const std::vector<std::string>& coordinator_sets) {
  ClusterOptions options = BulkCluster();
  options.num_workers = kMultistreamWorkers;
  options.coordinator_args.insert(options.coordinator_args.end(),
                                  {"--set", "coordinator.multistream_min_bytes=" + std::to_string(kThreshold)});
  for (const std::string& set : coordinator_sets)
    options.coordinator_args.insert(options.coordinator_args.end(), {"--set", set});
  // A fixed compute rate: no calibration pass per job (CI time).
  options.worker_args.insert(
      options.worker_args.end(),
      {"--set", "worker.multistream_min_bytes=" + std::to_string(kThreshold), "--set", "worker.tokens_per_s=1000"});
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

size_t CountMatches(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Runs a fedavg job of `rounds` rounds on the kMultistreamWorkers workers; returns the committed weights hash
// of the last round after checking that every worker's replica reached it.
std::string RunRounds(TestCluster& cluster, int rounds) {
  const std::string job_id =
      Submit(cluster.client(), JobYaml(cluster.base_model(), "fedavg", rounds, 5,
                                       {"federation.min_clients=" + std::to_string(kMultistreamWorkers)}));
  EXPECT_FALSE(job_id.empty());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  EXPECT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  if (job.rounds_size() != rounds) {
    ADD_FAILURE() << "rounds: " << job.rounds_size();
    return "";
  }
  EXPECT_GT(job.job().dense_state_bytes(), kThreshold) << "the test needs a dense state above the threshold";
  for (const v1::RoundSummary& r : job.rounds()) {
    EXPECT_EQ(r.bytes_up(), kMultistreamWorkers * job.job().dense_state_bytes()) << "round " << r.round();
  }
  const std::string& hash = job.rounds(rounds - 1).weights_hash();
  ExpectReplicasAtFinalHash(cluster.client(), job_id, rounds, hash, kMultistreamWorkers);
  return hash;
}

TEST(DenseBulkSystemTest, AggregatesTravelOverThreeStreams) {
  TestDir dir;
  TestCluster cluster(dir.path(), MultistreamCluster({"coordinator.multistream_streams=3"}));
  ASSERT_FALSE(RunRounds(cluster, 2).empty());
  // Every worker fetched both aggregates over 3 streams (checksum checked), none on the bulk path; the
  // coordinator sent every offer it made.
  for (int i = 0; i < kMultistreamWorkers; ++i) {
    const std::string name = cli::LocalCluster::WorkerName(i);
    const std::string worker_log = ReadLog(dir.path(), name);
    EXPECT_GE(CountMatches(worker_log, "over 3 streams"), 2u) << name;
    EXPECT_EQ(CountMatches(worker_log, "pulling it on the bulk path"), 0u) << name;
  }
  const std::string coordinator_log = ReadLog(dir.path(), "coordinator");
  const size_t offered = CountMatches(coordinator_log, "3 streams on port");
  EXPECT_GE(offered, 2u * kMultistreamWorkers);
  EXPECT_EQ(CountMatches(coordinator_log, "over 3 streams in"), offered);
}

TEST(DenseBulkSystemTest, AggregatesFallBackToTheBulkPathWhenNoMultistreamPortIsFree) {
  // The only multistream port is taken: every offer fails, and the workers pull the aggregates on the bulk path.
  const int taken = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(taken, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  ASSERT_EQ(::getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  TestDir dir;
  {
    TestCluster cluster(dir.path(), MultistreamCluster({"coordinator.multistream_ports=" + std::to_string(port)}));
    ASSERT_FALSE(RunRounds(cluster, 1).empty());
  }
  ::close(taken);
  for (int i = 0; i < kMultistreamWorkers; ++i) {
    const std::string name = cli::LocalCluster::WorkerName(i);
    const std::string worker_log = ReadLog(dir.path(), name);
    EXPECT_GE(CountMatches(worker_log, "failed, pulling it on the bulk path"), 1u) << name;
    EXPECT_NE(worker_log.find("no free port"), std::string::npos) << name;
    EXPECT_EQ(CountMatches(worker_log, "streams in"), 0u) << name;
  }
}

}  // namespace
}  // namespace tributary::system_test
