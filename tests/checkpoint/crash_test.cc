// Crash safety with a real kill -9: a child process commits rounds (and every few rounds a chunked
// snapshot) with synced writes and reports each acknowledged write through a pipe; the parent
// SIGKILLs it at a random moment, reopens the store and checks that everything reported is there and
// complete, and that no partially written round or snapshot is visible. Four kill/reopen cycles run
// on the same store, so recovery of an already recovered store is covered too.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>

#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::HostTensors;
using testutil::LoadSnapshotInto;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::SampleUpdate;
using testutil::TempDir;

constexpr char kChildDirEnv[] = "TRIBUTARY_CHECKPOINT_CRASH_CHILD_DIR";
constexpr char kChildFdEnv[] = "TRIBUTARY_CHECKPOINT_CRASH_CHILD_FD";
constexpr uint32_t kSnapshotFlag = 0x80000000u;  // pipe message: snapshot of round (value & ~flag)
constexpr uint32_t kSnapshotEvery = 4;
constexpr const char* kJob = "crash-job";
constexpr const char* kWorkers[] = {"w1", "w2", "w3"};

std::shared_ptr<TensorTable> CrashTable() {
  auto t = std::make_shared<TensorTable>();
  t->Add("model.layers.0.self_attn.q_proj.weight", {256, 512});
  t->Add("model.norm.weight", {512});
  return t;
}

// The model "after round r": a pattern that differs per round and per element.
void FillModel(HostTensors* arena, uint32_t round) {
  auto* words = reinterpret_cast<uint32_t*>(arena->data());
  for (int64_t i = 0; i < arena->size(); ++i) words[i] = static_cast<uint32_t>(i) * 2654435761u ^ (round * 40503u);
}

StoreOptions CrashOptions() {
  StoreOptions options;                     // sync_writes stays on: that is what is under test
  options.snapshot_chunk_bytes = 64 << 10;  // 0.5 MiB arena -> 9 chunks, a window to be killed in
  return options;
}

// ---------------------------------------------------------------------------------------------
// Child side. The parent re-executes this test binary with the two environment variables set; the
// hook below runs before main (so before GoogleTest), commits until it is killed, and never
// returns. A fresh exec, rather than a plain fork, gives the child RocksDB's background threads.

[[noreturn]] void ChildFail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "crash child: %s: %s\n", what.c_str(), st.ToString().c_str());
  _exit(3);
}

void Report(int fd, uint32_t message) {
  if (write(fd, &message, sizeof(message)) != static_cast<ssize_t>(sizeof(message))) _exit(4);
}

[[noreturn]] void RunChild(const char* dir, int fd) {
  auto opened = CheckpointStore::Open(dir, CrashOptions());
  if (!opened.ok()) ChildFail("open", opened.status());
  std::unique_ptr<CheckpointStore> store = std::move(opened).value();
  if (store->GetJob(kJob).status().IsNotFound()) {
    Status st = store->PutJob(SampleJob(kJob));
    if (!st.ok()) ChildFail("put job", st);
  }
  auto last = store->LastCommittedRound(kJob);
  if (!last.ok()) ChildFail("last round", last.status());
  auto table = CrashTable();
  HostTensors model(table);
  for (uint32_t r = *last + 1; r < 1000000; ++r) {
    for (const char* w : kWorkers) {
      auto accepted = store->AcceptUpdate(SampleUpdate(kJob, r, w));
      if (!accepted.ok()) ChildFail("accept update", accepted.status());
    }
    auto committed = store->CommitRound(SampleRound(kJob, r), CommitJob(kJob, r));
    if (!committed.ok()) ChildFail("commit round " + std::to_string(r), committed.status());
    Report(fd, r);
    if (r % kSnapshotEvery == 0) {
      FillModel(&model, r);
      Status st = store->PutSnapshot(kJob, r, model.data(), model.size(), *table, r);
      if (!st.ok()) ChildFail("snapshot " + std::to_string(r), st);
      Report(fd, r | kSnapshotFlag);
    }
  }
  _exit(0);
}

[[maybe_unused]] const bool kChildHookRan = [] {
  const char* dir = std::getenv(kChildDirEnv);
  const char* fd = std::getenv(kChildFdEnv);
  if (dir == nullptr || fd == nullptr) return false;
  RunChild(dir, std::atoi(fd));
}();

// ---------------------------------------------------------------------------------------------
// Parent side.

struct ChildRun {
  std::set<uint32_t> rounds;     // acknowledged commits
  std::set<uint32_t> snapshots;  // acknowledged snapshots
  uint32_t last_message = 0;
  bool killed = false;
};

