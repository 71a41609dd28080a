#include "engine/arena.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "engine/model/llama_config.h"

namespace tributary {
namespace {

TEST(TensorTableTest, OffsetsAreAlignedAndOrdered) {
  TensorTable t;
  t.Add("a", {3, 5});
  t.Add("b", {7});
  t.Add("c", {16});
  EXPECT_EQ(t[0].offset, 0);
  EXPECT_EQ(t[0].numel, 15);
  EXPECT_EQ(t[1].offset, 16);
  EXPECT_EQ(t[2].offset, 32);
  EXPECT_EQ(t.total_elems(), 48);
  EXPECT_EQ(t.param_count(), 15 + 7 + 16);
  ASSERT_NE(t.Find("b"), nullptr);
  EXPECT_EQ(t.Find("b")->numel, 7);
  EXPECT_EQ(t.Find("zz"), nullptr);
}

TEST(ArenaTest, ZeroInitialisedAlignedAndNamed) {
  auto t = std::make_shared<TensorTable>();
  t->Add("w", {4, 4});
  t->Add("b", {3});
  Arena a(t);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  for (int64_t i = 0; i < a.size(); ++i) EXPECT_EQ(a.data()[i], 0.0f);
  a.tensor("b")[2] = 5.0f;
  EXPECT_EQ(a.data()[16 + 2], 5.0f);
  EXPECT_EQ(a.tensor("missing"), nullptr);
  Arena copy(t);
  copy.CopyFrom(a);
  EXPECT_EQ(copy.tensor(1)[2], 5.0f);
  a.Zero();
  EXPECT_EQ(a.tensor(1)[2], 0.0f);
}

TEST(LlamaConfigTest, TableMatchesHfNamesAndCounts) {
  LlamaConfig c;  // defaults: vocab 256, hidden 64, 2 layers, 4 heads, 2 kv heads, intermediate 172
  ASSERT_TRUE(c.Validate().ok());
  auto untied = BuildLlamaTensorTable(c);
  EXPECT_EQ(untied->size(), 1u + 9u * 2u + 1u + 1u);
  ASSERT_NE(untied->Find("model.layers.1.self_attn.k_proj.weight"), nullptr);
  EXPECT_EQ(untied->Find("model.layers.1.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{32, 64}));
  const int64_t per_layer = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 172 + 2 * 64;
  EXPECT_EQ(untied->param_count(), 2 * 256 * 64 + 2 * per_layer + 64);
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  auto tied = BuildLlamaTensorTable(c);
  EXPECT_EQ(tied->Find("lm_head.weight"), nullptr);
  ASSERT_NE(tied->Find("model.layers.0.self_attn.q_proj.bias"), nullptr);
}

TEST(LlamaConfigTest, ValidateNamesTheField) {
  LlamaConfig c;
  c.num_key_value_heads = 3;
  Status s = c.Validate();
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("num_key_value_heads"), std::string::npos);
}

}  // namespace
}  // namespace tributary
