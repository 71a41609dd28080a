// CheckpointStore on a real RocksDB in a fresh temp directory per test: jobs, updates, rounds,
// workers, corruption reporting, schema versions and backups.
#include "checkpoint/store.h"

#include <gtest/gtest.h>

#include <rocksdb/db.h>
#include <algorithm>

#include "checkpoint/records.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::OpenOrDie;
using testutil::RawDump;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::SampleUpdate;
using testutil::TempDir;
using testutil::WithRawDb;

// Commits rounds 1..n of `job_id` with sample contents.
void CommitRounds(CheckpointStore* store, const std::string& job_id, uint32_t n) {
  for (uint32_t r = 1; r <= n; ++r) {
    auto outcome = store->CommitRound(SampleRound(job_id, r), CommitJob(job_id, r));
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    ASSERT_EQ(*outcome, WriteOutcome::kWritten);
  }
}

TEST(StoreTest, OpenCreatesColumnFamiliesAndReopens) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
  }
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  for (const char* cf : {"default", "jobs", "rounds", "updates", "snapshots", "workers", "meta"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), cf), names.end()) << cf;
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  auto job = store->GetJob("j1");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->spec_yaml, SampleJob("j1").spec_yaml);
}

TEST(StoreTest, MissingStoreWithoutCreateIsNotFound) {
  TempDir dir;
  StoreOptions options;
  options.create_if_missing = false;
  auto store = CheckpointStore::Open(dir.Sub("nothing"), options);
  ASSERT_TRUE(store.status().IsNotFound()) << store.status().ToString();
  EXPECT_NE(store.status().message().find("nothing"), std::string::npos);
}

TEST(StoreTest, SecondOpenOfALockedStoreFailsCleanly) {
  TempDir dir;
  auto first = OpenOrDie(dir.Sub("db"));
  ASSERT_NE(first, nullptr);
  auto second = CheckpointStore::Open(dir.Sub("db"));
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(dir.Sub("db")), std::string::npos) << second.status().ToString();
}

TEST(StoreTest, JobsRoundTripAndListInIdOrder) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  for (const char* id : {"job-b", "job-a", "job-c"}) ASSERT_TRUE(store->PutJob(SampleJob(id)).ok());
  auto jobs = store->ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0].job_id, "job-a");
  EXPECT_EQ((*jobs)[1].job_id, "job-b");
  EXPECT_EQ((*jobs)[2].job_id, "job-c");
  EXPECT_EQ((*jobs)[0].state, JobState::kPending);
  EXPECT_EQ((*jobs)[0].created_unix_ms, SampleJob("job-a").created_unix_ms);

  Status dup = store->PutJob(SampleJob("job-a"));
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
  EXPECT_TRUE(store->GetJob("job-zzz").status().IsNotFound());
  EXPECT_TRUE(store->GetJob("").status().IsInvalidArgument());
  JobRecord bad = SampleJob("job-d");
  bad.current_round = 3;
  EXPECT_TRUE(store->PutJob(bad).IsInvalidArgument());
}

TEST(StoreTest, SubmitTokenIsUniqueAndFindsItsJob) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j1", "token-1")).ok());
  Status st = store->PutJob(SampleJob("j2", "token-1"));
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_NE(st.message().find("j1"), std::string::npos) << st.message();
  // The refused job was not created (the check and the write are one step).
  EXPECT_TRUE(store->GetJob("j2").status().IsNotFound());
  ASSERT_TRUE(store->PutJob(SampleJob("j2", "token-2")).ok());
  ASSERT_TRUE(store->PutJob(SampleJob("j3")).ok());  // no token
  ASSERT_TRUE(store->PutJob(SampleJob("j4")).ok());  // no token either: empty tokens do not collide

  auto found = store->FindJobBySubmitToken("token-2");
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->job_id, "j2");
  EXPECT_TRUE(store->FindJobBySubmitToken("token-9").status().IsNotFound());
}

