// The shared training loop: loss falls on a learnable task, accumulation matches a big batch, and a
// trained model written as an HF directory reloads with bit-identical logits.
#include "engine/train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "engine/io/model_dir.h"
#include "engine/model/linear_adapter.h"
#include "engine/text/tokenizer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

std::vector<Example> CountingExamples(int n) {
  std::vector<Example> examples;
  const char* words[] = {"one", "two", "three", "four", "five", "six"};
  for (int i = 0; i < n; ++i) {
    Example ex;
    ex.instruction = std::string("After ") + words[i % 6] + "?";
    ex.output = words[(i + 1) % 6];
    ex.source = "generated:" + std::to_string(i);
    examples.push_back(ex);
  }
  return examples;
}

std::vector<SequenceRow> Rows(const std::vector<Example>& examples, int64_t seq_len) {
  ByteTokenizer tok;
  Result<std::vector<TokenizedExample>> tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok()) << tokenized.status().ToString();
  return BuildRows(*tokenized, seq_len, /*pack=*/false, ByteTokenizer::kPadId);
}

std::unique_ptr<LlamaModel> NewModel(uint64_t seed) {
  Result<std::unique_ptr<LlamaModel>> model = LlamaModel::Create(testutil::TinyByteLlama(128));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  (*model)->InitRandom(seed);
  return std::move(model).value();
}

TEST(TrainerTest, HeldOutLossFalls) {
  std::vector<SequenceRow> train = Rows(CountingExamples(48), 48);
  std::vector<SequenceRow> held_out = Rows(CountingExamples(12), 48);
  auto model = NewModel(1);
  OptimizerOptions opt;
  auto optimizer = CreateOptimizer(opt, model->params().table_ptr());
  ASSERT_TRUE(optimizer.ok());
  Result<LossEval> before = EvaluateLoss(*model, held_out, 4);
  ASSERT_TRUE(before.ok());
  TrainLoopOptions loop;
  loop.steps = 40;
  loop.batch_size = 8;
  loop.schedule.lr = 3e-3;
  int64_t next_row = 0;
  int calls = 0;
  double first_loss = 0, last_loss = 0;
  ASSERT_TRUE(TrainSteps(*model, **optimizer, train, loop, &next_row, [&](const StepStats& s) {
                ++calls;
                if (s.step == 1) first_loss = s.loss;
                last_loss = s.loss;
                EXPECT_GT(s.target_tokens, 0);
                EXPECT_DOUBLE_EQ(s.lr, 3e-3);
              }).ok());
  EXPECT_EQ(calls, 40);
  EXPECT_EQ(next_row, (40 * 8) % 48);
  EXPECT_LT(last_loss, first_loss);
  Result<LossEval> after = EvaluateLoss(*model, held_out, 4);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->tokens, 0);
  EXPECT_LT(after->mean_loss, 0.7 * before->mean_loss) << before->mean_loss << " -> " << after->mean_loss;
}

TEST(TrainerTest, AccumulationEqualsOneBigBatch) {
  // 48 tokens: shorter rows lose every answer token to truncation and nothing would be trained.
  std::vector<SequenceRow> rows = Rows(CountingExamples(8), 48);
  OptimizerOptions opt;
  opt.type = "sgd";
  auto run = [&](int64_t batch, int64_t accum) {
    auto model = NewModel(2);
    auto optimizer = CreateOptimizer(opt, model->params().table_ptr());
    TrainLoopOptions loop;
    loop.steps = 1;
    loop.batch_size = batch;
    loop.grad_accum = accum;
    loop.max_grad_norm = 0;
    loop.schedule.lr = 0.1;
    int64_t next_row = 0;
    EXPECT_TRUE(TrainSteps(*model, **optimizer, rows, loop, &next_row).ok());
    return model;
  };
  auto big = run(8, 1);
  auto accumulated = run(2, 4);
  const Arena& a = big->params();
  const Arena& b = accumulated->params();
  double max_diff = 0, max_abs = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::abs(a.data()[i])));
  }
  EXPECT_LT(max_diff, 1e-5 * std::max(1.0, max_abs));
  const auto untrained = NewModel(2);
  bool moved = false;
  for (int64_t i = 0; i < a.size() && !moved; ++i) moved = a.data()[i] != untrained->params().data()[i];
  EXPECT_TRUE(moved) << "the step must have changed the model";
}

