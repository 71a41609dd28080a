// Whole-model checks of LlamaModel on tiny configs: finite differences for a random sample of
// parameters, gradient accumulation over micro-batches, loss-mask semantics and input validation.
#include "engine/model/llama_model.h"
#include "tests/common/tiny_llama.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace tributary {
namespace {

LlamaConfig TinyConfig(bool tied, bool bias) {
  LlamaConfig c = testutil::MicroLlama();
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  if (bias) c.rope_scaling = {"llama3", 4.0, 1.0, 4.0, 4};  // short original context so scaling bites
  return c;
}

std::unique_ptr<LlamaModel> MakeModel(const LlamaConfig& c, uint64_t seed, float stddev) {
  auto model = LlamaModel::Create(c);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  (*model)->InitRandom(seed, stddev);
  // Norm weights and biases away from their 1 / 0 init so their gradients are generic.
  std::mt19937 rng(seed + 1);
  std::uniform_real_distribution<float> dist(-0.3f, 0.3f);
  Arena& p = (*model)->params();
  for (size_t i = 0; i < p.table().size(); ++i) {
    const TensorEntry& e = p.table()[i];
    if (e.shape.size() == 1)
      for (float& v : p.span(i)) v += dist(rng);
  }
  return std::move(model).value();
}

std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = dist(rng);
  return ids;
}

struct FdCase {
  bool tied;
  bool bias;
};

class LlamaModelFdTest : public ::testing::TestWithParam<FdCase> {};

TEST_P(LlamaModelFdTest, SampledParameterGradientsMatchFiniteDifferences) {
  const LlamaConfig c = TinyConfig(GetParam().tied, GetParam().bias);
  auto model = MakeModel(c, 11, 0.25f);
  const int64_t B = 2, T = 6;
  const std::vector<int32_t> tokens = RandomIds(B * T, c.vocab_size, 1), targets = RandomIds(B * T, c.vocab_size, 2);
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0};
  float loss = 0.0f;
  ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), B, T, &loss).ok());
  model->ZeroGrad();
  ASSERT_TRUE(model->Backward().ok());

  std::mt19937 rng(5);
  Arena& params = model->params();
  const Arena& grads = model->grads();
  double diff2 = 0.0, ref2 = 0.0;
  int checked = 0;
  for (size_t i = 0; i < params.table().size(); ++i) {
    const TensorEntry& e = params.table()[i];
    std::uniform_int_distribution<int64_t> pick(0, e.numel - 1);
    for (int s = 0; s < 3; ++s) {
      const int64_t j = pick(rng);
      float* w = params.tensor(i) + j;
      const float saved = *w, eps = 1e-2f;
      float up = 0.0f, down = 0.0f;
      *w = saved + eps;
      ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), B, T, &up).ok());
      *w = saved - eps;
      ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), B, T, &down).ok());
      *w = saved;
      const double numeric = (static_cast<double>(up) - down) / (2.0 * eps);
      const double analytic = grads.tensor(i)[j];
      diff2 += (numeric - analytic) * (numeric - analytic);
      ref2 += numeric * numeric;
      EXPECT_NEAR(analytic, numeric, 3e-3 + 0.05 * std::abs(numeric)) << e.name << "[" << j << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 30);
  ASSERT_GT(ref2, 0.0);
  EXPECT_LT(std::sqrt(diff2 / ref2), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Variants, LlamaModelFdTest,
                         ::testing::Values(FdCase{false, false}, FdCase{true, false}, FdCase{false, true},
                                           FdCase{true, true}),
                         [](const ::testing::TestParamInfo<FdCase>& info) {
                           return std::string(info.param.tied ? "Tied" : "Untied") +
                                  (info.param.bias ? "BiasLlama3Rope" : "NoBias");
                         });

TEST(LlamaModelTest, GradientAccumulationOverMicroBatchesEqualsOneBatch) {
  const LlamaConfig c = TinyConfig(true, true);
  auto model = MakeModel(c, 3, 0.1f);
  const int64_t T = 7;
  const std::vector<int32_t> tokens = RandomIds(2 * T, c.vocab_size, 1), targets = RandomIds(2 * T, c.vocab_size, 2);
  std::vector<uint8_t> mask(2 * T, 1);
  mask[1] = mask[4] = mask[9] = 0;  // 5 and 6 counted tokens: unequal micro-batch weights

  float loss_full = 0.0f;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), 2, T, &loss_full).ok());
  ASSERT_TRUE(model->Backward().ok());
  const int64_t total = model->LastLossTokens();
  ASSERT_EQ(total, 11);
  std::vector<float> full(model->grads().data(), model->grads().data() + model->grads().size());

  model->ZeroGrad();
  double weighted_loss = 0.0;
  for (int64_t b = 0; b < 2; ++b) {
    float loss = 0.0f;
    ASSERT_TRUE(model->Forward(tokens.data() + b * T, mask.data() + b * T, targets.data() + b * T, 1, T, &loss).ok());
    const float weight = static_cast<float>(model->LastLossTokens()) / static_cast<float>(total);
    weighted_loss += weight * loss;
    ASSERT_TRUE(model->Backward(weight).ok());
  }
  EXPECT_NEAR(weighted_loss, loss_full, 1e-5);
  double diff2 = 0.0, ref2 = 0.0;
  for (int64_t i = 0; i < model->grads().size(); ++i) {
    const double d = model->grads().data()[i] - full[i];
    diff2 += d * d;
    ref2 += static_cast<double>(full[i]) * full[i];
  }
  ASSERT_GT(ref2, 0.0);
  EXPECT_LT(std::sqrt(diff2 / ref2), 1e-5);
}

