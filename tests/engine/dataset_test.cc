#include "engine/text/dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace tributary {
namespace {

namespace fs = std::filesystem;

// Byte tokenizer ids of a string (byte b -> 3 + b).
std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> ids;
  for (unsigned char c : s) ids.push_back(3 + c);
  return ids;
}

TEST(DatasetTest, ParsesAlpacaAndDollyWithAutoDetect) {
  const std::string alpaca = R"({"instruction": "Add", "input": "1 2", "output": "3"})"
                             "\n\n"
                             R"({"instruction": "Greet", "output": "hi"})"
                             "\n";
  auto a = ParseExamples(alpaca, "a.jsonl", DatasetFormat::kAuto);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].instruction, "Add");
  EXPECT_EQ((*a)[0].input, "1 2");
  EXPECT_EQ((*a)[0].output, "3");
  EXPECT_EQ((*a)[1].input, "");
  EXPECT_EQ((*a)[1].source, "a.jsonl:3");  // the blank line still counts

  const std::string dolly =
      R"({"instruction": "Sum up", "context": "Long text", "response": "Short", "category": "summarization"})"
      "\n"
      R"({"instruction": "Q", "context": "", "response": "A", "category": "open_qa"})";
  auto d = ParseExamples(dolly, "d.jsonl", DatasetFormat::kAuto);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ((*d)[0].input, "Long text");
  EXPECT_EQ((*d)[0].output, "Short");
  EXPECT_EQ((*d)[0].category, "summarization");
  EXPECT_FALSE((*d)[0].is_text);

  // A JSON array (the original alpaca_data.json layout).
  auto arr = ParseExamples(R"([{"instruction": "x", "input": "", "output": "y"}])", "a.json", DatasetFormat::kAuto);
  ASSERT_TRUE(arr.ok()) << arr.status().ToString();
  EXPECT_EQ((*arr)[0].output, "y");
}

TEST(DatasetTest, ParsesPlainText) {
  auto lines = ParseExamples("first doc\n\nsecond doc\r\n", "t.txt", DatasetFormat::kAuto);
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_TRUE((*lines)[0].is_text);
  EXPECT_EQ((*lines)[1].text, "second doc");
  EXPECT_EQ((*lines)[1].source, "t.txt:3");
  auto whole = ParseExamples("a\nb\n", "t.txt", DatasetFormat::kTextWhole);
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->size(), 1u);
  EXPECT_EQ((*whole)[0].text, "a\nb\n");
  // Forcing text on a JSONL file keeps the JSON as text.
  auto forced = ParseExamples(R"({"instruction": "a", "output": "b"})", "x.jsonl", DatasetFormat::kTextLines);
  ASSERT_TRUE(forced.ok());
  EXPECT_TRUE((*forced)[0].is_text);
}

TEST(DatasetTest, ErrorsNameFileAndLine) {
  struct Case {
    std::string contents;
    DatasetFormat format;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\"}\n", DatasetFormat::kAuto,
       "data.jsonl:2: missing field 'output'"},
      {"{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"c\", \"out", DatasetFormat::kAuto,
       "data.jsonl:3: invalid JSON: "},
      {"{\"instruction\": 5, \"output\": \"b\"}\n", DatasetFormat::kAlpaca,
       "data.jsonl:1: field 'instruction' is not a string"},
      {"{\"instruction\": \"a\", \"context\": \"b\"}\n", DatasetFormat::kDolly,
       "data.jsonl:1: missing field 'response'"},
      {"{\"question\": \"a\"}\n", DatasetFormat::kAuto, "data.jsonl:1: cannot detect the dataset format"},
      {"[1, 2]", DatasetFormat::kAuto, "data.jsonl: record 0: cannot detect"},
      {"[1, 2]", DatasetFormat::kAlpaca, "data.jsonl: record 0: expected a JSON object"},
  };
  for (const auto& c : cases) {
    auto r = ParseExamples(c.contents, "data.jsonl", c.format);
    ASSERT_FALSE(r.ok()) << c.contents;
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_EQ(r.status().message().rfind(c.expect, 0), 0u) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  }
  EXPECT_TRUE(LoadExamples("/nonexistent/data.jsonl").status().IsNotFound());
  EXPECT_TRUE(ParseDatasetFormat("csv").status().IsInvalidArgument());
  EXPECT_EQ(*ParseDatasetFormat("dolly"), DatasetFormat::kDolly);
}

