// Blocking rule on real LLaMA parameter lists and K_l allocation (docs/ferret.md, "Blocking", "Allocation").
#include "peft/blocking.h"
#include "tests/common/tensor_list.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/llama_config.h"
#include "peft/allocation.h"

namespace tributary {
namespace {

// The fixture's table (fails the test when it cannot be read).
std::shared_ptr<TensorTable> LoadParamList(const std::string& path) {
  auto table = testutil::ReadTensorList(path);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return table.ok() ? *table : std::make_shared<TensorTable>();
}

// Sorted, non-overlapping ranges with touching neighbours merged.
std::vector<std::pair<int64_t, int64_t>> MergeRanges(std::vector<std::pair<int64_t, int64_t>> r) {
  std::sort(r.begin(), r.end());
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& [begin, end] : r) {
    if (begin == end) continue;
    if (!out.empty() && out.back().second == begin) {
      out.back().second = end;
    } else {
      out.push_back({begin, end});
    }
  }
  return out;
}

// Every parameter element belongs to exactly one block; padding to none.
void ExpectExactCover(const TensorTable& table, const std::vector<Block>& blocks) {
  std::vector<std::pair<int64_t, int64_t>> segments, params;
  int64_t total = 0;
  for (const Block& b : blocks) {
    for (const BlockSegment& s : b.segments) segments.push_back({s.offset, s.offset + s.numel});
    total += b.numel;
  }
  for (const auto& e : table.entries()) params.push_back({e.offset, e.offset + e.numel});
  EXPECT_EQ(total, table.param_count());  // with equal unions below: no element counted twice
  std::sort(segments.begin(), segments.end());
  for (size_t i = 1; i < segments.size(); ++i) EXPECT_LE(segments[i - 1].second, segments[i].first) << "overlap";
  EXPECT_EQ(MergeRanges(segments), MergeRanges(params));
  EXPECT_TRUE(ValidateBlocks(blocks, table.total_elems()).ok());
}

TEST(BlockingTest, FixtureMatchesTheLlamaTable) {
  // The fixture's names and shapes are the engine's LLaMA layout for DataJuicer-1.3B.
  const auto fixture = LoadParamList("tests/peft/fixtures/datajuicer_1_3b_params.txt");
  LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5504;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  const auto engine = BuildLlamaTensorTable(c);
  ASSERT_EQ(fixture->size(), engine->size());
  for (size_t i = 0; i < fixture->size(); ++i) {
    EXPECT_EQ((*fixture)[i].name, (*engine)[i].name);
    EXPECT_EQ((*fixture)[i].shape, (*engine)[i].shape);
  }
  EXPECT_EQ(fixture->param_count(), 1'345'423'360);
}

TEST(BlockingTest, ReferenceRuleGives194BlocksOnDataJuicer13B) {
  const auto table = LoadParamList("tests/peft/fixtures/datajuicer_1_3b_params.txt");
  const std::vector<Block> blocks = GroupByReferenceRule(*table);
  EXPECT_EQ(blocks.size(), 194u);
  ExpectExactCover(*table, blocks);
  // Large matrices stand alone; each layer's two norms form one block; the final norm joins the last.
  EXPECT_EQ(blocks.front().first_tensor, "model.embed_tokens.weight");
  EXPECT_EQ(blocks.front().segments.size(), 1u);
  EXPECT_EQ(blocks.back().first_tensor, "lm_head.weight");
  const Block& last_norms = blocks[blocks.size() - 2];
  EXPECT_EQ(last_norms.first_tensor, "model.layers.23.input_layernorm.weight");
  EXPECT_EQ(last_norms.last_tensor, "model.norm.weight");
  EXPECT_EQ(last_norms.numel, 3 * 2048);
  EXPECT_EQ(last_norms.segments.size(), 3u);
  EXPECT_EQ(blocks[8].first_tensor, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(blocks[8].last_tensor, "model.layers.0.post_attention_layernorm.weight");
  for (size_t l = 0; l < blocks.size(); ++l) EXPECT_EQ(blocks[l].id, l);
}

TEST(BlockingTest, ReferenceRuleGives210BlocksOnOpenLlama3B) {
  const auto table = LoadParamList("tests/peft/fixtures/open_llama_3b_params.txt");
  const std::vector<Block> blocks = GroupByReferenceRule(*table);
  EXPECT_EQ(blocks.size(), 210u);
  ExpectExactCover(*table, blocks);
}

TEST(BlockingTest, SmallTensorsMergeUpToTheTarget) {
  TensorTable table;
  // 12 sizes, numpy median = (30 + 50) / 2 = 40 -> target int(36.0) = 36:
  // [10 + 20] [30] [100] [50] [100] [5 + 7 + 9] [100] [100] [100]
  for (int64_t n : {10, 20, 30, 100, 50, 100, 5, 7, 9, 100, 100, 100})
    table.Add("t" + std::to_string(table.size()), {n});
  const std::vector<Block> blocks = GroupByReferenceRule(table);
  std::vector<int64_t> sizes;
  for (const auto& b : blocks) sizes.push_back(b.numel);
  EXPECT_EQ(sizes, (std::vector<int64_t>{30, 30, 100, 50, 100, 21, 100, 100, 100}));
  ExpectExactCover(table, blocks);
}

TEST(BlockingTest, FixedChunksCoverAllParametersAndSkipPadding) {
  TensorTable table;
  for (int64_t n : {33, 1, 100, 17, 64}) table.Add("t" + std::to_string(table.size()), {n});
  auto blocks = SplitFixedChunks(table, 40);
  ASSERT_TRUE(blocks.ok());
  std::vector<int64_t> sizes;
  for (const auto& b : *blocks) sizes.push_back(b.numel);
  EXPECT_EQ(sizes, (std::vector<int64_t>{40, 40, 40, 40, 40, 15}));
  ExpectExactCover(table, *blocks);
  EXPECT_EQ((*blocks)[0].segments.size(), 3u);  // 33 of t0, 1 of t1, 6 of t2
  EXPECT_FALSE(SplitFixedChunks(table, 0).ok());
}

TEST(BlockingTest, TilesWalkSegmentsInOrder) {
  TensorTable table;
  for (int64_t n : {1500, 3, 2000}) table.Add("t" + std::to_string(table.size()), {n});
  auto blocks = SplitFixedChunks(table, 10000);
  ASSERT_TRUE(blocks.ok());
  const Block& b = (*blocks)[0];
  int64_t expect_i = 700;
  ForEachTile(b, 700, 3400, [&](int64_t i, int64_t offset, int64_t n) {
    EXPECT_EQ(i, expect_i);
    EXPECT_LE(n, kBlockTileElems);
    EXPECT_EQ(i / kBlockTileElems, (i + n - 1) / kBlockTileElems);
    // The arena offset of block element i.
    int64_t rest = i;
    for (const auto& s : b.segments) {
      if (rest < s.numel) {
        EXPECT_EQ(offset, s.offset + rest);
        EXPECT_LE(rest + n, s.numel);
        break;
      }
      rest -= s.numel;
    }
    expect_i += n;
  });
  EXPECT_EQ(expect_i, 3400);
}

TEST(BlockingTest, ValidateBlocksNamesTheProblem) {
  TensorTable table;
  table.Add("w", {100});
  std::vector<Block> blocks = GroupByReferenceRule(table);
  ASSERT_TRUE(ValidateBlocks(blocks, table.total_elems()).ok());
  blocks[0].segments[0].numel = 1000;
  blocks[0].numel = 1000;
  const Status s = ValidateBlocks(blocks, table.total_elems());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("block 0"), std::string::npos) << s.message();
}

TEST(AllocationTest, NormRatioFollowsTheFormulaAndTheLargestGetsK) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0.0, 3.0);
  for (int trial = 0; trial < 20; ++trial) {
    const int K = 50 + static_cast<int>(rng() % 300);
    std::vector<double> norms(194);
    std::vector<int64_t> numels(194, 1000);
    for (double& n : norms) n = u(rng) * u(rng);
    auto k_l = AllocateCoefficients(Allocation::kNormRatio, K, norms, numels);
    ASSERT_TRUE(k_l.ok());
    const double n_max = *std::max_element(norms.begin(), norms.end());
    for (size_t l = 0; l < norms.size(); ++l) {
      // The Ferret authors' evaluation order: floor(n_l / n_max * K).
      const int expect = std::max(static_cast<int>(std::floor(norms[l] / n_max * K)), 2);
      EXPECT_EQ((*k_l)[l], expect) << l;
      EXPECT_LE((*k_l)[l], K);
      if (norms[l] == n_max) {
        EXPECT_EQ((*k_l)[l], K);
      }
    }
  }
}

