// CheckpointStore on a real RocksDB whose write-ahead log fails with EIO (WalFaultFileSystem, through
// RocksDB's public FileSystem API): a write that fails is refused with Unavailable naming the store,
// reads keep working, the store reopens itself at the next write once the disk behaves, nothing
// acknowledged is lost, a round is committed whole or not at all, and the process never aborts.
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/version.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"
#include "tests/checkpoint/wal_fault_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::OpenOrDie;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::SampleUpdate;
using testutil::TempDir;
using testutil::WalFaultFileSystem;
using Fault = WalFaultFileSystem::Fault;

StoreOptions WithFileSystem(const std::shared_ptr<WalFaultFileSystem>& fs) {
  StoreOptions options;
  options.file_system_for_testing = fs;
  return options;
}

void ExpectIoRefusal(const Status& st, const std::string& path) {
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("checkpoint store '" + path + "'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("I/O error"), std::string::npos) << st.message();
}

// What the store's listener does (checkpoint/store.cc, WriteFaultListener): no automatic recovery.
class NoAutoRecovery : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "NoAutoRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error, bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;
  }
};

// A raw RocksDB whose WAL append fails with ENOSPC while its memtables are empty; then, with the disk
// fine again, writes for up to `seconds`. Returns how many of those writes succeeded.
int WritesAfterAWalFault(const std::string& path, bool auto_recovery, int seconds) {
  auto fs = std::make_shared<WalFaultFileSystem>(/*no_space=*/true);
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.env = env.get();
  if (!auto_recovery) {
    options.max_bgerror_resume_count = 0;
    options.listeners.push_back(std::make_shared<NoAutoRecovery>());
  }
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(options, path, &db).ok()) return -1;
  rocksdb::WriteOptions sync;
  sync.sync = true;
  if (!db->Put(sync, "k1", "v1").ok() || !db->Flush(rocksdb::FlushOptions()).ok()) return -1;
  fs->SetWalFault(Fault::kWrite);
  if (db->Put(sync, "k2", "v2").ok()) return -1;
  fs->SetWalFault(Fault::kNone);
  int written = 0;
  for (int i = 0; i < seconds * 10; ++i) {  // RocksDB's recovery runs in the background
    if (db->Put(sync, "k3", "v3").ok()) ++written;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  db->Close().PermitUncheckedError();
  delete db;
  return written;
}

// Why the store reopens instead of writing on: RocksDB 7.8, left to itself, recovers from ENOSPC in
// the background and then hands the next write to the WAL writer that failed, which aborts the process.
TEST(IoErrorDeathTest, RocksDb78AbortsOnTheWriteAfterItsOwnRecovery) {
#if ROCKSDB_MAJOR >= 9
  GTEST_SKIP() << "fixed in RocksDB 9.x (PR 12448)";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  EXPECT_DEATH(WritesAfterAWalFault(dir.Sub("raw"), /*auto_recovery=*/true, 60), "sync_without_flush_called_");
}

// The premise of the store's fix: without automatic recovery RocksDB refuses every write after the fault
// by itself (no window for a concurrent writer), until the store reopens it.
TEST(IoErrorTest, RocksDbWithoutAutoRecoveryRefusesWritesAfterAWalFault) {
  TempDir dir;
  EXPECT_EQ(WritesAfterAWalFault(dir.Sub("raw"), /*auto_recovery=*/false, 2), 0);
}