TEST(LlamaModelTest, MaskedTokensContributeNothing) {
  const LlamaConfig c = TinyConfig(false, false);
  auto model = MakeModel(c, 4, 0.1f);
  const int64_t B = 1, T = 8;
  const std::vector<int32_t> tokens = RandomIds(T, c.vocab_size, 1);
  std::vector<int32_t> targets = RandomIds(T, c.vocab_size, 2);
  const std::vector<uint8_t> mask = {1, 0, 1, 0, 1, 1, 0, 1};

  float loss_a = 0.0f, loss_b = 0.0f;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), B, T, &loss_a).ok());
  EXPECT_EQ(model->LastLossTokens(), 5);
  ASSERT_TRUE(model->Backward().ok());
  std::vector<float> grads_a(model->grads().data(), model->grads().data() + model->grads().size());
  // Changing the targets of masked tokens (even to an ignore index) changes nothing.
  targets[1] = -100;
  targets[3] = (targets[3] + 1) % c.vocab_size;
  targets[6] = (targets[6] + 7) % c.vocab_size;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), mask.data(), targets.data(), B, T, &loss_b).ok());
  ASSERT_TRUE(model->Backward().ok());
  EXPECT_EQ(loss_a, loss_b);
  for (int64_t i = 0; i < model->grads().size(); ++i) ASSERT_EQ(model->grads().data()[i], grads_a[i]) << i;

  // All tokens masked: zero loss and zero gradient.
  const std::vector<uint8_t> none(T, 0);
  float loss_none = 1.0f;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), none.data(), targets.data(), B, T, &loss_none).ok());
  ASSERT_TRUE(model->Backward().ok());
  EXPECT_EQ(loss_none, 0.0f);
  for (int64_t i = 0; i < model->grads().size(); ++i) ASSERT_EQ(model->grads().data()[i], 0.0f);

  // No mask means every token counts.
  float loss_all = 0.0f;
  targets[1] = 0;
  ASSERT_TRUE(model->Forward(tokens.data(), nullptr, targets.data(), B, T, &loss_all).ok());
  EXPECT_EQ(model->LastLossTokens(), T);
  EXPECT_GT(loss_all, 0.0f);
}

TEST(LlamaModelTest, RepeatedStepsAreBitwiseIdentical) {
  const LlamaConfig c = TinyConfig(false, true);
  auto model = MakeModel(c, 8, 0.1f);
  const int64_t B = 3, T = 9;
  const std::vector<int32_t> tokens = RandomIds(B * T, c.vocab_size, 1), targets = RandomIds(B * T, c.vocab_size, 2);
  std::vector<float> first;
  float first_loss = 0.0f;
  for (int run = 0; run < 2; ++run) {
    float loss = 0.0f;
    model->ZeroGrad();
    ASSERT_TRUE(model->Forward(tokens.data(), nullptr, targets.data(), B, T, &loss).ok());
    ASSERT_TRUE(model->Backward().ok());
    const std::vector<float> g(model->grads().data(), model->grads().data() + model->grads().size());
    if (run == 0) {
      first = g;
      first_loss = loss;
    } else {
      EXPECT_EQ(loss, first_loss);
      EXPECT_EQ(g, first);
    }
  }
}

TEST(LlamaModelTest, RejectsBadInputsWithClearErrors) {
  const LlamaConfig c = TinyConfig(false, false);
  auto model = MakeModel(c, 4, 0.1f);
  std::vector<int32_t> tokens(4, 1), targets(4, 1);
  tokens[2] = 32;
  Status s = model->Forward(tokens.data(), nullptr, targets.data(), 1, 4, nullptr);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("tokens[2] = 32"), std::string::npos) << s.message();
  tokens[2] = 1;
  targets[3] = -1;
  s = model->Forward(tokens.data(), nullptr, targets.data(), 1, 4, nullptr);
  EXPECT_NE(s.message().find("targets[3]"), std::string::npos) << s.message();
  std::vector<int32_t> long_tokens(17, 1);
  s = model->Forward(long_tokens.data(), nullptr, long_tokens.data(), 1, 17, nullptr);
  EXPECT_NE(s.message().find("max_position_embeddings 16"), std::string::npos) << s.message();
  EXPECT_EQ(model->Backward().code(), StatusCode::kFailedPrecondition);

  LlamaConfig bad = c;
  bad.num_key_value_heads = 3;
  EXPECT_TRUE(LlamaModel::Create(bad).status().IsInvalidArgument());
}

TEST(LlamaModelTest, ForwardLogitsIsDeterministicAndBatchIndependent) {
  const LlamaConfig c = TinyConfig(true, false);
  auto model = MakeModel(c, 9, 0.1f);
  const int64_t T = 5;
  const std::vector<int32_t> tokens = RandomIds(2 * T, c.vocab_size, 1);
  ASSERT_TRUE(model->ForwardLogits(tokens.data(), 2, T).ok());
  std::vector<float> both(model->Logits(), model->Logits() + 2 * T * c.vocab_size);
  ASSERT_TRUE(model->ForwardLogits(tokens.data() + T, 1, T).ok());
  for (int64_t i = 0; i < T * c.vocab_size; ++i) EXPECT_NEAR(model->Logits()[i], both[T * c.vocab_size + i], 1e-5);
  // A smaller call after a larger one keeps the buffer; its size follows the documented formula.
  EXPECT_EQ(model->ActivationBytes(), LlamaModel::ActivationFloats(c, 2, T) * 4);
  EXPECT_EQ(model->Backward().code(), StatusCode::kFailedPrecondition);  // logits-only forward
}

}  // namespace
}  // namespace tributary
