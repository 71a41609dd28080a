#include "tests/coordinator/round_sim_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "federation/replica_state.h"
#include "federation/tasklet.h"
#include "tests/common/tiny_llama.h"

namespace tributary::round_sim {
namespace {

const char* const kPatterns[kNumWorkers] = {"abcabcabc", "xyzxyzxyz", "mnomnomno", "qrsqrsqrs"};

std::vector<SequenceRow> RowsOf(const std::vector<std::string>& texts) {
  std::vector<Example> examples;
  for (const std::string& text : texts) {
    Example ex;
    ex.is_text = true;
    ex.text = text;
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 24, /*pack=*/false, ByteTokenizer::kPadId);
}

}  // namespace

LlamaConfig TinyConfig() {
  return testutil::TinyByteLlama(64);
}

std::vector<SequenceRow> WorkerRows(int worker) {
  const std::string pattern = kPatterns[worker];
  const int count = 12 + 4 * worker;  // unequal sizes: samples weighting matters
  std::vector<std::string> texts;
  texts.reserve(count);
  for (int i = 0; i < count; ++i) texts.push_back(pattern.substr(i % 3) + pattern);
  return RowsOf(texts);
}

std::vector<SequenceRow> HeldOutRows() {
  std::vector<std::string> texts;
  for (const char* pattern : kPatterns) texts.push_back(std::string(pattern) + pattern + pattern);
  return RowsOf(texts);
}

JobSpec TinyJobSpec(const std::string& mode, uint64_t seed, int64_t rounds) {
  JobSpec spec;
  spec.name = "tiny";
  spec.base_model = "tiny";
  spec.dataset = kDataset;
  spec.seq_len = 24;
  spec.mode = mode;
  spec.rounds = rounds;
  spec.client_fraction = 1.0;
  spec.min_clients = 1;
  spec.quorum = 1.0;
  spec.seed = seed;
  spec.aggregation_weights = AggregationWeights::kSamples;
  spec.local_steps = 5;
  spec.batch_size = 8;
  spec.lr = mode == "lora" ? 0.05 : 0.5;
  spec.optimizer = mode == "lora" ? "adamw" : "sgd";
  spec.max_grad_norm = 1.0;
  spec.server_lr = 1.0;
  spec.ferret.K = 512;
  spec.lora.rank = 4;
  spec.lora.alpha = 8;
  spec.lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

  spec.snapshot_every = 2;
  spec.source_text = "name: tiny\n";
  return spec;
}

std::vector<SimWorker> MakeWorkers(const JobSpec& spec, int count) {
  std::vector<SimWorker> workers;
  for (int w = 0; w < count; ++w) {
    SimWorker worker;
    worker.id = "w" + std::to_string(w);
    auto model = LlamaModel::Create(TinyConfig());
    EXPECT_TRUE(model.ok());
    worker.model = std::move(*model);
    worker.model->InitRandom(7);
    auto adapters = CreateJobAdapters(spec, TinyConfig());
    EXPECT_TRUE(adapters.ok()) << adapters.status().ToString();
    worker.adapters = std::move(*adapters);
    auto method = CreateMethod(spec, worker.state().table_ptr());
    EXPECT_TRUE(method.ok()) << method.status().ToString();
    worker.method = std::move(*method);
    worker.rows = WorkerRows(w % kNumWorkers);
    workers.push_back(std::move(worker));
  }
  return workers;
}

std::vector<WorkerInventory> Inventory(const std::vector<SimWorker>& workers) {
  std::vector<WorkerInventory> inventory;
  for (const SimWorker& w : workers) {
    WorkerInventory inv;
    inv.worker_id = w.id;
    inv.cores = 2;
    inv.memory_bytes = int64_t{1} << 30;
    inv.datasets[kDataset] = static_cast<int64_t>(w.rows.size());
    inv.alive = true;
    inventory.push_back(inv);
  }
  return inventory;
}

double HeldOutLoss(const JobSpec& spec, const Arena& state) {
  auto model = LlamaModel::Create(TinyConfig());
  EXPECT_TRUE(model.ok());
  auto created = CreateJobAdapters(spec, TinyConfig());
  EXPECT_TRUE(created.ok());
  std::unique_ptr<LoraAdapters> adapters = std::move(*created);
  if (adapters) {
    (*model)->InitRandom(7);
    adapters->params().CopyFrom(state);
    adapters->Attach(**model);
  } else {
    (*model)->params().CopyFrom(state);
  }
  auto eval = EvaluateLoss(**model, HeldOutRows(), 8);
  EXPECT_TRUE(eval.ok());
  if (adapters) LoraAdapters::Detach(**model);
  return eval.ok() ? eval->mean_loss : 0.0;
}

CommittedRound RunRound(RoundDriver& driver, std::vector<SimWorker>& workers, int64_t now_ms,
                        const std::set<std::string>& absent) {
  auto start = driver.StartRound(Inventory(workers), now_ms);
  EXPECT_TRUE(start.ok()) << start.status().ToString();
  if (!start.ok()) return {};
  for (SimWorker& w : workers) {
    if (absent.count(w.id) > 0) continue;
    if (!std::binary_search(start->participants.begin(), start->participants.end(), w.id)) continue;
    EXPECT_EQ(w.at_round, start->round - 1) << w.id << " is not synced";
    TaskletInput input{driver.spec(), start->round, w.id, &w.rows};
    input.spec.local_steps = start->local_steps;  // the round's H (cluster mode: the plan's when auto)
    if (!start->codec.empty()) {
      EXPECT_TRUE(w.method->SetRoundCodec(start->round, start->codec).ok());
    }
    auto result = RunTasklet(input, *w.method, *w.model, w.adapters.get());
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    if (!result.ok()) return {};
    Upload upload{driver.job_id(),    w.id,         start->round, result->payload, result->num_samples,
                  result->train_loss, now_ms + 1000};
    auto outcome = driver.AcceptUpload(upload);
    EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    EXPECT_EQ(*outcome, UploadOutcome::kAccepted);
  }
  const int64_t close_ms = absent.empty() ? now_ms + 2000 : start->deadline_ms;
  auto committed = driver.CloseRound(close_ms);
  EXPECT_TRUE(committed.ok()) << committed.status().ToString();
  if (!committed.ok()) return {};
  for (SimWorker& w : workers) {
    if (absent.count(w.id) > 0) continue;
    EXPECT_TRUE(w.method->Apply(committed->aggregate, committed->round, &w.state()).ok());
    w.at_round = committed->round;
    EXPECT_EQ(WeightsHash(w.state()), committed->weights_hash) << w.id << " diverged in round " << committed->round;
  }
  return *committed;
}

uint64_t RunJob(const JobSpec& spec, const std::string& dir) {
  auto store = checkpoint::CheckpointStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  std::vector<SimWorker> workers = MakeWorkers(spec);
  auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
  EXPECT_TRUE(driver.ok()) << driver.status().ToString();
  if (!driver.ok()) return 0;
  int64_t now_ms = 10'000;
  while (!(*driver)->finished()) {
    RunRound(**driver, workers, now_ms);
    if (testing::Test::HasFailure()) return 0;
    now_ms += 10'000;
  }
  return (*driver)->global_hash();
}

}  // namespace tributary::round_sim
