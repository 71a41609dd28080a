// Model merging: each method against values worked out by hand on models whose tensors are filled
// with known patterns, LoRA adapters merged in as BASE+ADAPTER, and one-line errors.
#include "peft/merge.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "base/file_util.h"
#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "peft/lora.h"
#include "tests/common/temp_dir.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

using testutil::TempDir;

// A model directory whose every tensor element j is value(j).
std::string WriteModel(const TempDir& dir, const std::string& name, const std::function<float(int64_t)>& value,
                       SafetensorsDType dtype = SafetensorsDType::kF32) {
  const LlamaConfig c = testutil::MicroLlama(ByteTokenizer::kVocabSize);
  Arena params(BuildLlamaTensorTable(c));
  for (size_t t = 0; t < params.table().size(); ++t)
    for (int64_t j = 0; j < params.table()[t].numel; ++j) params.tensor(t)[j] = value(j);
  const std::string path = dir.path() + "/" + name;
  ByteTokenizer tokenizer;
  SaveModelOptions options;
  options.tokenizer = &tokenizer;
  options.dtype = dtype;
  EXPECT_TRUE(SaveModelDir(path, c, params, options).ok());
  return path;
}

LoadedModel Merge(const TempDir& dir, const std::string& yaml) {
  auto config = ParseMergeConfig(yaml, "merge.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  const std::string out = dir.path() + "/out";
  Status merged = MergeModels(*config, out);
  EXPECT_TRUE(merged.ok()) << merged.ToString();
  auto loaded = LoadModelDir(out);
  EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
  return std::move(*loaded);
}

// Every tensor element j of `m` equals expected(j).
void ExpectEvery(const LoadedModel& m, const std::function<double(int64_t)>& expected, double tolerance = 1e-6) {
  for (size_t t = 0; t < m.params.table().size(); ++t)
    for (int64_t j = 0; j < m.params.table()[t].numel; ++j)
      ASSERT_NEAR(m.params.tensor(t)[j], expected(j), tolerance) << m.params.table()[t].name << "[" << j << "]";
}

TEST(MergeTest, LinearAndTaskArithmetic) {
  TempDir dir;
  const std::string base = WriteModel(dir, "base", [](int64_t j) { return 0.01f * (j % 7); });
  const std::string a = WriteModel(dir, "a", [](int64_t j) { return 0.01f * (j % 7) + 0.5f; });
  const std::string b = WriteModel(dir, "b", [](int64_t j) { return 0.01f * (j % 7) - 0.25f * (j % 2); });
  LoadedModel linear =
      Merge(dir, "merge_method: linear\nmodels:\n  - model: " + a + "\n    parameters: {weight: 3}\n  - model: " + b +
                     "\n    parameters: {weight: 1}\n");
  ExpectEvery(linear, [](int64_t j) { return 0.01 * (j % 7) + (3 * 0.5 - 0.25 * (j % 2)) / 4; });
  LoadedModel task =
      Merge(dir, "merge_method: task_arithmetic\nbase_model: " + base + "\nmodels:\n  - model: " + a +
                     "\n    parameters: {weight: 0.5}\n  - model: " + b + "\n    parameters: {weight: 2}\n");
  ExpectEvery(task, [](int64_t j) { return 0.01 * (j % 7) + 0.5 * 0.5 + 2 * (-0.25 * (j % 2)); });
  EXPECT_TRUE(ReadFileToString(dir.path() + "/out/tokenizer.json").ok()) << "the base's tokenizer travels";
}

// TIES: A's deltas are +1 (even j) and -2 (odd j), B's +3 and +1. Signs: even +, odd - (sum -1).
TEST(MergeTest, TiesTrimsElectsASignAndAveragesTheAgreeingDeltas) {
  TempDir dir;
  const std::string base = WriteModel(dir, "base", [](int64_t) { return 0.0f; });
  const std::string a = WriteModel(dir, "a", [](int64_t j) { return j % 2 == 0 ? 1.0f : -2.0f; });
  const std::string b = WriteModel(dir, "b", [](int64_t j) { return j % 2 == 0 ? 3.0f : 1.0f; });
  const std::string head = "merge_method: ties\nbase_model: " + base + "\nmodels:\n  - model: " + a;
  LoadedModel full = Merge(dir, head + "\n  - model: " + b + "\n");
  ExpectEvery(full, [](int64_t j) { return j % 2 == 0 ? (1 + 3) / 2.0 : -2.0; });
  // density 0.5 keeps A's larger half: its -2s; even elements then come from B alone.
  LoadedModel trimmed = Merge(dir, head + "\n    parameters: {density: 0.5}\n  - model: " + b + "\n");
  for (size_t t = 0; t < trimmed.params.table().size(); ++t) {
    const int64_t n = trimmed.params.table()[t].numel;
    if (n % 2 != 0) continue;  // an exact half of the elements is only the odd ones when n is even
    for (int64_t j = 0; j < n; ++j)
      ASSERT_EQ(trimmed.params.tensor(t)[j], j % 2 == 0 ? 3.0f : -2.0f) << trimmed.params.table()[t].name << j;
  }
}

// DARE: each delta element survives with probability density, rescaled by 1 / density, so the kept
// share is near density and the merged mean delta near the task-arithmetic one; the seed fixes the drops.
TEST(MergeTest, DareDropsAndRescalesReproduciblyBySeed) {
  TempDir dir;
  const std::string base = WriteModel(dir, "base", [](int64_t) { return 0.0f; });
  const std::string a = WriteModel(dir, "a", [](int64_t) { return 1.0f; });
  auto merge = [&](const std::string& method, uint64_t seed) {
    return Merge(dir, "merge_method: " + method + "\nbase_model: " + base + "\nseed: " + std::to_string(seed) +
                          "\nmodels:\n  - model: " + a + "\n    parameters: {weight: 1, density: 0.25}\n");
  };
  const LoadedModel first = merge("dare_linear", 7);
  int64_t kept = 0, total = 0;
  for (int64_t i = 0; i < first.params.size(); ++i) {
    const float v = first.params.data()[i];
    if (v == 0) {
      ++total;
      continue;
    }
    ASSERT_FLOAT_EQ(v, 4.0f) << i;  // 1 / density
    ++kept, ++total;
  }
  EXPECT_NEAR(static_cast<double>(kept) / total, 0.25, 0.02) << total;
  const LoadedModel again = merge("dare_linear", 7);
  const LoadedModel other = merge("dare_linear", 8);
  EXPECT_EQ(std::memcmp(first.params.data(), again.params.data(), first.params.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(first.params.data(), other.params.data(), first.params.size() * sizeof(float)), 0);
  // dare_ties with one model: the same drops, and each survivor's sign wins (normalized by its weight).
  const LoadedModel ties = merge("dare_ties", 7);
  EXPECT_EQ(std::memcmp(first.params.data(), ties.params.data(), first.params.size() * sizeof(float)), 0);
}

TEST(MergeTest, SlerpFollowsTheArcAndFallsBackToLerpWhenColinear) {
  TempDir dir;
  const std::string e1 = WriteModel(dir, "e1", [](int64_t j) { return j == 0 ? 2.0f : 0.0f; });
  const std::string e2 = WriteModel(dir, "e2", [](int64_t j) { return j == 1 ? 2.0f : 0.0f; });
  const std::string e1x3 = WriteModel(dir, "e1x3", [](int64_t j) { return j == 0 ? 6.0f : 0.0f; });
  auto slerp = [&](const std::string& other, double t) {
    return Merge(dir, "merge_method: slerp\nbase_model: " + e1 + "\nmodels:\n  - model: " + other +
                          "\nparameters: {t: " + std::to_string(t) + "}\n");
  };
  const double s = std::sin(M_PI / 4);  // quarter turn at t = 0.5, both norms 2
  ExpectEvery(slerp(e2, 0.5), [s](int64_t j) { return j == 0 ? 2 * s : (j == 1 ? 2 * s : 0.0); });
  ExpectEvery(slerp(e2, 0.0), [](int64_t j) { return j == 0 ? 2.0 : 0.0; });
  ExpectEvery(slerp(e1x3, 0.25), [](int64_t j) { return j == 0 ? 0.75 * 2 + 0.25 * 6 : 0.0; });
}

TEST(MergeTest, LoraAdapterMergesIntoItsBase) {
  TempDir dir;
  const std::string base = WriteModel(dir, "base", [](int64_t j) { return 0.001f * (j % 11); });
  const LlamaConfig c = testutil::MicroLlama(ByteTokenizer::kVocabSize);
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  auto adapters = LoraAdapters::Create(c, lora);
  ASSERT_TRUE(adapters.ok());
  for (int64_t i = 0; i < (*adapters)->params().size(); ++i) (*adapters)->params().data()[i] = 0.01f * (i % 5);
  ASSERT_TRUE((*adapters)->Save(dir.path() + "/adapter", base).ok());
  auto expected = LoadModelDir(base);
  ASSERT_TRUE(expected.ok());
  (*adapters)->MergeInto(expected->params);
  LoadedModel merged =
      Merge(dir, "merge_method: linear\nmodels:\n  - model: " + base + "+" + dir.path() + "/adapter\n");
  for (int64_t i = 0; i < merged.params.size(); ++i)
    ASSERT_FLOAT_EQ(merged.params.data()[i], expected->params.data()[i]) << i;
}

TEST(MergeTest, KeepsTheInputDtypeAndRefusesBadConfigsInOneLine) {
  TempDir dir;
  const std::string a = WriteModel(
      dir, "a", [](int64_t) { return 1.0f; }, SafetensorsDType::kBF16);
  LoadedModel out = Merge(dir, "merge_method: linear\nmodels:\n  - model: " + a + "\n");
  EXPECT_EQ(out.stored_dtype, SafetensorsDType::kBF16);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"merge_method: soup\nmodels: [{model: x}]\n", "key 'merge_method': 'soup' is not one of"},
      {"merge_method: linear\nmodels: [{model: x, weight: 2}]\n", "key 'models[0].weight': unknown key"},
      {"merge_method: ties\nmodels: [{model: x}]\n", "key 'base_model': this merge_method needs one"},
      {"merge_method: slerp\nbase_model: b\nmodels: [{model: x}, {model: y}]\n",
       "key 'models': slerp interpolates base_model and exactly one model, got 2"},
      {"merge_method: ties\nbase_model: b\nmodels: [{model: x, parameters: {density: 0}}]\n",
       "key 'models[0].parameters.density': must be in (0, 1]"},
      {"merge_method: linear\nmodels: []\n", "key 'models': expected a non-empty list"},
      {"merge_method: linear\nmodels: [{model: x}]\ndtype: int8\n", "key 'dtype': 'int8' is not one of"},
  };
  for (const auto& [yaml, expect] : bad) {
    auto r = ParseMergeConfig(yaml, "merge.yaml");
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_NE(r.status().message().find("merge.yaml: " + expect), std::string::npos) << r.status().ToString();
  }

  // Models of different shapes: both named, and the tensor.
  const LlamaConfig wide = testutil::MicroLlama(ByteTokenizer::kVocabSize + 1);
  Arena params(BuildLlamaTensorTable(wide));
  ASSERT_TRUE(SaveModelDir(dir.path() + "/wide", wide, params).ok());
  auto config = ParseMergeConfig(
      "merge_method: linear\nmodels:\n  - model: " + a + "\n  - model: " + dir.path() + "/wide\n", "m");
  ASSERT_TRUE(config.ok());
  Status mismatch = MergeModels(*config, dir.path() + "/never");
  EXPECT_TRUE(mismatch.IsInvalidArgument());
  EXPECT_NE(mismatch.message().find(a), std::string::npos) << mismatch.ToString();
  EXPECT_NE(mismatch.message().find(dir.path() + "/wide"), std::string::npos) << mismatch.ToString();
}

}  // namespace
}  // namespace tributary