TEST(IoErrorTest, FailedWriteIsRefusedReadsWorkAndTheStoreReopensLosingNothing) {
  TempDir dir;
  const std::string path = dir.Sub("store");
  auto fs = std::make_shared<WalFaultFileSystem>();
  testutil::HostTensors model(std::make_shared<TensorTable>());
  {
    auto store = OpenOrDie(path, WithFileSystem(fs));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 1, "w1")).ok());
    ASSERT_TRUE(store->CommitRound(SampleRound("j1", 1), CommitJob("j1", 1)).ok());

    fs->SetWalFault(Fault::kWrite);
    auto failed = store->AcceptUpdate(SampleUpdate("j1", 2, "w1"));
    ASSERT_FALSE(failed.ok());
    ExpectIoRefusal(failed.status(), path);
    EXPECT_NE(failed.status().message().find("injected EIO"), std::string::npos) << failed.status().message();
    EXPECT_GT(fs->injected_errors(), 0);
    // While the disk fails, every write is refused (a reopen, if tried, fails or the write fails again).
    ExpectIoRefusal(store->AcceptUpdate(SampleUpdate("j1", 2, "w2")).status(), path);
    ExpectIoRefusal(store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2)).status(), path);
    ExpectIoRefusal(store->PutWorker({"w9", "key", "caps", 1}), path);
    // Reads answer or are refused cleanly, never crash.
    auto round1 = store->GetRound("j1", 1);
    if (round1.ok()) {
      EXPECT_EQ(round1->aggregate, SampleRound("j1", 1).aggregate);
    } else {
      ExpectIoRefusal(round1.status(), path);
    }

    fs->SetWalFault(Fault::kNone);
    // Reads work again at the latest once a write has reopened the store.
    auto retried = store->AcceptUpdate(SampleUpdate("j1", 2, "w1"));
    ASSERT_TRUE(retried.ok()) << retried.status().ToString();
    ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 2, "w2")).ok());
    auto commit = store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2));
    ASSERT_TRUE(commit.ok()) << commit.status().ToString();
    EXPECT_EQ(*commit, WriteOutcome::kWritten);
    ASSERT_TRUE(store->PutWorker({"w9", "key", "caps", 1}).ok());
    ASSERT_TRUE(store->PutSnapshot("j1", 2, model.data(), model.size(), model.table(), 42).ok());
    EXPECT_EQ(store->GetRound("j1", 1)->aggregate, SampleRound("j1", 1).aggregate);
    EXPECT_EQ(store->LastCommittedRound("j1").value(), 2u);
  }
  // Everything acknowledged is there after a reopen without the faulty file system.
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastCommittedRound("j1").value(), 2u);
  for (uint32_t r : {1u, 2u}) EXPECT_EQ(store->GetRound("j1", r)->aggregate, SampleRound("j1", r).aggregate) << r;
  EXPECT_EQ(store->ListUpdates("j1", 1)->size(), 1u);
  EXPECT_EQ(store->ListUpdates("j1", 2)->size(), 2u);
  EXPECT_TRUE(store->GetWorker("w9").ok());
  EXPECT_EQ(store->GetSnapshotInfo("j1", 2)->weights_hash, 42u);
}

// A fault while a round commit is written leaves the whole round or nothing, whether the bytes never
// reached the log (kWrite) or reached it unsynced (kSync); a retry then commits it exactly once.
TEST(IoErrorTest, FaultDuringCommitRoundLeavesTheWholeRoundOrNothing) {
  for (Fault fault : {Fault::kWrite, Fault::kSync}) {
    for (bool close_before_retry : {false, true}) {
      SCOPED_TRACE(std::string(fault == Fault::kWrite ? "write" : "sync") +
                   (close_before_retry ? ", closed before the retry" : ", retried in place"));
      TempDir dir;
      const std::string path = dir.Sub("store");
      auto fs = std::make_shared<WalFaultFileSystem>();
      auto store = OpenOrDie(path, WithFileSystem(fs));
      ASSERT_NE(store, nullptr);
      ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
      ASSERT_TRUE(store->CommitRound(SampleRound("j1", 1), CommitJob("j1", 1)).ok());
      fs->SetWalFault(fault);
      auto failed = store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2));
      ASSERT_FALSE(failed.ok());
      ExpectIoRefusal(failed.status(), path);
      fs->SetWalFault(Fault::kNone);
      if (close_before_retry) {
        store.reset();
        store = OpenOrDie(path, WithFileSystem(fs));
        ASSERT_NE(store, nullptr);
      } else {
        ASSERT_TRUE(store->PutWorker({"w1", "", "", 1}).ok());  // any write reopens the store
      }
      // Round and job record agree (LastCommittedRound reports Corruption otherwise).
      auto last = store->LastCommittedRound("j1");
      ASSERT_TRUE(last.ok()) << last.status().ToString();
      ASSERT_TRUE(*last == 1u || *last == 2u) << *last;
      if (*last == 2u) {
        EXPECT_EQ(store->GetRound("j1", 2)->aggregate, SampleRound("j1", 2).aggregate);
      }
      if (fault == Fault::kWrite) {
        EXPECT_EQ(*last, 1u);  // nothing reached the log
      }
      auto retry = store->CommitRound(SampleRound("j1", 2), CommitJob("j1", 2));
      ASSERT_TRUE(retry.ok()) << retry.status().ToString();
      EXPECT_EQ(*retry, *last == 2u ? WriteOutcome::kAlreadyPresent : WriteOutcome::kWritten);
      EXPECT_EQ(store->LastCommittedRound("j1").value(), 2u);
      EXPECT_EQ(store->GetJob("j1")->current_round, 2u);
    }
  }
}

