// An island whose members train unequal batches (cluster mode's planned shares, docs/placement.md): with the
// reducer weighting each member's gradient by its target tokens, two members over real gloo on loopback step
// exactly as one worker training their batches concatenated (to fp tolerance); a plain mean would not.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/island.h"
#include "cluster/island_reducer.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/optimizer.h"
#include "engine/train/trainer.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

constexpr int kSteps = 2;

// Rows of unequal lengths (padded, so the members' target tokens differ per row too).
std::vector<SequenceRow> Rows(int count) {
  std::vector<Example> examples;
  for (int i = 0; i < count; ++i) {
    Example ex;
    ex.is_text = true;
    ex.text = std::string("the quick brown fox ").substr(static_cast<size_t>(i % 7)) + std::to_string(i * 37);
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 16, /*pack=*/false, ByteTokenizer::kPadId);
}

// Trains a fresh copy of the same model for kSteps SGD steps of `batch` rows; returns its parameters.
std::vector<float> Train(const std::vector<SequenceRow>& rows, int64_t batch, GradientReducer* reducer) {
  auto model = LlamaModel::Create(testutil::TinyByteLlama(64));
  EXPECT_TRUE(model.ok());
  (*model)->InitRandom(3);
  OptimizerOptions opt;
  opt.type = "sgd";
  auto optimizer = CreateOptimizer(opt, (*model)->params().table_ptr());
  EXPECT_TRUE(optimizer.ok());
  TrainLoopOptions loop;
  loop.steps = kSteps;
  loop.batch_size = batch;
  loop.max_grad_norm = 1.0;
  loop.schedule.lr = 0.5;
  loop.reducer = reducer;
  int64_t next_row = 0;
  Status trained = TrainSteps(**model, **optimizer, rows, loop, &next_row);
  EXPECT_TRUE(trained.ok()) << trained.ToString();
  const Arena& p = (*model)->params();
  return std::vector<float>(p.data(), p.data() + p.size());
}

// Members' parameters after training their parts of `all` (batches 1 and 3 per step) in an island of 2.
std::vector<std::vector<float>> TrainIsland(const std::vector<SequenceRow>& all, bool weighted, uint64_t incarnation) {
  const std::vector<int64_t> batch = {1, 3};
  std::vector<std::vector<SequenceRow>> parts(2);
  for (int step = 0; step < kSteps; ++step)
    for (int64_t i = 0; i < 4; ++i) parts[i == 0 ? 0 : 1].push_back(all[static_cast<size_t>(step * 4 + i)]);
  LocalRendezvousStore store;
  std::vector<std::vector<float>> out(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      IslandOptions o;
      o.island_id = "shares";
      o.incarnation = incarnation;
      o.size = 2;
      o.rank = rank;
      o.bind_address = "127.0.0.1";
      o.timeout_ms = 10000;
      auto group = IslandGroup::Join(o, &store);
      ASSERT_TRUE(group.ok()) << group.status().ToString();
      IslandReducer reducer(group->get(), weighted);
      out[static_cast<size_t>(rank)] =
          Train(parts[static_cast<size_t>(rank)], batch[static_cast<size_t>(rank)], &reducer);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

double MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double most = 0;
  for (size_t i = 0; i < a.size(); ++i) most = std::max(most, std::fabs(static_cast<double>(a[i]) - b[i]));
  return most;
}

TEST(IslandBatchTest, UnequalSharesStepAsOneWorkerOnTheConcatenatedBatch) {
  const std::vector<SequenceRow> all = Rows(4 * kSteps);
  const std::vector<float> alone = Train(all, 4, nullptr);
  const std::vector<std::vector<float>> weighted = TrainIsland(all, /*weighted=*/true, 1);
  ASSERT_EQ(weighted[0].size(), alone.size());
  EXPECT_EQ(weighted[0], weighted[1]) << "the members must stay bit-identical";
  const double error = MaxDifference(weighted[0], alone);
  EXPECT_LT(error, 2e-6) << "the island's update must be the concatenated batch's";
  // The plain mean over members counts the one-row member as much as the three-row one: another update.
  const std::vector<std::vector<float>> plain = TrainIsland(all, /*weighted=*/false, 2);
  EXPECT_EQ(plain[0], plain[1]);
  EXPECT_GT(MaxDifference(plain[0], alone), 50 * std::max(error, 1e-7));
}

}  // namespace
}  // namespace tributary