TEST(AllocationTest, ScoresAndEdgeCases) {
  const std::vector<double> norms = {1.0, 2.0, 0.5, 0.0};
  const std::vector<int64_t> numels = {400, 100, 1600, 10};
  EXPECT_EQ(*AllocateCoefficients(Allocation::kNormRatio, 100, norms, numels), (std::vector<int>{50, 100, 25, 2}));
  // sqrt(d) * norm: 20, 20, 20, 0.
  EXPECT_EQ(*AllocateCoefficients(Allocation::kSqrtDNorm, 100, norms, numels), (std::vector<int>{100, 100, 100, 2}));
  EXPECT_EQ(*AllocateCoefficients(Allocation::kUniform, 100, norms, numels), (std::vector<int>{100, 100, 100, 100}));
  // An all-zero update: the 1e-8 floor gives every block the minimum.
  EXPECT_EQ(*AllocateCoefficients(Allocation::kNormRatio, 100, {0.0, 0.0}, {5, 5}), (std::vector<int>{2, 2}));
  // A non-finite update aborts the client's round.
  const auto nan = AllocateCoefficients(Allocation::kNormRatio, 100, {1.0, std::nan("")}, {5, 5});
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("block 1"), std::string::npos);
  EXPECT_FALSE(AllocateCoefficients(Allocation::kNormRatio, 1, {1.0}, {5}).ok());
  EXPECT_FALSE(AllocateCoefficients(Allocation::kNormRatio, 70000, {1.0}, {5}).ok());
}

}  // namespace
}  // namespace tributary
