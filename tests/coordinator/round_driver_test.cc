// The federated round engine with simulated workers in one process: a tiny LLaMA, four non-IID
// workers, a real RocksDB store; rounds, determinism, crash recovery, catch-up, upload validation.
#include "coordinator/round_driver.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "federation/replica_state.h"
#include "federation/tasklet.h"
#include "tests/coordinator/round_sim_util.h"

namespace tributary {
namespace {

using namespace round_sim;  // NOLINT(google-build-using-namespace)

struct Job {
  TempDir dir;
  std::unique_ptr<checkpoint::CheckpointStore> store;
  std::vector<SimWorker> workers;
  std::unique_ptr<RoundDriver> driver;
};

void StartJob(Job& job, const JobSpec& spec) {
  auto store = checkpoint::CheckpointStore::Open(job.dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  job.store = std::move(*store);
  job.workers = MakeWorkers(spec);
  auto driver = RoundDriver::Create(job.store.get(), "job", spec, job.workers[0].state(), 1000);
  ASSERT_TRUE(driver.ok()) << driver.status().ToString();
  job.driver = std::move(*driver);
  job.driver->SetEvaluator([spec](const Arena& global) -> Result<double> { return HeldOutLoss(spec, global); });
}

Upload MakeUpload(const RoundDriver& driver, SimWorker& w, uint32_t round) {
  TaskletInput input{driver.spec(), round, w.id, &w.rows};
  auto result = RunTasklet(input, *w.method, *w.model, w.adapters.get());
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) return {};
  return Upload{driver.job_id(), w.id, round, result->payload, result->num_samples, result->train_loss, 0};
}

TEST(RoundDriverTest, FerretJobCompletesAndHeldOutLossFalls) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 4);
  Job job;
  StartJob(job, spec);
  const double initial = HeldOutLoss(spec, job.driver->global());
  int64_t now_ms = 10'000;
  double last_heldout = initial;
  for (int r = 1; r <= 4; ++r) {
    const CommittedRound committed = RunRound(*job.driver, job.workers, now_ms);
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(committed.round, static_cast<uint32_t>(r));
    ASSERT_EQ(committed.participants.size(), 4u);
    // samples weighting: worker w has 12 + 4w rows, 72 in all.
    for (int w = 0; w < 4; ++w) EXPECT_DOUBLE_EQ(committed.participants[w].weight, (12.0 + 4 * w) / 72.0);
    EXPECT_GT(committed.bytes_up, 0u);
    EXPECT_TRUE(std::isfinite(committed.heldout_loss));
    last_heldout = committed.heldout_loss;
    // The round record is durable and carries what a replica needs.
    auto record = job.store->GetRound("job", r);
    ASSERT_TRUE(record.ok()) << record.status().ToString();
    EXPECT_EQ(record->weights_hash, job.driver->global_hash());
    EXPECT_EQ(record->aggregate.size(), committed.aggregate.size());
    EXPECT_EQ(record->job_seed, 42u);
    now_ms += 10'000;
  }
  std::printf("ferret held-out loss %.4f -> %.4f\n", initial, last_heldout);
  EXPECT_LT(last_heldout, 0.9 * initial) << initial << " -> " << last_heldout;
  EXPECT_NEAR(HeldOutLoss(spec, job.driver->global()), last_heldout, 1e-9);
  EXPECT_TRUE(job.driver->finished());
  auto record = job.store->GetJob("job");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, checkpoint::JobState::kCompleted);
  EXPECT_EQ(record->current_round, 4u);
  EXPECT_TRUE(job.store->GetSnapshotInfo("job", 2).ok());
  EXPECT_TRUE(job.store->GetSnapshotInfo("job", 4).ok());
  EXPECT_FALSE(job.store->GetSnapshotInfo("job", 3).ok());
  EXPECT_FALSE(job.driver->StartRound(Inventory(job.workers), now_ms).ok()) << "a finished job starts no round";
}

TEST(RoundDriverTest, SameSeedGivesBitIdenticalWeights) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 3);
  TempDir a, b, c;
  const uint64_t first = RunJob(spec, a.path());
  const uint64_t second = RunJob(spec, b.path());
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(first, second);
  const uint64_t other_seed = RunJob(TinyJobSpec("ferret", 43, 3), c.path());
  EXPECT_NE(first, other_seed) << "the job seed must matter";
}

