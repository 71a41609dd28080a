// The round driver on a store whose volume fills up (a real tmpfs, root only): a round that cannot be
// committed stays open with its logged uploads, nothing changes, and once space is freed the same round
// commits to exactly the fault-free weights.
#include <unistd.h>

#include <gtest/gtest.h>

#include "coordinator/round_driver.h"
#include "federation/tasklet.h"
#include "tests/common/small_volume.h"
#include "tests/coordinator/round_sim_util.h"

namespace tributary {
namespace {

using namespace round_sim;  // NOLINT(google-build-using-namespace)

constexpr uint64_t kMiB = 1 << 20;

TEST(RoundDriverStorageTest, FullStoreKeepsTheRoundOpenAndCommitsItOnceFreed) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 2);
  TempDir fault_free;
  const uint64_t expected = RunJob(spec, fault_free.path());

  testutil::SmallVolume volume(48);
  TRIB_SKIP_UNLESS_MOUNTED(volume);
  checkpoint::StoreOptions options;
  options.reserve_bytes = 4 * kMiB;
  auto store = checkpoint::CheckpointStore::Open(volume.Sub("store"), options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::vector<SimWorker> workers = MakeWorkers(spec);
  auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
  ASSERT_TRUE(driver.ok()) << driver.status().ToString();
  RunRound(**driver, workers, 10'000);

  // Round 2: every upload is logged, then the volume fills before the commit.
  auto start = (*driver)->StartRound(Inventory(workers), 20'000);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  for (SimWorker& w : workers) {
    auto result = RunTasklet(TaskletInput{spec, 2, w.id, &w.rows}, *w.method, *w.model, w.adapters.get());
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    Upload upload{"job", w.id, 2, result->payload, result->num_samples, result->train_loss, 0};
    ASSERT_TRUE((*driver)->AcceptUpload(upload).ok());
  }
  volume.FillLeaving(2 * kMiB);
  auto refused = (*driver)->CloseRound(21'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().ToString();
  EXPECT_TRUE((*driver)->round_open());
  EXPECT_EQ((*driver)->last_committed_round(), 1u);
  EXPECT_EQ((*store)->LastCommittedRound("job").value(), 1u);

  volume.RemoveFiller();
  auto committed = (*driver)->CloseRound(22'000);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->round, 2u);
  EXPECT_EQ(committed->participants.size(), static_cast<size_t>(kNumWorkers));
  EXPECT_EQ(committed->weights_hash, expected);
}

}  // namespace
}  // namespace tributary
