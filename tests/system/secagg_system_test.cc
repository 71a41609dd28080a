// Secure aggregation through real daemons (a coordinator and 4 workers as processes on loopback, CURVE on,
// real RocksDB): a Ferret job and a FedAvg job with secure_aggregation enabled commit their rounds, every
// replica follows the coordinator's weights hash, and the final weights match a plain run of the same job
// in the same cluster within the quantization error (the aggregates are not bit-identical: each client's
// vector is rounded to 32-bit fixed point before masking).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// Runs `yaml` to completion and checks that every round had its 4 clients and every replica matches.
std::string RunJob(TestCluster& cluster, const std::string& yaml, int rounds) {
  const std::string job_id = Submit(cluster.client(), yaml);
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id, 120);
  EXPECT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  EXPECT_EQ(job.rounds_size(), rounds);
  for (const v1::RoundSummary& r : job.rounds()) {
    EXPECT_EQ(r.participants(), 4u) << "round " << r.round();
    EXPECT_EQ(r.clients_size(), 4);
  }
  if (job.rounds_size() > 0) {
    const v1::RoundSummary& last = job.rounds(job.rounds_size() - 1);
    for (int w = 0; w < 4; ++w)
      ExpectReplicaReaches(cluster.client(), job_id, "worker-" + std::to_string(w + 1), last.round(),
                           last.weights_hash());
  }
  return job_id;
}

// The largest difference between the final trainable states of two jobs of the store in `dir`.
double FinalStateDifference(const std::string& dir, const std::string& yaml, const std::string& a, const std::string& b,
                            uint32_t round) {
  auto spec = ParseJobSpec(yaml, "spec");
  EXPECT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir) / "store" / "store").string());
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!model.ok() || !store.ok()) return 1e9;
  Arena sa = (*model)->NewState(), sb = (*model)->NewState();
  EXPECT_TRUE(RebuildTrainableState(store->get(), a, *spec, round, &sa).ok());
  EXPECT_TRUE(RebuildTrainableState(store->get(), b, *spec, round, &sb).ok());
  // A SecAgg round stores each included client's metadata only: no payload.
  auto updates = (*store)->ListUpdates(b, round);
  EXPECT_TRUE(updates.ok());
  EXPECT_EQ(updates->size(), 4u);
  for (const auto& u : *updates) EXPECT_TRUE(u.payload.empty()) << u.worker_id;
  double diff = 0;
  for (int64_t i = 0; i < sa.size(); ++i) diff = std::max(diff, std::fabs(double{sa.data()[i]} - sb.data()[i]));
  return diff;
}

void PlainAndSecure(const std::string& mode, int rounds, const std::string& clip, double tolerance) {
  TestDir dir;
  std::string plain_id, secure_id, yaml;
  {
    TestCluster cluster(dir.path());
    yaml = JobYaml(cluster.base_model(), mode, rounds, 5);
    const std::string secure_yaml =
        JobYaml(cluster.base_model(), mode, rounds, 5,
                {"secure_aggregation.enabled=true", "secure_aggregation.clip=" + clip, "name=secure " + mode});
    plain_id = RunJob(cluster, yaml, rounds);
    secure_id = RunJob(cluster, secure_yaml, rounds);
    bool logged = false;
    for (const std::string& line : JobLog(cluster.client(), secure_id))
      logged |= line.find("secure aggregation done: the sum of 4 client(s)") != std::string::npos;
    EXPECT_TRUE(logged) << "the job log names the clients in each sum";
  }
  EXPECT_LT(FinalStateDifference(dir.path(), yaml, plain_id, secure_id, static_cast<uint32_t>(rounds)), tolerance);
}

TEST(SecAggSystemTest, FerretJobMatchesThePlainRunWithinQuantization) {
  PlainAndSecure("ferret", 2, "100", 1e-4);
}

TEST(SecAggSystemTest, FedAvgJobCommitsAndMatchesThePlainRun) {
  PlainAndSecure("fedavg", 1, "2", 1e-5);
}

}  // namespace
}  // namespace tributary::system_test
