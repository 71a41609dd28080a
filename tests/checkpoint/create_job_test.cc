// CreateJobWithSnapshot: a job becomes visible only together with its round-0 snapshot, a used id or
// token leaves nothing behind, and a failure (or a real kill -9) after the chunks are written but
// before the job batch leaves no job, so a retry succeeds.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::HostTensors;
using testutil::LoadSnapshotInto;
using testutil::OpenOrDie;
using testutil::RawDump;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::TempDir;

constexpr char kKillChildDirEnv[] = "TRIBUTARY_CREATE_JOB_KILL_CHILD_DIR";

StoreOptions SmallChunks() {
  StoreOptions options;
  options.snapshot_chunk_bytes = 256;  // several chunks, so "chunks written" is a real state
  return options;
}

std::shared_ptr<TensorTable> ModelTable() {
  auto t = std::make_shared<TensorTable>();
  t->Add("model.embed_tokens.weight", {16, 8});
  t->Add("model.norm.weight", {8});
  return t;
}

// Random bit patterns (NaNs included): the snapshot round trip must be bit-exact.
void FillModel(HostTensors* arena, uint32_t seed) {
  std::mt19937 rng(seed);
  auto* words = reinterpret_cast<uint32_t*>(arena->data());
  for (int64_t i = 0; i < arena->size(); ++i) words[i] = rng();
}

bool SameBits(const HostTensors& a, const HostTensors& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Nothing of job `job_id` (or of `token`, when set) is visible.
void ExpectNoJob(CheckpointStore* store, const std::string& job_id, const std::string& token) {
  EXPECT_TRUE(store->GetJob(job_id).status().IsNotFound()) << job_id;
  EXPECT_TRUE(store->GetSnapshotInfo(job_id, 0).status().IsNotFound()) << job_id;
  EXPECT_TRUE(store->LatestSnapshotAtOrBefore(job_id, UINT32_MAX).status().IsNotFound()) << job_id;
  if (!token.empty()) {
    EXPECT_TRUE(store->FindJobBySubmitToken(token).status().IsNotFound()) << token;
  }
}

// The job and its round-0 snapshot (the model in `model`, hash `hash`) are both there.
void ExpectJobWithSnapshot(CheckpointStore* store, const JobRecord& job, const HostTensors& model, uint64_t hash) {
  auto got = store->GetJob(job.job_id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->spec_yaml, job.spec_yaml);
  EXPECT_EQ(got->current_round, 0u);
  if (!job.submit_token.empty()) {
    auto by_token = store->FindJobBySubmitToken(job.submit_token);
    ASSERT_TRUE(by_token.ok()) << by_token.status().ToString();
    EXPECT_EQ(by_token->job_id, job.job_id);
  }
  auto info = store->LatestSnapshotAtOrBefore(job.job_id, UINT32_MAX);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->round, 0u);
  EXPECT_EQ(info->weights_hash, hash);
  HostTensors loaded;
  Status st = LoadSnapshotInto(store, job.job_id, 0, &loaded);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(SameBits(loaded, model));
}

// Kill child: runs before main when the parent re-executes this binary with the directory set. The
// commit hook SIGKILLs the process after the chunks are durable and before the job batch.
[[noreturn]] void RunKillChild(const char* dir) {
  auto opened = CheckpointStore::Open(dir, SmallChunks());
  if (!opened.ok()) _exit(3);
  std::unique_ptr<CheckpointStore> store = std::move(opened).value();
  store->SetBeforeCreateJobCommitHookForTesting([]() -> Status {
    kill(getpid(), SIGKILL);
    return Status::OK();
  });
  auto table = ModelTable();
  HostTensors model(table);
  FillModel(&model, 1);
  Status st = store->CreateJobWithSnapshot(SampleJob("killed", "tok-killed"), model.data(), model.size(), *table, 1);
  (void)st;
  _exit(4);  // the hook should have killed us
}

[[maybe_unused]] const bool kKillChildRan = [] {
  const char* dir = std::getenv(kKillChildDirEnv);
  if (dir == nullptr) return false;
  RunKillChild(dir);
}();

TEST(CreateJobTest, JobAndInitialSnapshotAppearTogetherAndSurviveReopen) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto table = ModelTable();
  HostTensors model(table);
  FillModel(&model, 7);
  const JobRecord job = SampleJob("job-1", "token-1");
  {
    auto store = OpenOrDie(path, SmallChunks());
    ASSERT_NE(store, nullptr);
    Status st = store->CreateJobWithSnapshot(job, model.data(), model.size(), *table, 77, 1234);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ExpectJobWithSnapshot(store.get(), job, model, 77);
    EXPECT_EQ(store->GetSnapshotInfo("job-1", 0)->created_unix_ms, 1234);
    EXPECT_GT(store->GetSnapshotInfo("job-1", 0)->chunk_crcs.size(), 1u);
  }
  auto store = OpenOrDie(path, SmallChunks());
  ASSERT_NE(store, nullptr);
  ExpectJobWithSnapshot(store.get(), job, model, 77);
  // The created job is an ordinary job: rounds commit on top of it.
  auto committed = store->CommitRound(SampleRound("job-1", 1), CommitJob("job-1", 1));
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(*store->LastCommittedRound("job-1"), 1u);
}