TEST(RoundDriverTest, CrashMidRoundResumesToTheFaultFreeResult) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 4);
  TempDir reference_dir;
  const uint64_t fault_free = RunJob(spec, reference_dir.path());
  ASSERT_FALSE(HasFailure());

  TempDir dir;
  std::vector<SimWorker> workers = MakeWorkers(spec);
  std::vector<std::vector<uint8_t>> before_crash;
  {
    auto store = checkpoint::CheckpointStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
    ASSERT_TRUE(driver.ok());
    RunRound(**driver, workers, 10'000);
    RunRound(**driver, workers, 20'000);
    RunRound(**driver, workers, 30'000);  // round 3 commits; snapshot at 2; round 3 replays on resume
    ASSERT_FALSE(HasFailure());
    auto start = (*driver)->StartRound(Inventory(workers), 40'000);
    ASSERT_TRUE(start.ok());
    ASSERT_EQ(start->participants.size(), 4u);
    for (int w = 0; w < 2; ++w) {
      Upload upload = MakeUpload(**driver, workers[w], 4);
      before_crash.push_back(upload.payload);
      auto outcome = (*driver)->AcceptUpload(upload);
      ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    }
  }  // "crash": driver and store are gone; two uploads of round 4 are logged

  auto store = checkpoint::CheckpointStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto driver = RoundDriver::Resume(store->get(), "job", spec);
  ASSERT_TRUE(driver.ok()) << driver.status().ToString();
  EXPECT_EQ((*driver)->last_committed_round(), 3u);
  EXPECT_EQ((*driver)->global_hash(), WeightsHash(workers[0].state())) << "replay must rebuild round 3";
  EXPECT_EQ((*driver)->reported(), (std::vector<std::string>{"w0", "w1"}));
  auto start = (*driver)->StartRound(Inventory(workers), 50'000);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(start->round, 4u);
  // The deadline history came back from the logged upload times: the floor (60 s), not the initial 1800 s.
  EXPECT_EQ(start->deadline_ms - start->started_ms, 60'000);
  for (int w = 0; w < 4; ++w) {
    // Every worker redoes its tasklet: the same seed gives the same bytes.
    Upload upload = MakeUpload(**driver, workers[w], 4);
    if (w < 2) {
      EXPECT_EQ(upload.payload, before_crash[w]) << workers[w].id;
    }
    auto outcome = (*driver)->AcceptUpload(upload);
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    EXPECT_EQ(*outcome, w < 2 ? UploadOutcome::kDuplicate : UploadOutcome::kAccepted) << workers[w].id;
  }
  EXPECT_EQ((*driver)->ReadyToClose(50'001), RoundCloseState::kComplete);
  auto committed = (*driver)->CloseRound(50'001);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_TRUE(committed->job_finished);
  EXPECT_EQ((*driver)->global_hash(), fault_free);
}

TEST(RoundDriverTest, PartialParticipationAndCatchUpByReplayAndSnapshot) {
  JobSpec spec = TinyJobSpec("ferret", 7, 4);
  spec.quorum = 0.75;
  Job job;
  StartJob(job, spec);
  RunRound(*job.driver, job.workers, 10'000);
  ASSERT_FALSE(HasFailure());

  // Round 2: w3 never reports; the round stays open until the deadline, then closes with the quorum.
  auto start = job.driver->StartRound(Inventory(job.workers), 20'000);
  ASSERT_TRUE(start.ok());
  for (int w = 0; w < 3; ++w) ASSERT_TRUE(job.driver->AcceptUpload(MakeUpload(*job.driver, job.workers[w], 2)).ok());
  EXPECT_EQ(job.driver->ReadyToClose(start->deadline_ms - 1), RoundCloseState::kOpen);
  EXPECT_EQ(job.driver->ReadyToClose(start->deadline_ms), RoundCloseState::kQuorumReached);
  EXPECT_FALSE(job.driver->CloseRound(start->deadline_ms - 1).ok());
  auto committed = job.driver->CloseRound(start->deadline_ms);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->participants.size(), 3u);
  for (int w = 0; w < 3; ++w) {
    ASSERT_TRUE(job.driver->method().Apply(committed->aggregate, 2, &job.workers[w].state()).ok());
    job.workers[w].at_round = 2;
  }
  // Round 3: w3 misses it too (RunRound closes at the deadline).
  RunRound(*job.driver, job.workers, 30'000, {"w3"});
  ASSERT_FALSE(HasFailure());

  // w3 is 2 rounds behind (not more than snapshot_every = 2): replay the logged rounds.
  SimWorker& lagging = job.workers[3];
  auto plan = job.driver->CatchUp(lagging.at_round, 3);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_FALSE(plan->use_snapshot);
  ASSERT_EQ(plan->rounds.size(), 2u);
  for (const checkpoint::RoundRecord& record : plan->rounds) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(record.aggregate.data());
    ASSERT_TRUE(job.driver->method().Apply({bytes, record.aggregate.size()}, record.round, &lagging.state()).ok());
    EXPECT_EQ(WeightsHash(lagging.state()), record.weights_hash) << "round " << record.round;
    lagging.at_round = record.round;
  }
  EXPECT_EQ(WeightsHash(lagging.state()), job.driver->global_hash());

  // A fresh replica at round 0 is 3 behind: snapshot of round 2, then round 3.
  auto from_scratch = job.driver->CatchUp(0, 3);
  ASSERT_TRUE(from_scratch.ok());
  EXPECT_TRUE(from_scratch->use_snapshot);
  EXPECT_EQ(from_scratch->snapshot_round, 2u);
  ASSERT_EQ(from_scratch->rounds.size(), 1u);
  auto snapshot_table = job.store->SnapshotTable("job", from_scratch->snapshot_round);
  ASSERT_TRUE(snapshot_table.ok());
  Arena fresh(*snapshot_table);
  ASSERT_TRUE(job.store->LoadSnapshot("job", from_scratch->snapshot_round, fresh.table(), fresh.data()).ok());
  const auto& r3 = from_scratch->rounds[0];
  ASSERT_TRUE(job.driver->method()
                  .Apply({reinterpret_cast<const uint8_t*>(r3.aggregate.data()), r3.aggregate.size()}, 3, &fresh)
                  .ok());
  EXPECT_EQ(WeightsHash(fresh), job.driver->global_hash());
  EXPECT_FALSE(job.driver->CatchUp(0, 9).ok()) << "rounds past the last committed one do not exist";

  // Synced again, w3 takes part in the last round and ends with the coordinator's weights.
  RunRound(*job.driver, job.workers, 40'000);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(job.driver->finished());
  EXPECT_EQ(WeightsHash(lagging.state()), job.driver->global_hash());
}

TEST(RoundDriverTest, RoundBelowQuorumAtTheDeadlineIsReplannedKeepingLoggedUploads) {
  JobSpec spec = TinyJobSpec("ferret", 42, 1);
  spec.quorum = 0.75;
  Job job;
  StartJob(job, spec);
  auto start = job.driver->StartRound(Inventory(job.workers), 10'000);
  ASSERT_TRUE(start.ok());
  ASSERT_TRUE(job.driver->AcceptUpload(MakeUpload(*job.driver, job.workers[0], 1)).ok());
  EXPECT_EQ(job.driver->ReadyToClose(start->deadline_ms), RoundCloseState::kQuorumMissed);
  auto refused = job.driver->CloseRound(start->deadline_ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(job.driver->StartRound(Inventory(job.workers), start->deadline_ms).ok()) << "round still open";

  job.driver->AbandonRound();
  auto again = job.driver->StartRound(Inventory(job.workers), start->deadline_ms + 1);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->round, 1u);
  EXPECT_EQ(again->participants, start->participants);
  EXPECT_EQ(job.driver->reported(), (std::vector<std::string>{"w0"}));
  for (int w = 1; w < 4; ++w) ASSERT_TRUE(job.driver->AcceptUpload(MakeUpload(*job.driver, job.workers[w], 1)).ok());
  auto committed = job.driver->CloseRound(again->started_ms + 1);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->participants.size(), 4u);
  EXPECT_TRUE(committed->job_finished);
}

// Workers with too little host memory for the job are not selected (the capability filter).
TEST(RoundDriverTest, WorkersWithoutEnoughMemoryAreNotSelected) {
  JobSpec spec = TinyJobSpec("ferret", 42, 1);
  Job job;
  StartJob(job, spec);
  std::vector<WorkerInventory> inventory = Inventory(job.workers);  // 1 GiB each
  inventory[2].memory_bytes = 1 << 20;
  job.driver->SetMinWorkerMemory(int64_t{64} << 20);
  auto start = job.driver->StartRound(inventory, 10'000);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(start->participants, (std::vector<std::string>{"w0", "w1", "w3"}));
  job.driver->AbandonRound();
  job.driver->SetMinWorkerMemory(int64_t{2} << 30);
  auto none = job.driver->StartRound(inventory, 10'000);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("memory"), std::string::npos) << none.status().ToString();
}

TEST(RoundDriverTest, ResumeRefusesASpecThatDoesNotReproduceTheLoggedRounds) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 3);
  TempDir dir;
  const uint64_t final_hash = RunJob(spec, dir.path());
  ASSERT_FALSE(HasFailure());
  auto store = checkpoint::CheckpointStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto resumed = RoundDriver::Resume(store->get(), "job", spec);  // snapshot of round 2 + replay of round 3
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->global_hash(), final_hash);
  EXPECT_TRUE((*resumed)->finished());
  JobSpec changed = spec;
  changed.server_lr = 0.5;
  auto refused = RoundDriver::Resume(store->get(), "job", changed);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption) << refused.status().ToString();
  EXPECT_FALSE(RoundDriver::Resume(store->get(), "no-such-job", spec).ok());
}

TEST(RoundDriverTest, RejectsBadUploadsNamingTheWorkerAndIgnoresRepeats) {
  const JobSpec spec = TinyJobSpec("ferret", 42, 3);
  Job job;
  StartJob(job, spec);
  auto start = job.driver->StartRound(Inventory(job.workers), 10'000);
  ASSERT_TRUE(start.ok());
  const Upload good = MakeUpload(*job.driver, job.workers[1], 1);

  auto expect_rejected = [&](const Upload& upload, const std::string& what) {
    auto outcome = job.driver->AcceptUpload(upload);
    ASSERT_FALSE(outcome.ok()) << what;
    EXPECT_EQ(outcome.status().code(), StatusCode::kInvalidArgument) << what;
    EXPECT_NE(outcome.status().message().find("worker '" + upload.worker_id + "'"), std::string::npos)
        << what << ": " << outcome.status().message();
  };
  Upload wrong_round = good;
  wrong_round.round = 2;
  expect_rejected(wrong_round, "wrong round");
  Upload unknown_job = good;
  unknown_job.job_id = "other";
  expect_rejected(unknown_job, "unknown job");
  Upload stranger = good;
  stranger.worker_id = "w9";
  expect_rejected(stranger, "not a participant");
  Upload truncated = good;
  truncated.payload.resize(truncated.payload.size() - 3);
  expect_rejected(truncated, "truncated payload");
  Upload nan = good;
  {  // overwrite the first coefficient of the first block that has one
    size_t offset = kPayloadHeaderBytes;
    auto header_l = static_cast<size_t>(good.payload[4]) | (static_cast<size_t>(good.payload[5]) << 8);
    for (size_t l = 0; l < header_l; ++l) {
      const size_t k =
          static_cast<size_t>(good.payload[offset + 2]) | (static_cast<size_t>(good.payload[offset + 3]) << 8);
      offset += kPayloadBlockHeaderBytes;
      if (k > 0) break;
    }
    const float bad = std::nanf("");
    ASSERT_LT(offset + sizeof(bad), nan.payload.size() + 1);
    std::memcpy(nan.payload.data() + offset, &bad, sizeof(bad));
  }
  expect_rejected(nan, "NaN coefficient");
  Upload nan_loss = good;
  nan_loss.train_loss = std::nan("");
  expect_rejected(nan_loss, "NaN train loss");
  EXPECT_TRUE(job.driver->reported().empty()) << "nothing rejected may be logged";

  auto first = job.driver->AcceptUpload(good);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, UploadOutcome::kAccepted);
  auto again = job.driver->AcceptUpload(good);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, UploadOutcome::kDuplicate);
  Upload changed = good;  // a second, different upload of the same worker: the first one wins
  changed.train_loss += 1;
  auto second = job.driver->AcceptUpload(changed);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, UploadOutcome::kDuplicate);
  auto logged = job.store->ListUpdates("job", 1);
  ASSERT_TRUE(logged.ok());
  ASSERT_EQ(logged->size(), 1u);
  EXPECT_EQ((*logged)[0].train_loss, good.train_loss);

  for (int w : {0, 2, 3}) ASSERT_TRUE(job.driver->AcceptUpload(MakeUpload(*job.driver, job.workers[w], 1)).ok());
  ASSERT_TRUE(job.driver->CloseRound(20'000).ok());
  auto late = job.driver->AcceptUpload(good);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(*late, UploadOutcome::kLate);
  EXPECT_EQ(job.store->ListUpdates("job", 1)->size(), 4u);
}

TEST(RoundDriverTest, FedAvgJobCompletesAndLossFalls) {
  const JobSpec spec = TinyJobSpec("fedavg", 42, 3);
  Job job;
  StartJob(job, spec);
  const double initial = HeldOutLoss(spec, job.driver->global());
  int64_t now_ms = 10'000;
  CommittedRound last;
  while (!job.driver->finished()) {
    last = RunRound(*job.driver, job.workers, now_ms);
    ASSERT_FALSE(HasFailure());
    now_ms += 10'000;
  }
  EXPECT_EQ(last.aggregate.size(), static_cast<size_t>(job.driver->global().size()) * sizeof(float));
  std::printf("fedavg held-out loss %.4f -> %.4f\n", initial, last.heldout_loss);
  EXPECT_LT(last.heldout_loss, 0.9 * initial) << initial << " -> " << last.heldout_loss;

  // A dense upload of the wrong size or with a NaN is refused, naming the worker.
  JobSpec one_more = spec;
  one_more.rounds = 4;
  auto store_again = RoundDriver::Resume(job.store.get(), "job", one_more);
  ASSERT_TRUE(store_again.ok()) << store_again.status().ToString();
  EXPECT_EQ((*store_again)->global_hash(), job.driver->global_hash());
  ASSERT_TRUE((*store_again)->StartRound(Inventory(job.workers), now_ms).ok());
  Upload upload = MakeUpload(**store_again, job.workers[2], 4);
  Upload short_upload = upload;
  short_upload.payload.resize(upload.payload.size() - 4);
  auto refused = (*store_again)->AcceptUpload(short_upload);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("worker 'w2'"), std::string::npos) << refused.status().message();
  Upload nan_upload = upload;
  const float bad = std::nanf("");
  std::memcpy(nan_upload.payload.data() + 4 * 17, &bad, sizeof(bad));
  refused = (*store_again)->AcceptUpload(nan_upload);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("worker 'w2'"), std::string::npos) << refused.status().message();
}

// FedKSeed through the coordinator's round: K-scalar uploads, every replica's rebuild from the seeds
// matching the coordinator's weights hash (RunRound checks it), a reproducible job, a lower loss.
TEST(RoundDriverTest, FedKSeedJobCommitsScalarRoundsThatEveryReplicaRebuilds) {
  JobSpec spec = TinyJobSpec("fedkseed", 42, 3);
  spec.lr = 1e-3;  // zeroth-order steps move every parameter by lr * g (docs/fedkseed.md, "Tuning")
  spec.max_grad_norm = 0;
  spec.local_steps = 20;
  spec.fedkseed.K = 256;
  Job job;
  StartJob(job, spec);
  const double initial = HeldOutLoss(spec, job.driver->global());
  int64_t now_ms = 10'000;
  CommittedRound last;
  while (!job.driver->finished()) {
    last = RunRound(*job.driver, job.workers, now_ms);
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(last.aggregate.size(), 8u + 4u * 256u);
    now_ms += 10'000;
  }
  std::printf("fedkseed held-out loss %.4f -> %.4f\n", initial, last.heldout_loss);
  EXPECT_LT(last.heldout_loss, initial) << initial << " -> " << last.heldout_loss;
  auto record = job.store->GetRound("job", 3);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->seed_mode, "fedkseed_fixed_pool");
  TempDir a, b;
  EXPECT_EQ(RunJob(spec, a.path()), RunJob(spec, b.path()));
}

TEST(RoundDriverTest, LoraJobTrainsAdaptersOnly) {
  const JobSpec spec = TinyJobSpec("lora", 42, 3);
  Job job;
  StartJob(job, spec);
  const uint64_t base_hash = WeightsHash(job.workers[0].model->params());
  const uint64_t initial_adapters = job.driver->global_hash();
  const double initial = HeldOutLoss(spec, job.driver->global());
  int64_t now_ms = 10'000;
  CommittedRound last;
  while (!job.driver->finished()) {
    last = RunRound(*job.driver, job.workers, now_ms);
    ASSERT_FALSE(HasFailure());
    now_ms += 10'000;
  }
  EXPECT_NE(job.driver->global_hash(), initial_adapters);
  EXPECT_EQ(last.aggregate.size(), static_cast<size_t>(job.driver->global().size()) * sizeof(float));
  for (SimWorker& w : job.workers) EXPECT_EQ(WeightsHash(w.model->params()), base_hash) << w.id << ": base changed";
  std::printf("lora held-out loss %.4f -> %.4f\n", initial, last.heldout_loss);
  EXPECT_LT(last.heldout_loss, initial) << initial << " -> " << last.heldout_loss;
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

using namespace round_sim;  // NOLINT(google-build-using-namespace)

TEST(RoundDriverTest, CheckUploadIsAcceptUploadWithoutThePayload) {
  const JobSpec spec = TinyJobSpec("fedavg", 42, 3);
  Job job;
  StartJob(job, spec);
  const uint64_t dense = job.driver->method().MaxPayloadBytes();
  EXPECT_EQ(dense, static_cast<uint64_t>(job.driver->global().size()) * sizeof(float));
  auto not_open = job.driver->CheckUpload("w1", 1, dense);
  EXPECT_EQ(not_open.status().code(), StatusCode::kUnavailable) << "the next round, not open yet: retry later";
  ASSERT_TRUE(job.driver->StartRound(Inventory(job.workers), 10'000).ok());
  auto ok = job.driver->CheckUpload("w1", 1, dense);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, UploadOutcome::kAccepted);
  for (uint64_t size : {dense - 4, dense + 4}) {
    auto wrong_size = job.driver->CheckUpload("w1", 1, size);
    EXPECT_EQ(wrong_size.status().code(), StatusCode::kInvalidArgument) << size;
    EXPECT_NE(wrong_size.status().message().find("worker 'w1'"), std::string::npos) << wrong_size.status().message();
  }
  EXPECT_EQ(job.driver->CheckUpload("w1", 2, dense).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(job.driver->CheckUpload("w9", 1, dense).status().code(), StatusCode::kInvalidArgument);
  // The same checks run first in AcceptUpload: a short dense payload is refused before it is parsed.
  Upload upload = MakeUpload(*job.driver, job.workers[1], 1);
  upload.payload.resize(upload.payload.size() - 4);
  auto refused = job.driver->AcceptUpload(upload);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("4 bytes per trainable parameter"), std::string::npos)
      << refused.status().message();
  upload = MakeUpload(*job.driver, job.workers[1], 1);
  ASSERT_TRUE(job.driver->AcceptUpload(upload).ok());
  EXPECT_EQ(*job.driver->CheckUpload("w1", 1, dense), UploadOutcome::kDuplicate);
  for (int w : {0, 2, 3}) ASSERT_TRUE(job.driver->AcceptUpload(MakeUpload(*job.driver, job.workers[w], 1)).ok());
  ASSERT_TRUE(job.driver->CloseRound(20'000).ok());
  EXPECT_EQ(*job.driver->CheckUpload("w1", 1, dense), UploadOutcome::kLate);
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// Cluster mode with Nesterov: the outer momentum lives in the replicas' method objects and in no snapshot,
// so a restarted coordinator must replay from round 0 with the method it goes on with.
TEST(RoundDriverTest, ClusterJobWithNesterovResumesToTheFaultFreeResult) {
  JobSpec spec = TinyJobSpec("cluster", 42, 3);
  spec.cluster.codec = "int8";
  spec.snapshot_every = 1;  // asked for, yet not written: a snapshot would lose the momentum
  ASSERT_TRUE(ApplyKeepsState(spec));
  TempDir reference_dir;
  const uint64_t fault_free = RunJob(spec, reference_dir.path());
  ASSERT_FALSE(HasFailure());

  TempDir dir;
  std::vector<SimWorker> workers = MakeWorkers(spec);
  {
    auto store = checkpoint::CheckpointStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
    ASSERT_TRUE(driver.ok());
    RunRound(**driver, workers, 10'000);
    RunRound(**driver, workers, 20'000);
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ((*store)->LatestSnapshotAtOrBefore("job", 2)->round, 0u);
  }  // "crash" after round 2

  auto store = checkpoint::CheckpointStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto driver = RoundDriver::Resume(store->get(), "job", spec);
  ASSERT_TRUE(driver.ok()) << driver.status().ToString();
  EXPECT_EQ((*driver)->global_hash(), WeightsHash(workers[0].state()));
  const CommittedRound last = RunRound(**driver, workers, 30'000);  // applies on the replayed momentum
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(last.job_finished);
  EXPECT_EQ((*driver)->global_hash(), fault_free);
}

// Four workers without a fabric identity: the links around `cycle` are fast (10 Gbit/s), the other two slow.
LinkMatrix CycleLinks(const std::vector<std::string>& cycle) {
  LinkMatrix links;
  for (size_t i = 0; i < cycle.size(); ++i)
    for (size_t j = i + 1; j < cycle.size(); ++j) {
      const bool adjacent = j == i + 1 || (i == 0 && j == cycle.size() - 1);
      links.Set(cycle[i], cycle[j], {adjacent ? 10000.0 : 1000.0, 0.1});
    }
  return links;
}

// The ring the plan ordered starts at the leader and never takes a slow link.
void ExpectFastRing(const std::vector<std::string>& ring, const LinkMatrix& links, double fast) {
  ASSERT_EQ(ring.size(), 4u);
  for (size_t i = 0; i < ring.size(); ++i) {
    const LinkMeasurement* link = links.Find(ring[i], ring[(i + 1) % ring.size()]);
    ASSERT_NE(link, nullptr);
    EXPECT_EQ(link->mbps, fast) << ring[i] << " > " << ring[(i + 1) % ring.size()];
  }
}

// Cluster mode plans every opened round: the island's members become the planned ring (their gloo ranks,
// the leader first), and a round opened after the measurements changed is re-planned, saying what changed.
TEST(RoundDriverTest, ClusterRoundsFollowThePlannedRingAndReplanWhenLinksChange) {
  JobSpec spec = TinyJobSpec("cluster", 42, 3);
  spec.cluster.codec = "int8";
  Job job;
  StartJob(job, spec);
  ASSERT_FALSE(HasFailure());
  std::vector<round_sim::SimWorker>& workers = job.workers;
  RoundDriver& d = *job.driver;
  EXPECT_EQ(d.plan(), nullptr);

  PlanMeasurements measured;
  measured.links = CycleLinks({"w0", "w1", "w3", "w2"});
  d.SetMeasurements(measured);
  auto start = d.StartRound(Inventory(workers), 10'000);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  ASSERT_NE(d.plan(), nullptr) << d.plan_error();
  EXPECT_EQ(d.plan_change(), "first plan");
  EXPECT_EQ(d.plan_round(), 1u);
  ASSERT_EQ(d.plan()->islands.size(), 1u);
  const IslandPlan& planned = d.plan()->islands[0];
  ASSERT_EQ(start->islands.size(), 1u);
  EXPECT_EQ(start->islands[0].members, planned.ring);
  EXPECT_EQ(start->islands[0].members[0], planned.leader);
  EXPECT_EQ(start->uploaders, std::vector<std::string>{planned.leader});
  ExpectFastRing(planned.ring, measured.links, 10000);
  EXPECT_EQ(planned.bottleneck_mbps, 10000);

  // The same measurements: the same plan, nothing to log.
  d.AbandonRound();
  ASSERT_TRUE(d.StartRound(Inventory(workers), 11'000).ok());
  EXPECT_EQ(d.plan_change(), "");

  // Other links are fast now: the ring changes, and the log line says so.
  measured.links = CycleLinks({"w0", "w3", "w1", "w2"});
  d.SetMeasurements(measured);
  d.AbandonRound();
  start = d.StartRound(Inventory(workers), 12'000);
  ASSERT_TRUE(start.ok());
  ExpectFastRing(d.plan()->islands[0].ring, measured.links, 10000);
  EXPECT_EQ(start->islands[0].members, d.plan()->islands[0].ring);
  EXPECT_NE(d.plan_change().find("ring"), std::string::npos) << d.plan_change();
}

// cluster.codec auto: each round's codec is its plan's (fp32 before anything is measured; fp4 once compute
// and uplinks are, at rates no inner phase hides an outer sync behind), an upload in another codec is refused
// naming the worker and both codecs, each round records its codec, and a restarted coordinator replays the
// mixed rounds (with the Nesterov momentum) to the same weights.
TEST(RoundDriverTest, ClusterCodecAutoUsesEachRoundsPlannedCodecAndReplays) {
  JobSpec spec = TinyJobSpec("cluster", 42, 3);
  spec.cluster.codec = "auto";
  std::vector<round_sim::SimWorker> workers = MakeWorkers(spec);
  TempDir dir;
  uint64_t hash = 0;
  {
    auto store = checkpoint::CheckpointStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
    ASSERT_TRUE(driver.ok()) << driver.status().ToString();
    RoundDriver& d = **driver;
    auto start = d.StartRound(Inventory(workers), 10'000);
    ASSERT_TRUE(start.ok()) << start.status().ToString();
    EXPECT_EQ(start->codec, "fp32");
    EXPECT_EQ(start->outer_reason, "codec fp32 (auto: the plan's)");
    ASSERT_TRUE(workers[0].method->SetRoundCodec(1, "int8").ok());
    TaskletInput input{spec, 1, "w0", &workers[0].rows};
    auto int8 = RunTasklet(input, *workers[0].method, *workers[0].model);
    ASSERT_TRUE(int8.ok()) << int8.status().ToString();
    auto refused = d.AcceptUpload(Upload{"job", "w0", 1, int8->payload, int8->num_samples, int8->train_loss, 10'500});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().message(),
              "job 'job': round 1: worker 'w0': payload is in codec int8, but round 1's codec is fp32");
    d.AbandonRound();
    round_sim::RunRound(d, workers, 11'000);

    PlanMeasurements measured;
    for (const round_sim::SimWorker& w : workers) {
      measured.tokens_per_s[w.id] = 1e9;
      measured.links.SetUplink(w.id, {1000, 1});
    }
    d.SetMeasurements(measured);
    round_sim::RunRound(d, workers, 20'000);
    EXPECT_EQ(d.current().codec, "fp4");
    EXPECT_NE(d.plan_change().find("codec fp4 (was fp32)"), std::string::npos) << d.plan_change();
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ((*store)->GetRound("job", 1)->seed_mode, "cluster_fp32");
    EXPECT_EQ((*store)->GetRound("job", 2)->seed_mode, "cluster_fp4");
    EXPECT_LT((*store)->GetRound("job", 2)->aggregate.size(), d.method().MaxPayloadBytes() / 6)
        << "fp4 is under a sixth of fp32";
    hash = d.global_hash();
  }
  auto store = checkpoint::CheckpointStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto resumed = RoundDriver::Resume(store->get(), "job", spec);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->global_hash(), hash);
}

// train.local_steps auto: a round trains the plan's H, the planner's stated 100 before anything is measured,
// the least H whose outer sync fits once compute and uplinks are.
TEST(RoundDriverTest, ClusterLocalStepsAutoTrainsThePlansH) {
  JobSpec spec = TinyJobSpec("cluster", 42, 3);
  spec.local_steps = 0;
  spec.cluster.codec = "int8";
  Job job;
  StartJob(job, spec);
  ASSERT_FALSE(HasFailure());
  std::vector<round_sim::SimWorker>& workers = job.workers;
  RoundDriver& d = *job.driver;
  auto start = d.StartRound(Inventory(workers), 10'000);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(start->local_steps, 100);
  EXPECT_EQ(start->codec, "") << "the job's own codec";
  EXPECT_EQ(start->outer_reason, "H 100 (auto: the plan's)");
  d.AbandonRound();

  PlanMeasurements measured;  // slow compute on fast uplinks: H 10 hides the outer sync
  for (const round_sim::SimWorker& w : workers) {
    measured.tokens_per_s[w.id] = 1000;
    measured.links.SetUplink(w.id, {1000, 1});
  }
  d.SetMeasurements(measured);
  const CommittedRound committed = round_sim::RunRound(d, workers, 20'000);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(committed.round, 1u);
  EXPECT_EQ(d.current().local_steps, 10);
  EXPECT_EQ(d.plan()->local_steps, 10);
  EXPECT_NE(d.plan_change().find("H 10 (was 100)"), std::string::npos) << d.plan_change();
}

}  // namespace
}  // namespace tributary
