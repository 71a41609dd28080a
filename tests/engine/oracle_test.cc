// LlamaModel against the plain-torch HF reference (tests/oracle/make_llama_oracle.py): logits, loss,
// every parameter gradient, and the weights after 3 AdamW steps, per tensor to 1e-4 norm-relative.
// Fixtures: tests/oracle/fixtures/<variant>/{config.json, model.safetensors, expected.safetensors}.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/model_dir.h"
#include "engine/io/safetensors.h"
#include "engine/model/llama_model.h"
#include "engine/train/optimizer.h"

namespace tributary {
namespace {

const std::string kFixtures = "tests/oracle/fixtures/";

// ||actual - expected|| / max(||expected||, tiny) over one tensor.
double NormRelativeError(const float* actual, const std::vector<float>& expected) {
  double diff2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double d = static_cast<double>(actual[i]) - expected[i];
    diff2 += d * d;
    ref2 += static_cast<double>(expected[i]) * expected[i];
  }
  return std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-30);
}

class OracleTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = kFixtures + GetParam();
    auto loaded = LoadModelDir(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    config_ = loaded->config;
    auto model = LlamaModel::Create(config_);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    model_->params().CopyFrom(loaded->params);
    auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    expected_ = std::make_unique<SafetensorsFile>(std::move(expected).value());
    const SafetensorsTensorInfo* info = expected_->Find("tokens");
    ASSERT_NE(info, nullptr);
    ASSERT_EQ(info->shape.size(), 2u);
    B_ = info->shape[0];
    T_ = info->shape[1];
    auto tokens = expected_->ReadInt64Vector("tokens");
    auto targets = expected_->ReadInt64Vector("targets");
    auto mask = expected_->ReadInt64Vector("mask");
    ASSERT_TRUE(tokens.ok() && targets.ok() && mask.ok());
    for (int64_t i = 0; i < B_ * T_; ++i) {
      tokens_.push_back(static_cast<int32_t>((*tokens)[i]));
      targets_.push_back(static_cast<int32_t>((*targets)[i]));  // -100 where masked
      mask_.push_back(static_cast<uint8_t>((*mask)[i]));
    }
  }

  std::vector<float> Expected(const std::string& name) {
    auto v = expected_->ReadFloatVector(name);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? std::move(v).value() : std::vector<float>{};
  }

  float ForwardBackward() {
    float loss = 0.0f;
    model_->ZeroGrad();
    EXPECT_TRUE(model_->Forward(tokens_.data(), mask_.data(), targets_.data(), B_, T_, &loss).ok());
    return loss;
  }

  LlamaConfig config_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<SafetensorsFile> expected_;
  int64_t B_ = 0, T_ = 0;
  std::vector<int32_t> tokens_, targets_;
  std::vector<uint8_t> mask_;
};

TEST_P(OracleTest, LogitsLossAndEveryGradientMatchTorch) {
  const float loss = ForwardBackward();
  const std::vector<float> logits = Expected("logits");
  ASSERT_EQ(static_cast<int64_t>(logits.size()), B_ * T_ * config_.vocab_size);
  EXPECT_LT(NormRelativeError(model_->Logits(), logits), 1e-4);
  const std::vector<float> expected_loss = Expected("loss");
  EXPECT_NEAR(loss, expected_loss[0], 1e-4 * std::abs(expected_loss[0]));

  ASSERT_TRUE(model_->Backward().ok());
  const TensorTable& table = model_->grads().table();
  for (size_t i = 0; i < table.size(); ++i) {
    const std::vector<float> g = Expected("grad." + table[i].name);
    ASSERT_EQ(static_cast<int64_t>(g.size()), table[i].numel) << table[i].name;
    EXPECT_LT(NormRelativeError(model_->grads().tensor(i), g), 1e-4) << table[i].name;
  }
}

TEST_P(OracleTest, ThreeAdamWStepsMatchTorch) {
  OptimizerOptions options;
  options.type = "adamw";
  options.beta1 = 0.9;
  options.beta2 = 0.999;
  options.eps = 1e-8;
  options.weight_decay = 0.01;
  auto optimizer = CreateOptimizer(options, model_->params().table_ptr());
  ASSERT_TRUE(optimizer.ok()) << optimizer.status().ToString();
  for (int step = 0; step < 3; ++step) {
    ForwardBackward();
    ASSERT_TRUE(model_->Backward().ok());
    (*optimizer)->Step(model_->params(), model_->grads(), 1e-3);
  }
  const TensorTable& table = model_->params().table();
  for (size_t i = 0; i < table.size(); ++i) {
    const std::vector<float> w = Expected("adamw." + table[i].name);
    ASSERT_EQ(static_cast<int64_t>(w.size()), table[i].numel) << table[i].name;
    EXPECT_LT(NormRelativeError(model_->params().tensor(i), w), 1e-4) << table[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OracleTest, ::testing::Values("qwen2_bias_untied", "llama3_rope_tied"));

TEST(OracleFixtureTest, VariantsCoverBiasTyingAndLlama3Scaling) {
  auto qwen = ReadLlamaConfig(kFixtures + "qwen2_bias_untied/config.json");
  auto llama = ReadLlamaConfig(kFixtures + "llama3_rope_tied/config.json");
  ASSERT_TRUE(qwen.ok()) << qwen.status().ToString();
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_TRUE(qwen->attention_bias);
  EXPECT_FALSE(qwen->tie_word_embeddings);
  EXPECT_TRUE(llama->tie_word_embeddings);
  EXPECT_EQ(llama->rope_scaling.type, "llama3");
  EXPECT_LT(llama->num_key_value_heads, llama->num_attention_heads);
}

}  // namespace
}  // namespace tributary
