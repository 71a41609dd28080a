// The worker's side of a round: deterministic local training, payloads per mode, the replica left
// untouched, and ApplyCommittedRound's checks.
#include "worker/tasklet.h"

#include <gtest/gtest.h>

#include <cstring>

#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

LlamaConfig TinyConfig() {
  return testutil::TinyByteLlama(64);
}

std::vector<SequenceRow> Rows() {
  std::vector<Example> examples;
  for (int i = 0; i < 12; ++i) {
    Example ex;
    ex.is_text = true;
    ex.text = std::string("hello world ").substr(i % 5) + std::to_string(i);
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 16, /*pack=*/false, ByteTokenizer::kPadId);
}

JobSpec Spec(FederatedMode mode) {
  JobSpec spec;
  spec.mode = mode;
  spec.dataset = "d";
  spec.seed = 5;
  spec.local_steps = 3;
  spec.batch_size = 4;
  spec.lr = 0.1;
  spec.optimizer = "sgd";
  spec.ferret_k = 64;
  spec.lora_rank = 2;
  return spec;
}

std::unique_ptr<LlamaModel> Model() {
  auto model = LlamaModel::Create(TinyConfig());
  EXPECT_TRUE(model.ok());
  (*model)->InitRandom(3);
  return std::move(*model);
}

TEST(TaskletTest, DataSeedDependsOnJobRoundAndWorker) {
  const uint64_t base = TaskletDataSeed(1, 2, "w0");
  EXPECT_EQ(base, TaskletDataSeed(1, 2, "w0"));
  EXPECT_NE(base, TaskletDataSeed(2, 2, "w0"));
  EXPECT_NE(base, TaskletDataSeed(1, 3, "w0"));
  EXPECT_NE(base, TaskletDataSeed(1, 2, "w1"));
}

TEST(TaskletTest, SameInputsGiveSameBytesAndTheReplicaIsRestored) {
  const std::vector<SequenceRow> rows = Rows();
  for (FederatedMode mode : {FederatedMode::kFerret, FederatedMode::kFedAvg}) {
    SCOPED_TRACE(TaskletModeName(mode));
    auto model = Model();
    const uint64_t before = WeightsHash(model->params());
    TaskletInput input{Spec(mode), 1, "w0", &rows};
    auto first = RunTasklet(input, *model);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(WeightsHash(model->params()), before) << "the replica must be back at the global model";
    auto again = RunTasklet(input, *model);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(first->payload, again->payload);
    EXPECT_EQ(first->num_samples, rows.size());
    EXPECT_GT(first->train_loss, 0);
    input.round = 2;
    auto other_round = RunTasklet(input, *model);
    ASSERT_TRUE(other_round.ok());
    EXPECT_NE(first->payload, other_round->payload) << "the data order must depend on the round";
  }
}

TEST(TaskletTest, FedAvgPayloadIsTheDeltaAndApplyingItReproducesLocalTraining) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec(FederatedMode::kFedAvg);
  auto result = RunTasklet({spec, 1, "w0", &rows}, *model);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->payload.size(), static_cast<size_t>(model->params().size()) * sizeof(float));
  // One client, weight 1, slr 1: the global model becomes (about) the client's trained model, which
  // must have a lower training loss.
  auto before = EvaluateLoss(*model, rows, 4);
  ASSERT_TRUE(ApplyCommittedRound(spec, 1, result->payload, &model->params()).ok());
  auto after = EvaluateLoss(*model, rows, 4);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_LT(after->mean_loss, before->mean_loss);
  std::vector<uint8_t> short_bytes(result->payload.begin(), result->payload.end() - 4);
  EXPECT_FALSE(ApplyCommittedRound(spec, 1, short_bytes, &model->params()).ok());
}