TEST(StoreTest, JobStateChangesUntilFinished) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j")).ok());
  ASSERT_TRUE(store->UpdateJobState("j", JobState::kRunning, "", 10).ok());
  EXPECT_EQ(store->GetJob("j")->state, JobState::kRunning);
  ASSERT_TRUE(store->UpdateJobState("j", JobState::kFailed, "worker w1: out of memory", 20).ok());
  auto job = store->GetJob("j");
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_EQ(job->failure_reason, "worker w1: out of memory");
  EXPECT_EQ(job->updated_unix_ms, 20);
  // A retry of the same final transition is fine; leaving a finished state is not.
  EXPECT_TRUE(store->UpdateJobState("j", JobState::kFailed, "worker w1: out of memory", 30).ok());
  Status st = store->UpdateJobState("j", JobState::kRunning, "", 40);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("FINISHED:FAILED"), std::string::npos);
  EXPECT_TRUE(store->UpdateJobState("nope", JobState::kRunning, "", 1).IsNotFound());
}

TEST(StoreTest, UpdatesRoundTripInWorkerOrderAndDuplicatesAreNoOps) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j")).ok());
  for (const char* w : {"w3", "w1", "w2"}) {
    auto outcome = store->AcceptUpdate(SampleUpdate("j", 1, w));
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    EXPECT_EQ(*outcome, WriteOutcome::kWritten);
  }
  // A second update from w1 for round 1, with different contents: not stored, the first one stays.
  UpdateRecord again = SampleUpdate("j", 1, "w1");
  again.payload = "replacement";
  again.num_samples = 1;
  auto outcome = store->AcceptUpdate(again);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(*outcome, WriteOutcome::kAlreadyPresent);

  auto updates = store->ListUpdates("j", 1);
  ASSERT_TRUE(updates.ok()) << updates.status().ToString();
  ASSERT_EQ(updates->size(), 3u);
  EXPECT_EQ((*updates)[0].worker_id, "w1");
  EXPECT_EQ((*updates)[1].worker_id, "w2");
  EXPECT_EQ((*updates)[2].worker_id, "w3");
  const UpdateRecord expected = SampleUpdate("j", 1, "w1");
  EXPECT_EQ((*updates)[0].payload, expected.payload);
  EXPECT_EQ((*updates)[0].num_samples, expected.num_samples);
  EXPECT_EQ((*updates)[0].train_loss, expected.train_loss);
  EXPECT_EQ((*updates)[0].received_unix_ms, expected.received_unix_ms);
  EXPECT_TRUE(store->ListUpdates("j", 2)->empty());

  EXPECT_TRUE(store->AcceptUpdate(SampleUpdate("ghost", 1, "w1")).status().IsNotFound());
}

TEST(StoreTest, UpdatesForCommittedRoundsAreRefusedAndCanBePruned) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j")).ok());
  for (uint32_t r = 1; r <= 3; ++r) {
    for (const char* w : {"w1", "w2"}) ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j", r, w)).ok());
    ASSERT_TRUE(store->CommitRound(SampleRound("j", r), CommitJob("j", r)).ok());
  }
  auto late = store->AcceptUpdate(SampleUpdate("j", 2, "w9"));
  EXPECT_EQ(late.status().code(), StatusCode::kFailedPrecondition) << late.status().ToString();
  // Updates are kept after their round is committed (the log keeps every accepted update).
  EXPECT_EQ(store->ListUpdates("j", 1)->size(), 2u);
  ASSERT_TRUE(store->PruneUpdates("j", 3).ok());
  EXPECT_TRUE(store->ListUpdates("j", 1)->empty());
  EXPECT_TRUE(store->ListUpdates("j", 2)->empty());
  EXPECT_EQ(store->ListUpdates("j", 3)->size(), 2u);
  EXPECT_EQ(store->GetRound("j", 1)->aggregate, SampleRound("j", 1).aggregate);  // rounds untouched
}