// Starts the child, waits for `acks_before_kill` acknowledged commits (with `in_snapshot`, further
// until the last one is a round followed by a snapshot) plus `delay_us`, kills it with SIGKILL and
// collects everything it acknowledged before dying.
ChildRun RunAndKill(const std::string& dir, size_t acks_before_kill, bool in_snapshot, int delay_us) {
  ChildRun run;
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return run;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    setenv(kChildDirEnv, dir.c_str(), 1);
    setenv(kChildFdEnv, std::to_string(fds[1]).c_str(), 1);
    execl("/proc/self/exe", "checkpoint_test", "--gtest_filter=-*", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    close(fds[0]);
    return run;
  }

  auto take = [&run](uint32_t message) {
    run.last_message = message;
    if (message & kSnapshotFlag) {
      run.snapshots.insert(message & ~kSnapshotFlag);
    } else {
      run.rounds.insert(message);
    }
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  bool eof = false;
  auto ready = [&] {
    if (run.rounds.size() < acks_before_kill) return false;
    return !in_snapshot || (!(run.last_message & kSnapshotFlag) && run.last_message % kSnapshotEvery == 0);
  };
  while (!eof && !ready() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    uint32_t message;
    ssize_t n = read(fds[0], &message, sizeof(message));
    if (n == static_cast<ssize_t>(sizeof(message))) {
      take(message);
    } else if (n == 0) {
      eof = true;
    }
  }
  if (!eof) {
    usleep(static_cast<useconds_t>(delay_us));
    kill(pid, SIGKILL);
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  run.killed = WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL;
  // Acknowledgements written before the kill are still in the pipe.
  uint32_t message;
  while (read(fds[0], &message, sizeof(message)) == static_cast<ssize_t>(sizeof(message))) take(message);
  close(fds[0]);
  return run;
}

void ExpectStoreConsistent(const std::string& dir, const std::set<uint32_t>& acked_rounds,
                           const std::set<uint32_t>& acked_snapshots) {
  auto opened = CheckpointStore::Open(dir, CrashOptions());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto store = std::move(opened).value();
  auto last = store->LastCommittedRound(kJob);  // also checks job.current_round == last stored round
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  const uint32_t max_acked = acked_rounds.empty() ? 0 : *acked_rounds.rbegin();
  ASSERT_GE(*last, max_acked) << "an acknowledged round was lost";
  // A commit that was in flight at the kill may have landed, but at most that one.
  EXPECT_LE(*last, max_acked + 1);

  // Rounds 1..last are all there, contiguous and complete; nothing after them.
  auto rounds = store->ListRounds(kJob, 1, UINT32_MAX);
  ASSERT_TRUE(rounds.ok()) << rounds.status().ToString();
  ASSERT_EQ(rounds->size(), *last);
  for (uint32_t r = 1; r <= *last; ++r) {
    const RoundRecord& got = (*rounds)[r - 1];
    const RoundRecord expected = SampleRound(kJob, r);
    ASSERT_EQ(got.round, r);
    EXPECT_EQ(got.aggregate, expected.aggregate) << "round " << r;
    EXPECT_EQ(got.weights_hash, expected.weights_hash) << "round " << r;
    EXPECT_EQ(got.participants.size(), expected.participants.size()) << "round " << r;
    auto updates = store->ListUpdates(kJob, r);
    ASSERT_TRUE(updates.ok()) << updates.status().ToString();
    ASSERT_EQ(updates->size(), 3u) << "round " << r;
    for (const auto& u : *updates) EXPECT_EQ(u.payload, SampleUpdate(kJob, r, u.worker_id).payload);
  }
  EXPECT_TRUE(store->GetRound(kJob, *last + 1).status().IsNotFound());
  // Updates of the round in progress may be logged (that is their purpose), each one complete.
  auto pending = store->ListUpdates(kJob, *last + 1);
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  for (const auto& u : *pending) EXPECT_EQ(u.payload, SampleUpdate(kJob, *last + 1, u.worker_id).payload);

  // Every acknowledged snapshot loads bit-exactly; so does whatever LatestSnapshotAtOrBefore offers.
  auto table = CrashTable();
  HostTensors expected(table);
  HostTensors loaded(table);
  for (uint32_t r : acked_snapshots) {
    FillModel(&expected, r);
    Status st = LoadSnapshotInto(store, kJob, r, &loaded);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(std::memcmp(loaded.data(), expected.data(), expected.size() * sizeof(float)), 0) << "snapshot " << r;
  }
  auto latest = store->LatestSnapshotAtOrBefore(kJob, *last);
  if (latest.ok()) {
    FillModel(&expected, latest->round);
    ASSERT_TRUE(LoadSnapshotInto(store, kJob, latest->round, &loaded).ok());
    EXPECT_EQ(std::memcmp(loaded.data(), expected.data(), expected.size() * sizeof(float)), 0);
  } else {
    EXPECT_TRUE(latest.status().IsNotFound()) << latest.status().ToString();
    EXPECT_TRUE(acked_snapshots.empty());
  }
}

TEST(CrashTest, KilledWriterLosesNoAcknowledgedRound) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::printf("crash test seed %u\n", seed);
  std::mt19937 rng(seed);
  std::set<uint32_t> all_rounds;
  std::set<uint32_t> all_snapshots;
  for (int cycle = 0; cycle < 4; ++cycle) {
    // Odd cycles aim at the snapshot that follows every kSnapshotEvery-th commit.
    const bool in_snapshot = cycle % 2 == 1;
    const size_t acks = std::uniform_int_distribution<size_t>(3, 24)(rng);
    const int delay_us = std::uniform_int_distribution<int>(0, in_snapshot ? 1500 : 4000)(rng);
    SCOPED_TRACE("cycle " + std::to_string(cycle) + ": kill after " + std::to_string(acks) + " acks" +
                 (in_snapshot ? " and a snapshot round" : "") + " + " + std::to_string(delay_us) + " us");
    ChildRun run = RunAndKill(path, acks, in_snapshot, delay_us);
    ASSERT_TRUE(run.killed) << "the child exited on its own (see its stderr above)";
    ASSERT_GE(run.rounds.size(), acks);
    const bool hit_snapshot = !(run.last_message & kSnapshotFlag) && run.last_message % kSnapshotEvery == 0;
    std::printf("cycle %d: %zu rounds acknowledged, last %u, killed %s\n", cycle, run.rounds.size(),
                *run.rounds.rbegin(), hit_snapshot ? "while writing a snapshot" : "between or inside commits");
    all_rounds.insert(run.rounds.begin(), run.rounds.end());
    all_snapshots.insert(run.snapshots.begin(), run.snapshots.end());
    ExpectStoreConsistent(path, all_rounds, all_snapshots);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GE(all_rounds.size(), 12u);
}

}  // namespace
}  // namespace tributary::checkpoint
