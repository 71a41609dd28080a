// The running cluster job applies its plan's batches and codec (docs/placement.md, "The running job's
// plan"): two workers of one island with unequal compute (worker.tokens_per_s 3000 and 1000) train 12 and 4
// sequences per micro-batch once both rates are known, the island's upload weighs what it trained, every
// replica ends on the committed weights, and a job with cluster.codec auto uploads, commits and records
// each round in the codec its plan chose.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <string>

#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"
#include "federation/outer_codec.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// The first round whose log says the members' batches are `batches` (e.g. "worker-2 4, worker-1 12"), 0 if none.
uint32_t FirstRoundWithBatches(const std::vector<std::string>& log, const std::string& first,
                               const std::string& second) {
  const std::regex line("round ([0-9]+): batches island a: (.*) \\(sequences per micro-batch\\)");
  for (const std::string& l : log) {
    std::smatch m;
    if (!std::regex_search(l, m, line)) continue;
    const std::string batches = m[2];
    if (batches == first + ", " + second || batches == second + ", " + first)
      return static_cast<uint32_t>(std::stoul(m[1]));
  }
  return 0;
}

TEST(ClusterSharesSystemTest, UnequalComputeTrainsUnequalBatchesInTheRoundsCodec) {
  TestDir dir;
  ClusterOptions options;
  options.num_workers = 2;
  // Rates so high that no inner phase hides an fp32 outer sync: once they are known the plan takes the
  // smallest codec (fp4), so the job changes codec between rounds.
  options.worker_own_args = {{0, {"--set", "worker.tokens_per_s=300000000"}},
                             {1, {"--set", "worker.tokens_per_s=100000000"}}};
  std::string yaml, job_id;
  constexpr int kRounds = 8;
  uint32_t first = 0;  // the first round with planned batches
  {
    TestCluster cluster(dir.path(), options);
    yaml = JobYaml(cluster.base_model(), "cluster", kRounds, 7,
                   {"federation.min_clients=2", "train.local_steps=2", "cluster.codec=auto",
                    "cluster.balance_batches=true", "cluster.islands=['a=worker-1,worker-2']", "eval.every=100"});
    job_id = Submit(cluster.client(), yaml);
    ASSERT_FALSE(job_id.empty());
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
    ASSERT_EQ(job.rounds_size(), kRounds);
    // Every member applies every outer step to the same bits, whatever batch it trained.
    ExpectReplicasAtFinalHash(cluster.client(), job_id, kRounds, job.rounds(kRounds - 1).weights_hash(), 2);
    const std::vector<std::string> log = JobLog(cluster.client(), job_id);
    std::string text;
    for (const std::string& l : log) text += l + "\n";
    // Round 1 is planned before any rate is known: the job's batch for both, and auto's stated codec.
    EXPECT_NE(text.find("round 1: every member trains train.batch_size: compute not measured"), std::string::npos)
        << text;
    EXPECT_NE(text.find("round 1: codec fp32 (auto: the plan's)"), std::string::npos) << text;
    EXPECT_NE(text.find("re-planned: codec fp4 (was fp32)"), std::string::npos) << text;
    // Once both rates are in, 16 sequences (8 per participant) split 3:1.
    first = FirstRoundWithBatches(log, "worker-1 12", "worker-2 4");
    ASSERT_GT(first, 1u) << text;
    ASSERT_LT(first, static_cast<uint32_t>(kRounds)) << "the rates arrive within a few rounds\n" << text;
  }
  // The store: every round is encoded, committed and recorded in its own codec, fp32 before the rates are
  // known and fp4 after; the leader's upload weighs the island's 16 sequences x 2 steps once batches apply.
  const std::map<std::string, uint64_t> bytes = {{"cluster_fp32", OuterPayloadBytes(yaml, OuterCodec::kFp32)},
                                                 {"cluster_fp4", OuterPayloadBytes(yaml, OuterCodec::kFp4)}};
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir.path()) / "store" / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint32_t round = 1; round <= static_cast<uint32_t>(kRounds); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto updates = (*store)->ListUpdates(job_id, round);
    ASSERT_TRUE(updates.ok());
    ASSERT_EQ(updates->size(), 1u) << "one island";
    auto record = (*store)->GetRound(job_id, round);
    ASSERT_TRUE(record.ok());
    if (round == 1) {
      EXPECT_EQ(record->seed_mode, "cluster_fp32");
    }
    if (round >= first) {
      EXPECT_EQ(record->seed_mode, "cluster_fp4");
      EXPECT_EQ((*updates)[0].num_samples, 16u * 2);
    }
    ASSERT_EQ(bytes.count(record->seed_mode), 1u) << record->seed_mode;
    EXPECT_EQ((*updates)[0].payload.size(), bytes.at(record->seed_mode));
    EXPECT_EQ(record->aggregate.size(), bytes.at(record->seed_mode));
  }
}

}  // namespace
}  // namespace tributary::system_test