TEST(DatasetTest, LoadsFromFile) {
  const fs::path path = fs::temp_directory_path() / ("trib_ds_" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(path);
    out << R"({"instruction": "i", "context": "c", "response": "r", "category": "brainstorming"})"
        << "\n";
  }
  auto r = LoadExamples(path.string());
  fs::remove(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].category, "brainstorming");
  EXPECT_EQ((*r)[0].source, path.string() + ":1");
}

TEST(DatasetTest, PromptTemplate) {
  Example ex;
  ex.instruction = "Add {input}";  // placeholders inside values are not expanded again
  ex.input = "1 2";
  PromptTemplate t;
  EXPECT_EQ(FormatPrompt(t, ex), "### Instruction:\nAdd {input}\n\n### Input:\n1 2\n\n### Response:\n");
  ex.input = "";
  EXPECT_EQ(FormatPrompt(t, ex), "### Instruction:\nAdd {input}\n\n### Response:\n");
  t.without_input = "Q: {instruction} A:";
  EXPECT_EQ(FormatPrompt(t, ex), "Q: Add {input} A:");
}

TEST(DatasetTest, TokenizationMasksOnlyResponse) {
  ByteTokenizer tok;
  Example ex;
  ex.instruction = "x";
  ex.output = "ok";
  TokenizeOptions opt;
  opt.prompt_template.without_input = "Q{instruction}:";
  Example text;
  text.is_text = true;
  text.text = "ab";
  auto r = TokenizeExamples({ex, text}, tok, opt);
  ASSERT_TRUE(r.ok());
  // [bos] "Qx:" "ok" [eos]
  std::vector<int32_t> expected = {1};
  for (int32_t id : Bytes("Qx:ok")) expected.push_back(id);
  expected.push_back(2);
  EXPECT_EQ((*r)[0].tokens, expected);
  EXPECT_EQ((*r)[0].loss_mask, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1, 1}));
  // Plain text: everything but the BOS is a target.
  EXPECT_EQ((*r)[1].tokens, (std::vector<int32_t>{1, 3 + 'a', 3 + 'b', 2}));
  EXPECT_EQ((*r)[1].loss_mask, (std::vector<uint8_t>{0, 1, 1, 1}));
  opt.add_bos = false;
  opt.add_eos = false;
  r = TokenizeExamples({text}, tok, opt);
  EXPECT_EQ((*r)[0].tokens, (std::vector<int32_t>{3 + 'a', 3 + 'b'}));
}

TokenizedExample Seq(int32_t start, int n, uint8_t mask) {
  TokenizedExample t;
  for (int i = 0; i < n; ++i) {
    t.tokens.push_back(start + i);
    t.loss_mask.push_back(mask);
  }
  return t;
}

TEST(DatasetTest, RowsTruncateOrPack) {
  const std::vector<TokenizedExample> ex = {Seq(10, 3, 1), Seq(20, 2, 0), Seq(30, 7, 1), Seq(40, 1, 1)};
  // T = 4: rows hold 5 tokens.
  auto rows = BuildRows(ex, 4, false, 0);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].tokens, (std::vector<int32_t>{10, 11, 12, 0, 0}));
  EXPECT_EQ(rows[0].loss_mask, (std::vector<uint8_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(rows[2].tokens, (std::vector<int32_t>{30, 31, 32, 33, 34}));  // truncated
  rows = BuildRows(ex, 4, true, 0);
  // [10 11 12 20 21] [30..34 truncated] [40 pad...]
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].tokens, (std::vector<int32_t>{10, 11, 12, 20, 21}));
  EXPECT_EQ(rows[0].loss_mask, (std::vector<uint8_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(rows[1].tokens, (std::vector<int32_t>{30, 31, 32, 33, 34}));
  EXPECT_EQ(rows[2].tokens, (std::vector<int32_t>{40, 0, 0, 0, 0}));
}

TEST(DatasetTest, BatchesShiftTargetsAndMask) {
  const std::vector<TokenizedExample> ex = {Seq(10, 3, 1), Seq(20, 5, 0)};
  auto rows = BuildRows(ex, 4, false, 7);
  Batch b = MakeBatch(rows, 1, 3);  // rows 1, 0, 1 (wraps)
  EXPECT_EQ(b.batch_size, 3);
  EXPECT_EQ(b.seq_len, 4);
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{20, 21, 22, 23, 10, 11, 12, 7, 20, 21, 22, 23}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{21, 22, 23, 24, 11, 12, 7, 7, 21, 22, 23, 24}));
  EXPECT_EQ(b.loss_mask, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.NumTargets(), 2);
}