TEST(StoreTest, CommitRoundRoundTripsAndAdvancesTheJob) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j", "tok")).ok());
  EXPECT_EQ(*store->LastCommittedRound("j"), 0u);
  ASSERT_TRUE(store->CommitRound(SampleRound("j", 1), CommitJob("j", 1)).ok());
  auto round = store->GetRound("j", 1);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  const RoundRecord expected = SampleRound("j", 1);
  EXPECT_EQ(round->aggregate, expected.aggregate);
  EXPECT_EQ(round->weights_hash, expected.weights_hash);
  EXPECT_EQ(round->participants.size(), expected.participants.size());
  EXPECT_EQ(round->participants[1].worker_id, "worker-b");
  EXPECT_EQ(round->participants[1].weight, 0.5);
  EXPECT_EQ(round->metrics.heldout_loss, expected.metrics.heldout_loss);
  EXPECT_EQ(round->metrics.bytes_down, expected.metrics.bytes_down);
  EXPECT_EQ(round->committed_unix_ms, expected.committed_unix_ms);

  auto job = store->GetJob("j");
  EXPECT_EQ(job->current_round, 1u);
  EXPECT_EQ(job->state, JobState::kRunning);
  EXPECT_EQ(job->submit_token, "tok");  // immutable fields kept
  EXPECT_EQ(*store->LastCommittedRound("j"), 1u);
  EXPECT_TRUE(store->GetRound("j", 2).status().IsNotFound());
  EXPECT_TRUE(store->LastCommittedRound("nope").status().IsNotFound());
}

TEST(StoreTest, RecommitIsIdempotentWhenIdenticalAndRefusedWhenDifferent) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j")).ok());
  CommitRounds(store.get(), "j", 2);

  RoundRecord retry = SampleRound("j", 2);
  retry.committed_unix_ms += 12345;  // a retry after a restart reads a new clock
  auto outcome = store->CommitRound(retry, CommitJob("j", 2));
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(*outcome, WriteOutcome::kAlreadyPresent);
  EXPECT_EQ(store->GetRound("j", 2)->committed_unix_ms, SampleRound("j", 2).committed_unix_ms);

  RoundRecord conflicting = SampleRound("j", 2);
  conflicting.aggregate[0] = static_cast<char>(conflicting.aggregate[0] ^ 1);
  outcome = store->CommitRound(conflicting, CommitJob("j", 2));
  EXPECT_EQ(outcome.status().code(), StatusCode::kAlreadyExists) << outcome.status().ToString();
  EXPECT_NE(outcome.status().message().find("round 2"), std::string::npos);
  EXPECT_EQ(store->GetRound("j", 2)->aggregate, SampleRound("j", 2).aggregate);

  // Out of order: round 4 before round 3.
  outcome = store->CommitRound(SampleRound("j", 4), CommitJob("j", 4));
  EXPECT_EQ(outcome.status().code(), StatusCode::kFailedPrecondition) << outcome.status().ToString();
  EXPECT_TRUE(store->GetRound("j", 4).status().IsNotFound());
  EXPECT_EQ(store->GetJob("j")->current_round, 2u);
  // Mismatched job record, round 0.
  EXPECT_TRUE(store->CommitRound(SampleRound("j", 3), CommitJob("other", 3)).status().IsInvalidArgument());
  EXPECT_TRUE(store->CommitRound(SampleRound("j", 0), CommitJob("j", 0)).status().IsInvalidArgument());
}

TEST(StoreTest, FinalRoundCanFinishTheJobAndNothingCommitsAfter) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j")).ok());
  CommitRounds(store.get(), "j", 1);
  JobRecord done = CommitJob("j", 2);
  done.state = JobState::kCompleted;
  ASSERT_TRUE(store->CommitRound(SampleRound("j", 2), done).ok());
  auto job = store->GetJob("j");
  EXPECT_EQ(job->state, JobState::kCompleted);
  EXPECT_EQ(job->current_round, 2u);
  auto more = store->CommitRound(SampleRound("j", 3), CommitJob("j", 3));
  EXPECT_EQ(more.status().code(), StatusCode::kFailedPrecondition) << more.status().ToString();
  EXPECT_EQ(store->AcceptUpdate(SampleUpdate("j", 3, "w")).status().code(), StatusCode::kFailedPrecondition);
}