// Writers and readers on several threads while the log fails on and off: no crash, no deadlock, and
// every write that returned OK is stored.
TEST(IoErrorTest, ConcurrentReadersAndWritersSurviveFaultsAndReopens) {
  TempDir dir;
  const std::string path = dir.Sub("store");
  auto fs = std::make_shared<WalFaultFileSystem>();
  std::vector<std::vector<std::string>> acked(4);
  {
    auto store = OpenOrDie(path, WithFileSystem(fs));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    std::atomic<bool> stop{false};
    std::atomic<int> read_errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          const std::string worker = "w" + std::to_string(t) + "_" + std::to_string(i);
          auto st = t % 2 == 0 ? store->AcceptUpdate(SampleUpdate("j1", 1, worker)).status()
                               : store->PutWorker({worker, "", "", i});
          if (st.ok()) {
            acked[t].push_back(worker);
          } else {
            EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
          }
        }
      });
    }
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        while (!stop.load()) {
          Status st = store->GetJob("j1").status();
          if (st.ok()) st = store->ListUpdates("j1", 1).status();
          if (!st.ok()) {
            EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
            read_errors.fetch_add(1);
          }
        }
      });
    }
    for (int cycle = 0; cycle < 5; ++cycle) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      fs->SetWalFault(Fault::kWrite);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      fs->SetWalFault(Fault::kNone);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop.store(true);
    for (auto& th : threads) th.join();
    EXPECT_GT(fs->injected_errors(), 0);
    ASSERT_TRUE(store->PutWorker({"last", "", "", 0}).ok());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  std::map<std::string, bool> updates;
  auto listed = store->ListUpdates("j1", 1);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  for (const auto& u : *listed) updates[u.worker_id] = true;
  size_t total = 0;
  for (int t = 0; t < 4; ++t) {
    for (const auto& worker : acked[t]) {
      ++total;
      if (t % 2 == 0) {
        EXPECT_TRUE(updates.count(worker)) << worker;
      } else {
        EXPECT_TRUE(store->GetWorker(worker).ok()) << worker;
      }
    }
  }
  EXPECT_GT(total, 0u);
}

// ENOSPC that the free-space check did not foresee (someone else filled the disk in between) takes
// the same path: refused, then the store reopens itself; here with every memtable flushed before, the
// state in which RocksDB's own recovery would abort the process.
TEST(IoErrorTest, UnforeseenNoSpaceIsRefusedAndTheStoreReopens) {
  TempDir dir;
  const std::string path = dir.Sub("store");
  auto fs = std::make_shared<WalFaultFileSystem>(/*no_space=*/true);
  {
    auto store = OpenOrDie(path, WithFileSystem(fs));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    ASSERT_TRUE(store->CreateCheckpoint(dir.Sub("backup")).ok());  // flushes every memtable
    fs->SetWalFault(Fault::kWrite);
    ExpectIoRefusal(store->AcceptUpdate(SampleUpdate("j1", 1, "w1")).status(), path);
    fs->SetWalFault(Fault::kNone);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // RocksDB would have recovered by now
    ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 1, "w1")).ok());
    ASSERT_TRUE(store->CommitRound(SampleRound("j1", 1), CommitJob("j1", 1)).ok());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastCommittedRound("j1").value(), 1u);
  EXPECT_EQ(store->ListUpdates("j1", 1)->size(), 1u);
}

}  // namespace
}  // namespace tributary::checkpoint
