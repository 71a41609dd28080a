// CheckpointStore on a real, small tmpfs volume (root only: mount): a full volume and a read-only
// remount refuse writes with Unavailable instead of reaching RocksDB (whose 7.8 WAL writer aborts the
// process on the write after a failed append), reads keep working, and writes resume by themselves once
// space is freed or the volume is writable again, with nothing lost.
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"
#include "tests/common/small_volume.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::SampleUpdate;
using tributary::testutil::SmallVolume;

constexpr uint64_t kMiB = 1 << 20;

StoreOptions SmallReserve() {
  StoreOptions options;
  options.reserve_bytes = 4 * kMiB;
  return options;
}

// A store at `path` holding job j1.
std::unique_ptr<CheckpointStore> OpenWithJob(const std::string& path) {
  auto store = CheckpointStore::Open(path, SmallReserve());
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return nullptr;
  EXPECT_TRUE((*store)->PutJob(SampleJob("j1")).ok());
  return std::move(*store);
}

TEST(StorageFaultTest, FullVolumeRefusesWritesKeepsReadsAndResumes) {
  SmallVolume volume(32);
  TRIB_SKIP_UNLESS_MOUNTED(volume);
  const std::string path = volume.Sub("store");
  {
    auto store = OpenWithJob(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CommitRound(SampleRound("j1", 1), CommitJob("j1", 1)).ok());
    ASSERT_TRUE(store->CheckWritable().ok());

    volume.FillLeaving(2 * kMiB);  // below the 4 MiB reserve
    const Status writable = store->CheckWritable();
    EXPECT_EQ(writable.code(), StatusCode::kUnavailable) << writable.ToString();
    EXPECT_NE(writable.message().find("MiB free, the reserve is 4 MiB"), std::string::npos) << writable.message();
    EXPECT_NE(writable.message().find(path), std::string::npos) << writable.message();

    auto commit = store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2));
    ASSERT_FALSE(commit.ok());
    EXPECT_EQ(commit.status().code(), StatusCode::kUnavailable) << commit.status().ToString();
    EXPECT_NE(commit.status().message().find("not writable"), std::string::npos);
    auto update = store->AcceptUpdate(SampleUpdate("j1", 2, "w1"));
    EXPECT_EQ(update.status().code(), StatusCode::kUnavailable) << update.status().ToString();
    // Reads still answer, and the refused round is not there.
    auto round1 = store->GetRound("j1", 1);
    ASSERT_TRUE(round1.ok()) << round1.status().ToString();
    EXPECT_EQ(round1->aggregate, SampleRound("j1", 1).aggregate);
    EXPECT_EQ(store->LastCommittedRound("j1").value(), 1u);

    volume.RemoveFiller();  // the operator frees space: writes go on without a reopen
    ASSERT_TRUE(store->CheckWritable().ok());
    ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 2, "w1")).ok());
    ASSERT_TRUE(store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2)).ok());
  }
  auto reopened = CheckpointStore::Open(path, SmallReserve());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->LastCommittedRound("j1").value(), 2u);
  EXPECT_EQ((*reopened)->GetRound("j1", 2)->aggregate, SampleRound("j1", 2).aggregate);
}

TEST(StorageFaultTest, ReadOnlyOrFullVolumeRefusesToOpenNamingWhy) {
  // (A mounted file system with files open for writing cannot be remounted read-only from user space,
  // so the read-only case is tested at open; the kernel's errors=remount-ro reaches the same statvfs flag.)
  SmallVolume volume(32);
  TRIB_SKIP_UNLESS_MOUNTED(volume);
  const std::string path = volume.Sub("store");
  ASSERT_NE(OpenWithJob(path), nullptr);
  ASSERT_TRUE(volume.Remount(/*read_only=*/true)) << std::strerror(errno);
  auto read_only = CheckpointStore::Open(path, SmallReserve());
  ASSERT_FALSE(read_only.ok());
  EXPECT_EQ(read_only.status().code(), StatusCode::kUnavailable) << read_only.status().ToString();
  EXPECT_NE(read_only.status().message().find("read-only file system"), std::string::npos);
  EXPECT_NE(read_only.status().message().find(path), std::string::npos);

  ASSERT_TRUE(volume.Remount(/*read_only=*/false)) << std::strerror(errno);
  StoreOptions big_reserve;
  big_reserve.reserve_bytes = 64 * kMiB;  // more than the volume has
  auto full = CheckpointStore::Open(path, big_reserve);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kUnavailable) << full.status().ToString();
  EXPECT_NE(full.status().message().find("the reserve is 64 MiB"), std::string::npos) << full.status().message();
  EXPECT_FALSE(std::filesystem::exists(volume.Sub("other")));
  EXPECT_FALSE(CheckpointStore::Open(volume.Sub("other"), big_reserve).ok());
  EXPECT_FALSE(std::filesystem::exists(volume.Sub("other")));  // nothing created

  auto reopened = CheckpointStore::Open(path, SmallReserve());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE((*reopened)->GetJob("j1").ok());
}

TEST(StorageFaultTest, SmallVolumeHoldsAStoreWithoutPreallocation) {
  // RocksDB's default fallocate of 1.1 x the write buffer per WAL filled a 64 MB volume at the first
  // write; the store grows its files with what it writes instead.
  SmallVolume volume(16);
  TRIB_SKIP_UNLESS_MOUNTED(volume);
  auto store = CheckpointStore::Open(volume.Sub("store"), SmallReserve());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->PutJob(SampleJob("j1")).ok());
  for (uint32_t r = 1; r <= 20; ++r) {
    ASSERT_TRUE((*store)->AcceptUpdate(SampleUpdate("j1", r, "w1")).ok()) << r;
    ASSERT_TRUE((*store)->CommitRound(SampleRound("j1", r), CommitJob("j1", r)).ok()) << r;
  }
  EXPECT_GT(volume.FreeBytes(), 8 * kMiB);
}

}  // namespace
}  // namespace tributary::checkpoint