TEST(StoreTest, RoundsIterateInNumericOrderAcrossByteBoundaries) {
  TempDir dir;
  StoreOptions options;
  options.sync_writes = false;  // 600 commits; durability is not what this test checks
  auto store = OpenOrDie(dir.Sub("db"), options);
  // "a" and "ab": one id extends the other; their rounds must not mix.
  ASSERT_TRUE(store->PutJob(SampleJob("a")).ok());
  ASSERT_TRUE(store->PutJob(SampleJob("ab")).ok());
  for (uint32_t r = 1; r <= 300; ++r) {
    ASSERT_TRUE(store->CommitRound(SampleRound("ab", r), CommitJob("ab", r)).ok());
    ASSERT_TRUE(store->CommitRound(SampleRound("a", r), CommitJob("a", r)).ok());
  }
  auto all = store->ListRounds("a", 1, 300);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 300u);
  for (uint32_t i = 0; i < 300; ++i) {
    EXPECT_EQ((*all)[i].round, i + 1);
    EXPECT_EQ((*all)[i].job_id, "a");
    EXPECT_EQ((*all)[i].aggregate, SampleRound("a", i + 1).aggregate);
  }
  auto window = store->ListRounds("a", 250, 260);
  ASSERT_EQ(window->size(), 11u);
  EXPECT_EQ(window->front().round, 250u);
  EXPECT_EQ(window->back().round, 260u);
  EXPECT_EQ(store->ListRounds("a", 299, 1000)->size(), 2u);
  EXPECT_TRUE(store->ListRounds("a", 301, 400)->empty());
  EXPECT_TRUE(store->ListRounds("a", 10, 9)->empty());
  EXPECT_EQ(*store->LastCommittedRound("a"), 300u);
  EXPECT_EQ(*store->LastCommittedRound("ab"), 300u);
  store.reset();

  // RocksDB's own order of the stored keys is (job, round) order.
  auto raw = RawDump(dir.Sub("db"), "rounds");
  ASSERT_EQ(raw.size(), 600u);
  std::vector<std::pair<std::string, uint32_t>> seen;
  for (const auto& [key, value] : raw) {
    RoundRecord r;
    ASSERT_TRUE(internal::DecodeRound(value, "raw", &r).ok());
    seen.emplace_back(r.job_id, r.round);
  }
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
}

TEST(StoreTest, WorkersUpsertAndListInIdOrder) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutWorker({"w2", "pk2", "{\"gpu\":\"H200\"}", 1}).ok());
  ASSERT_TRUE(store->PutWorker({"w1", std::string("\0\1\2", 3), "", 2}).ok());
  ASSERT_TRUE(store->PutWorker({"w2", "pk2", "{\"gpu\":\"H200\"}", 50}).ok());
  auto workers = store->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 2u);
  EXPECT_EQ((*workers)[0].worker_id, "w1");
  EXPECT_EQ((*workers)[0].public_key, std::string("\0\1\2", 3));
  EXPECT_EQ((*workers)[1].last_seen_unix_ms, 50);
  EXPECT_EQ(store->GetWorker("w2")->capabilities, "{\"gpu\":\"H200\"}");
  EXPECT_TRUE(store->GetWorker("w9").status().IsNotFound());
}

TEST(StoreTest, CorruptedValuesAreReportedNamingTheRecord) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    auto store = OpenOrDie(path);
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    ASSERT_TRUE(store->PutJob(SampleJob("j2")).ok());
    ASSERT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 1, "w1")).ok());
    CommitRounds(store.get(), "j1", 2);
    ASSERT_TRUE(store->PutWorker({"w1", "pk", "", 1}).ok());
  }
  // Damage values behind the store's back: garbage for round 1, one flipped byte in the update,
  // a truncated job record for j2, a worker record stored under another worker's key.
  WithRawDb(path, [&](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    rocksdb::WriteOptions wo;
    ASSERT_TRUE(db->Put(wo, cfs["rounds"], internal::RoundKey("j1", 1), "garbage bytes!").ok());
    std::string update;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs["updates"], internal::UpdateKey("j1", 1, "w1"), &update).ok());
    update[update.size() / 2] ^= 0x10;
    ASSERT_TRUE(db->Put(wo, cfs["updates"], internal::UpdateKey("j1", 1, "w1"), update).ok());
    std::string job;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs["jobs"], internal::JobKey("j2"), &job).ok());
    ASSERT_TRUE(db->Put(wo, cfs["jobs"], internal::JobKey("j2"), job.substr(0, job.size() - 3)).ok());
    ASSERT_TRUE(db->Put(wo, cfs["workers"], internal::WorkerKey("w2"), internal::EncodeWorker({"w1", "", "", 0})).ok());
  });
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);

  auto round = store->GetRound("j1", 1);
  ASSERT_TRUE(round.status().IsCorruption()) << round.status().ToString();
  EXPECT_NE(round.status().message().find("job 'j1' round 1"), std::string::npos) << round.status().message();
  auto rounds = store->ListRounds("j1", 1, 2);
  ASSERT_TRUE(rounds.status().IsCorruption()) << rounds.status().ToString();
  EXPECT_TRUE(store->GetRound("j1", 2).ok());  // the undamaged neighbour still reads

  auto updates = store->ListUpdates("j1", 1);
  ASSERT_TRUE(updates.status().IsCorruption()) << updates.status().ToString();
  EXPECT_NE(updates.status().message().find("worker 'w1'"), std::string::npos) << updates.status().message();
  // A duplicate of a damaged update reports the damage instead of claiming "already present".
  EXPECT_TRUE(store->AcceptUpdate(SampleUpdate("j1", 1, "w1")).status().IsCorruption());

  auto job = store->GetJob("j2");
  ASSERT_TRUE(job.status().IsCorruption()) << job.status().ToString();
  EXPECT_NE(job.status().message().find("job 'j2'"), std::string::npos);
  EXPECT_TRUE(store->ListJobs().status().IsCorruption());
  EXPECT_TRUE(store->GetJob("j1").ok());

  auto worker = store->GetWorker("w2");
  ASSERT_TRUE(worker.status().IsCorruption()) << worker.status().ToString();
  EXPECT_NE(worker.status().message().find("w2"), std::string::npos);
}