TEST(TaskletTest, FerretAggregateMustCarryItsRound) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec(FederatedMode::kFerret);
  auto result = RunTasklet({spec, 3, "w0", &rows}, *model);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const uint64_t before = WeightsHash(model->params());
  EXPECT_FALSE(ApplyCommittedRound(spec, 4, result->payload, &model->params()).ok());
  EXPECT_EQ(WeightsHash(model->params()), before);
  ASSERT_TRUE(ApplyCommittedRound(spec, 3, result->payload, &model->params()).ok());
  EXPECT_NE(WeightsHash(model->params()), before);
}

TEST(TaskletTest, LoraTrainsAdaptersOnly) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec(FederatedMode::kLora);
  auto adapters = LoraAdapters::Create(TinyConfig(), LoraOptionsFromSpec(spec));
  ASSERT_TRUE(adapters.ok());
  const uint64_t base = WeightsHash(model->params());
  const uint64_t adapters_before = WeightsHash((*adapters)->params());
  auto result = RunTasklet({spec, 1, "w0", &rows}, *model, adapters->get());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(WeightsHash(model->params()), base);
  EXPECT_EQ(WeightsHash((*adapters)->params()), adapters_before);
  EXPECT_EQ(model->linear_adapter(), nullptr) << "the adapters are detached again";
  ASSERT_TRUE(ApplyCommittedRound(spec, 1, result->payload, &(*adapters)->params()).ok());
  EXPECT_NE(WeightsHash((*adapters)->params()), adapters_before) << "the uploaded adapters were trained";
  EXPECT_FALSE(RunTasklet({spec, 1, "w0", &rows}, *model, nullptr).ok());
}

TEST(TaskletTest, LoraWithDropoutAndAccumulationIsDeterministic) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  JobSpec spec = Spec(FederatedMode::kLora);
  spec.lora_dropout = 0.25;
  spec.grad_accum = 2;
  auto run = [&](const JobSpec& s) {
    auto adapters = LoraAdapters::Create(TinyConfig(), LoraOptionsFromSpec(s));
    EXPECT_TRUE(adapters.ok());
    auto result = RunTasklet({s, 1, "w0", &rows}, *model, adapters->get());
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? result->payload : std::vector<uint8_t>{};
  };
  const std::vector<uint8_t> first = run(spec);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, run(spec));
  JobSpec no_dropout = spec;
  no_dropout.lora_dropout = 0;
  EXPECT_NE(first, run(no_dropout)) << "dropout must change the local update";

  // The dropout step advances with every local step and carries over to the next round: the same
  // round run on adapters that already trained one round draws other masks than on fresh ones.
  auto used = LoraAdapters::Create(TinyConfig(), LoraOptionsFromSpec(spec));
  auto fresh = LoraAdapters::Create(TinyConfig(), LoraOptionsFromSpec(spec));
  ASSERT_TRUE(used.ok() && fresh.ok());
  ASSERT_TRUE(RunTasklet({spec, 1, "w0", &rows}, *model, used->get()).ok());
  auto on_used = RunTasklet({spec, 2, "w0", &rows}, *model, used->get());
  auto on_fresh = RunTasklet({spec, 2, "w0", &rows}, *model, fresh->get());
  ASSERT_TRUE(on_used.ok() && on_fresh.ok());
  EXPECT_EQ(WeightsHash((*used)->params()), WeightsHash((*fresh)->params())) << "both start round 2 alike";
  EXPECT_NE(on_used->payload, on_fresh->payload);
}

TEST(TaskletTest, ErrorsNameTheWorker) {
  auto model = Model();
  const std::vector<SequenceRow> none;
  auto result = RunTasklet({Spec(FederatedMode::kFerret), 1, "w7", &none}, *model);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("worker 'w7'"), std::string::npos) << result.status().message();
  JobSpec bad = Spec(FederatedMode::kFerret);
  bad.ferret_distribution = "cauchy";
  const std::vector<SequenceRow> rows = Rows();
  result = RunTasklet({bad, 1, "w7", &rows}, *model);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("worker 'w7'"), std::string::npos) << result.status().message();
}

}  // namespace
}  // namespace tributary