TEST(DatasetTest, ShuffleIsAFixedPermutation) {
  auto a = ShuffledIndices(10, 1), b = ShuffledIndices(10, 1), c = ShuffledIndices(10, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<size_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
  // Fisher-Yates over mt19937_64 (standard-fixed output) with rejection sampling, computed by hand from
  // the generator: the permutation depends only on the seed. Pin seed 0 for 5 elements.
  std::mt19937_64 rng(0);
  std::vector<size_t> manual = {0, 1, 2, 3, 4};
  for (size_t i = 5; i > 1; --i) std::swap(manual[i - 1], manual[rng() % i]);  // no rejection hits for small i
  EXPECT_EQ(ShuffledIndices(5, 0), manual);
  // Rough uniformity: each of 3 positions takes each value about 1/3 of the time.
  int counts[3][3] = {};
  for (uint64_t s = 0; s < 3000; ++s) {
    auto p = ShuffledIndices(3, s);
    for (int k = 0; k < 3; ++k) ++counts[k][p[static_cast<size_t>(k)]];
  }
  for (auto& row : counts) {
    for (int n : row) EXPECT_NEAR(n, 1000, 120);
  }
}

std::vector<Example> Numbered(int n, int categories) {
  std::vector<Example> ex(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    ex[static_cast<size_t>(i)].instruction = std::to_string(i);
    ex[static_cast<size_t>(i)].category = "cat" + std::to_string(i % categories);
  }
  return ex;
}

TEST(DatasetTest, TrainHeldOutSplit) {
  auto ex = Numbered(20, 1);
  auto s = SplitTrainHeldOut(ex, 0.25, 3);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->held_out.size(), 5u);
  EXPECT_EQ(s->train.size(), 15u);
  std::set<std::string> all;
  for (const auto& e : s->train) all.insert(e.instruction);
  for (const auto& e : s->held_out) all.insert(e.instruction);
  EXPECT_EQ(all.size(), 20u);
  auto again = SplitTrainHeldOut(ex, 0.25, 3);
  EXPECT_EQ(again->held_out[0].instruction, s->held_out[0].instruction);
  EXPECT_FALSE(SplitTrainHeldOut(ex, 1.5, 3).ok());
}

TEST(DatasetTest, NonIIDSplits) {
  auto ex = Numbered(400, 4);
  NonIIDOptions contiguous;
  contiguous.mode = NonIIDMode::kContiguous;
  auto c = SplitNonIID(ex, 3, contiguous);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].size(), 133u);
  EXPECT_EQ((*c)[2].back().instruction, "399");
  EXPECT_EQ((*c)[1].front().instruction, "133");

  NonIIDOptions dir;
  dir.alpha = 0.1;
  dir.seed = 9;
  dir.min_per_client = 5;
  auto d = SplitNonIID(ex, 8, dir);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::set<std::string> seen;
  size_t total = 0;
  int skewed_clients = 0;
  for (const auto& client : *d) {
    EXPECT_GE(client.size(), 5u);
    total += client.size();
    std::map<std::string, int> per_cat;
    for (const auto& e : client) {
      seen.insert(e.instruction);
      ++per_cat[e.category];
    }
    int top = 0;
    for (const auto& [cat, n] : per_cat) top = std::max(top, n);
    if (top > 0.6 * static_cast<double>(client.size())) ++skewed_clients;
  }
  EXPECT_EQ(total, 400u);
  EXPECT_EQ(seen.size(), 400u);
  // alpha = 0.1 concentrates most clients on one category (IID would give ~25% each).
  EXPECT_GE(skewed_clients, 4);
  auto d2 = SplitNonIID(ex, 8, dir);
  for (size_t k = 0; k < 8; ++k) EXPECT_EQ((*d)[k].size(), (*d2)[k].size());
  dir.min_per_client = 100;
  EXPECT_FALSE(SplitNonIID(ex, 8, dir).ok());
}

TEST(DatasetTest, GammaSamplerMoments) {
  std::mt19937_64 rng(5);
  for (double shape : {0.5, 2.0}) {
    double sum = 0, sq = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      const double g = SampleGamma(rng, shape);
      ASSERT_GT(g, 0);
      sum += g;
      sq += g * g;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    EXPECT_NEAR(mean, shape, 0.05 * shape + 0.02);  // Gamma(k, 1): mean k, variance k
    EXPECT_NEAR(var, shape, 0.1 * shape + 0.03);
  }
}

}  // namespace
}  // namespace tributary
