// Ferret on a real (tiny) LLaMA: three simulated clients train locally on their own data, project
// their full-parameter updates onto shared random bases, the server averages coefficients, and every
// replica applies the aggregate. The global model's training loss must fall, and two replicas that
// apply the same aggregates must stay byte-identical.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "base/hash.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "federation/ferret_method.h"
#include "peft/ferret.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

// Client c sees only its own task (non-IID): repeating a letter pattern specific to c.
std::vector<SequenceRow> ClientRows(int client) {
  const std::string patterns[] = {"abcabcabc", "xyzxyzxyz", "mnomnomno"};
  std::vector<Example> examples;
  for (int i = 0; i < 16; ++i) {
    Example ex;
    ex.is_text = true;
    ex.text = patterns[client].substr(i % 3) + patterns[client];
    ex.source = "client" + std::to_string(client);
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 24, /*pack=*/false, ByteTokenizer::kPadId);
}

double MeanLoss(LlamaModel& model, const std::vector<std::vector<SequenceRow>>& data) {
  double sum = 0;
  for (const auto& rows : data) {
    auto eval = EvaluateLoss(model, rows, 8);
    EXPECT_TRUE(eval.ok());
    sum += eval->mean_loss;
  }
  return sum / data.size();
}

uint64_t WeightsHash(const Arena& arena) {
  return Fnv1a64(arena.data(), static_cast<size_t>(arena.size()) * sizeof(float));
}

TEST(FerretLlamaTest, ProjectAggregateApplyLowersTrainingLoss) {
  const LlamaConfig config = testutil::TinyByteLlama(64);
  auto global = LlamaModel::Create(config);
  auto local = LlamaModel::Create(config);
  ASSERT_TRUE(global.ok() && local.ok());
  (*global)->InitRandom(7);
  Arena replica((*global)->params().table_ptr());  // a second replica (e.g. a worker's)
  replica.CopyFrom((*global)->params());

  std::vector<std::vector<SequenceRow>> data = {ClientRows(0), ClientRows(1), ClientRows(2)};
  FerretOptions options;
  options.K = 512;
  options.job_seed = 42;
  auto blocks = MakeFerretBlocks(options, (*global)->params().table());
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();

  const double initial = MeanLoss(**global, data);
  ASSERT_GT(initial, 1.0);
  int64_t uplink_bytes = 0;
  for (uint32_t round = 1; round <= 4; ++round) {
    std::vector<Payload> uploads;
    for (int c = 0; c < 3; ++c) {
      (*local)->params().CopyFrom((*global)->params());
      OptimizerOptions opt;
      opt.type = "sgd";
      auto optimizer = CreateOptimizer(opt, (*local)->params().table_ptr());
      TrainLoopOptions loop;
      loop.steps = 5;
      loop.batch_size = 8;
      loop.schedule.lr = 0.5;
      int64_t next_row = 0;
      ASSERT_TRUE(TrainSteps(**local, **optimizer, data[c], loop, &next_row).ok());
      auto projection = ProjectUpdate(options, *blocks, (*global)->params(), (*local)->params(), round);
      ASSERT_TRUE(projection.ok()) << projection.status().ToString();
      auto bytes = SerializePayload(projection->payload);
      ASSERT_TRUE(bytes.ok());
      int64_t expected = 8 + 4 * static_cast<int64_t>(blocks->size());
      for (int k : projection->k_per_block) expected += 4 * k;
      EXPECT_EQ(static_cast<int64_t>(bytes->size()), expected) << "uplink = 8 + 4L + sum K_l * 4 (fp32)";
      uplink_bytes += static_cast<int64_t>(bytes->size());
      uploads.push_back(projection->payload);
    }
    std::vector<ClientCoefficients> clients;
    for (int c = 0; c < 3; ++c) clients.push_back({static_cast<uint64_t>(c), 16, &uploads[c]});
    auto mean = Aggregation::Create({}).value();
    auto aggregate = AggregateCoefficients(clients, AggregationWeights::kEqual, *mean, round,
                                           static_cast<int>(blocks->size()), WireDtype::kFp32);
    ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
    ASSERT_TRUE(ApplyAggregate(options, *blocks, *aggregate, options.server_lr, (*global)->params()).ok());
    ASSERT_TRUE(ApplyAggregate(options, *blocks, *aggregate, options.server_lr, replica).ok());
    ASSERT_EQ(WeightsHash((*global)->params()), WeightsHash(replica)) << "replicas diverged in round " << round;
  }
  const double final_loss = MeanLoss(**global, data);
  EXPECT_LT(final_loss, 0.9 * initial) << initial << " -> " << final_loss;
  EXPECT_GT(uplink_bytes, 0);
}

}  // namespace
}  // namespace tributary