TEST(TrainerTest, SavedModelReloadsWithIdenticalLogits) {
  std::vector<SequenceRow> rows = Rows(CountingExamples(16), 32);
  auto model = NewModel(3);
  OptimizerOptions opt;
  auto optimizer = CreateOptimizer(opt, model->params().table_ptr());
  TrainLoopOptions loop;
  loop.steps = 3;
  loop.batch_size = 4;
  loop.schedule.lr = 1e-2;
  int64_t next_row = 0;
  ASSERT_TRUE(TrainSteps(*model, **optimizer, rows, loop, &next_row).ok());

  Batch batch = MakeBatch(rows, 0, 2);
  ASSERT_TRUE(model->ForwardLogits(batch.tokens.data(), batch.batch_size, batch.seq_len).ok());
  const int64_t n = batch.batch_size * batch.seq_len * model->config().vocab_size;
  std::vector<float> expected(model->Logits(), model->Logits() + n);

  const testutil::TempDir temp("tributary-trainer");
  const std::string dir = temp.path();
  ByteTokenizer tok;
  SaveModelOptions save;
  save.tokenizer = &tok;
  ASSERT_TRUE(SaveModelDir(dir, model->config(), model->params(), save).ok());
  Result<LoadedModel> loaded = LoadModelDir(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  auto reloaded = LlamaModel::Create(loaded->config);
  ASSERT_TRUE(reloaded.ok());
  (*reloaded)->params().CopyFrom(loaded->params);
  ASSERT_TRUE((*reloaded)->ForwardLogits(batch.tokens.data(), batch.batch_size, batch.seq_len).ok());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ((*reloaded)->Logits()[i], expected[i]) << "logit " << i;
}

// A LoRA-like adapter that keeps its parameters outside the model: a learned bias on the lm_head
// output, y[r, o] += bias[o].
class OutputBiasAdapter : public LinearAdapter {
 public:
  explicit OutputBiasAdapter(int64_t vocab_size) {
    auto table = std::make_shared<TensorTable>();
    table->Add("lm_head.adapter_bias", {vocab_size});
    params_ = Arena(table);  // zero-initialised: the adapter starts as the identity
    grads_ = Arena(table);
  }
  void Forward(const Linear& lin, const float*, int64_t rows, float* y) override {
    if (lin.kind != ProjKind::kLmHead) return;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < lin.out; ++o) y[r * lin.out + o] += params_.data()[o];
  }
  void BackwardParams(const Linear& lin, const float*, const float* dy, int64_t rows) override {
    if (lin.kind != ProjKind::kLmHead) return;
    ++backward_calls_;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < lin.out; ++o) grads_.data()[o] += dy[r * lin.out + o];
  }
  void BackwardInput(const Linear&, int64_t, float*) override {}  // the bias does not depend on x

  Arena params_;
  Arena grads_;
  int64_t backward_calls_ = 0;
};

TEST(TrainerTest, ExplicitTargetStepsOnlyThatArenaWithTheBaseFrozen) {
  std::vector<SequenceRow> rows = Rows(CountingExamples(16), 48);
  auto model = NewModel(5);
  Arena base_before(model->params().table_ptr());
  base_before.CopyFrom(model->params());
  OutputBiasAdapter adapter(model->config().vocab_size);
  model->SetLinearAdapter(&adapter);
  model->SetBaseTrainable(false);
  OptimizerOptions opt;
  opt.type = "sgd";
  auto optimizer = CreateOptimizer(opt, adapter.params_.table_ptr());
  ASSERT_TRUE(optimizer.ok());
  TrainLoopOptions loop;
  loop.steps = 6;
  loop.batch_size = 4;
  loop.grad_accum = 2;
  loop.schedule.lr = 0.5;
  loop.target = {&adapter.params_, &adapter.grads_};
  std::vector<int64_t> hooks;  // +step before, -step after
  loop.before_step = [&](int64_t step) { hooks.push_back(step); };
  double first_loss = 0, last_loss = 0;
  int64_t next_row = 0;
  ASSERT_TRUE(TrainSteps(*model, **optimizer, rows, loop, &next_row, [&](const StepStats& s) {
                hooks.push_back(-s.step);
                if (s.step == 1) first_loss = s.loss;
                last_loss = s.loss;
                EXPECT_GT(s.grad_norm, 0);
              }).ok());
  model->SetLinearAdapter(nullptr);
  model->SetBaseTrainable(true);

  EXPECT_EQ(hooks, (std::vector<int64_t>{1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6}));
  EXPECT_EQ(adapter.backward_calls_, 6 * 2);
  for (int64_t i = 0; i < base_before.size(); ++i)
    ASSERT_EQ(model->params().data()[i], base_before.data()[i]) << "base parameter " << i << " moved";
  double bias_norm = 0;
  for (int64_t i = 0; i < adapter.params_.size(); ++i) bias_norm += std::abs(adapter.params_.data()[i]);
  EXPECT_GT(bias_norm, 0) << "the adapter arena was stepped";
  EXPECT_LT(last_loss, first_loss);
}

TEST(TrainerTest, ExplicitTargetNeedsParamsAndGradsOfOneSize) {
  std::vector<SequenceRow> rows = Rows(CountingExamples(4), 32);
  auto model = NewModel(6);
  auto optimizer = CreateOptimizer(OptimizerOptions{}, model->params().table_ptr());
  ASSERT_TRUE(optimizer.ok());
  TrainLoopOptions loop;
  loop.steps = 1;
  loop.target.params = &model->params();
  int64_t next_row = 0;
  EXPECT_TRUE(TrainSteps(*model, **optimizer, rows, loop, &next_row).IsInvalidArgument());
  OutputBiasAdapter adapter(model->config().vocab_size);
  loop.target.grads = &adapter.grads_;
  EXPECT_TRUE(TrainSteps(*model, **optimizer, rows, loop, &next_row).IsInvalidArgument());
}

TEST(TrainerTest, EmptyDataIsAnError) {
  auto model = NewModel(4);
  auto optimizer = CreateOptimizer(OptimizerOptions{}, model->params().table_ptr());
  int64_t next_row = 0;
  TrainLoopOptions loop;
  loop.steps = 1;
  Status s = TrainSteps(*model, **optimizer, {}, loop, &next_row);
  EXPECT_TRUE(s.IsInvalidArgument());
}

}  // namespace
}  // namespace tributary