TEST(CreateJobTest, UsedIdOrTokenAndBadArgumentsLeaveNothing) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto table = ModelTable();
  HostTensors model(table);
  FillModel(&model, 3);
  {
    auto store = OpenOrDie(path, SmallChunks());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutJob(SampleJob("plain", "plain-token")).ok());

    Status st = store->CreateJobWithSnapshot(SampleJob("plain"), model.data(), model.size(), *table, 1);
    EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
    EXPECT_TRUE(store->GetSnapshotInfo("plain", 0).status().IsNotFound());

    st = store->CreateJobWithSnapshot(SampleJob("other", "plain-token"), model.data(), model.size(), *table, 1);
    EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
    EXPECT_NE(st.message().find("plain"), std::string::npos) << st.message();
    ExpectNoJob(store.get(), "other", "");
    EXPECT_EQ(store->FindJobBySubmitToken("plain-token")->job_id, "plain");

    st = store->CreateJobWithSnapshot(SampleJob("short"), model.data(), model.size() - 1, *table, 1);
    EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
    ExpectNoJob(store.get(), "short", "");
    JobRecord advanced = SampleJob("advanced");
    advanced.current_round = 2;
    st = store->CreateJobWithSnapshot(advanced, model.data(), model.size(), *table, 1);
    EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
    ExpectNoJob(store.get(), "advanced", "");
    EXPECT_EQ(store->ListJobs()->size(), 1u);

    // A second creation of a job made this way is refused and its snapshot is unchanged.
    const JobRecord first = SampleJob("made", "made-token");
    ASSERT_TRUE(store->CreateJobWithSnapshot(first, model.data(), model.size(), *table, 5).ok());
    HostTensors other_model(table);
    FillModel(&other_model, 4);
    st = store->CreateJobWithSnapshot(SampleJob("made"), other_model.data(), other_model.size(), *table, 6);
    EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
    ExpectJobWithSnapshot(store.get(), first, model, 5);
  }
  // Refused creations wrote no chunks: only the one created job's snapshot is in the family.
  auto store = OpenOrDie(path, SmallChunks());
  ASSERT_NE(store, nullptr);
  const uint64_t expected_chunks = store->GetSnapshotInfo("made", 0)->chunk_crcs.size();
  store.reset();
  EXPECT_EQ(RawDump(path, "snapshots").size(), expected_chunks + 1);  // chunks + manifest
}

TEST(CreateJobTest, FailureBetweenChunksAndBatchLeavesNoJobAndRetrySucceeds) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto table = ModelTable();
  HostTensors first_model(table);
  FillModel(&first_model, 11);
  const JobRecord job = SampleJob("job-f", "token-f");
  {
    auto store = OpenOrDie(path, SmallChunks());
    ASSERT_NE(store, nullptr);
    int hook_calls = 0;
    store->SetBeforeCreateJobCommitHookForTesting([&hook_calls]() -> Status {
      ++hook_calls;
      return Status::Unavailable("injected failure before the job batch");
    });
    Status st = store->CreateJobWithSnapshot(job, first_model.data(), first_model.size(), *table, 11);
    EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
    EXPECT_EQ(hook_calls, 1);
    ExpectNoJob(store.get(), "job-f", "token-f");
    EXPECT_TRUE(store->ListJobs()->empty());
  }
  // The chunks were written (the failure really came after them), yet after a restart nothing shows.
  EXPECT_FALSE(RawDump(path, "snapshots").empty());
  EXPECT_TRUE(RawDump(path, "jobs").empty());
  auto store = OpenOrDie(path, SmallChunks());
  ASSERT_NE(store, nullptr);
  ExpectNoJob(store.get(), "job-f", "token-f");

  // The retry (with a different model, so a stale chunk would be caught) succeeds.
  HostTensors retry_model(table);
  FillModel(&retry_model, 12);
  Status st = store->CreateJobWithSnapshot(job, retry_model.data(), retry_model.size(), *table, 12);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ExpectJobWithSnapshot(store.get(), job, retry_model, 12);
}

TEST(CreateJobTest, KillBetweenChunksAndBatchLeavesNoJobAndRetrySucceeds) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  pid_t pid = fork();
  if (pid == 0) {
    setenv(kKillChildDirEnv, path.c_str(), 1);
    execl("/proc/self/exe", "checkpoint_test", "--gtest_filter=-*", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0) << "fork: " << std::strerror(errno);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child did not die in the commit hook (exit status " << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1)
      << ")";

  EXPECT_FALSE(RawDump(path, "snapshots").empty());  // the chunks were durable before the kill
  auto store = OpenOrDie(path, SmallChunks());
  ASSERT_NE(store, nullptr);
  ExpectNoJob(store.get(), "killed", "tok-killed");
  EXPECT_TRUE(store->ListJobs()->empty());

  auto table = ModelTable();
  HostTensors model(table);
  FillModel(&model, 2);
  const JobRecord job = SampleJob("killed", "tok-killed");
  Status st = store->CreateJobWithSnapshot(job, model.data(), model.size(), *table, 2);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ExpectJobWithSnapshot(store.get(), job, model, 2);
}

}  // namespace
}  // namespace tributary::checkpoint