TEST(StoreTest, SchemaVersionMismatchIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  { ASSERT_NE(OpenOrDie(path), nullptr); }
  auto raw_schema = RawDump(path, "meta");
  ASSERT_EQ(raw_schema.count("schema_version"), 1u);
  uint32_t stored = 0;
  ASSERT_TRUE(internal::DecodeSchemaVersion(raw_schema["schema_version"], "raw", &stored).ok());
  EXPECT_EQ(stored, kSchemaVersion);

  WithRawDb(path, [&](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs["meta"], "schema_version",
                        internal::EncodeSchemaVersion(kSchemaVersion + 1))
                    .ok());
  });
  auto newer = CheckpointStore::Open(path);
  ASSERT_EQ(newer.status().code(), StatusCode::kFailedPrecondition) << newer.status().ToString();
  EXPECT_NE(newer.status().message().find("schema version " + std::to_string(kSchemaVersion + 1)), std::string::npos)
      << newer.status().message();
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);

  WithRawDb(path, [&](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs["meta"], "schema_version", "v1").ok());
  });
  auto garbage = CheckpointStore::Open(path);
  ASSERT_TRUE(garbage.status().IsCorruption()) << garbage.status().ToString();
  EXPECT_NE(garbage.status().message().find("schema_version"), std::string::npos);
}

TEST(StoreTest, ForeignDatabaseWithoutSchemaVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* jobs = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "jobs", &jobs).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), jobs, "someone", "else's data").ok());
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(jobs).ok());
  }
  auto store = CheckpointStore::Open(path);
  ASSERT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
  EXPECT_NE(store.status().message().find("jobs"), std::string::npos);
}

TEST(StoreTest, CreateCheckpointMakesAnOpenableCopy) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(store->PutJob(SampleJob("j", "tok")).ok());
  CommitRounds(store.get(), "j", 3);
  ASSERT_TRUE(store->CreateCheckpoint(dir.Sub("backup")).ok());
  EXPECT_EQ(store->CreateCheckpoint(dir.Sub("backup")).code(), StatusCode::kAlreadyExists);
  CommitRounds(store.get(), "j", 0);  // no-op; the original stays usable
  ASSERT_TRUE(store->CommitRound(SampleRound("j", 4), CommitJob("j", 4)).ok());
  store.reset();

  auto copy = OpenOrDie(dir.Sub("backup"));
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(*copy->LastCommittedRound("j"), 3u);  // the state at backup time
  EXPECT_EQ(copy->FindJobBySubmitToken("tok")->job_id, "j");
  EXPECT_EQ(copy->GetRound("j", 3)->aggregate, SampleRound("j", 3).aggregate);
}

}  // namespace
}  // namespace tributary::checkpoint
