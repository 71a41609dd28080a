#include "engine/text/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace tributary {
namespace {

// F as the rouge package computes it: 2PR / (P + R + 1e-8).
double Rouge101F(double p, double r) {
  return 2.0 * (p * r) / (p + r + 1e-8);
}

TEST(MetricsTest, LcsLengthClassicExample) {
  // A B C B D A B vs B D C A B A: one LCS is B C B A (length 4).
  const std::vector<int32_t> a = {'A', 'B', 'C', 'B', 'D', 'A', 'B'};
  const std::vector<int32_t> b = {'B', 'D', 'C', 'A', 'B', 'A'};
  EXPECT_EQ(LcsLength(a, b), 4);
  EXPECT_EQ(LcsLength(b, a), 4);
  EXPECT_EQ(LcsLength(a, {}), 0);
  EXPECT_EQ(LcsLength(a, a), 7);
}

TEST(MetricsTest, RougeLOnTokens) {
  // hyp 1 2 3 4 5, ref 1 3 5 7: LCS = 1 3 5 (3). P = 3/5, R = 3/4,
  // F = 2 * 0.6 * 0.75 / (0.6 + 0.75) = 0.9 / 1.35 = 2/3.
  const std::vector<int32_t> hyp = {1, 2, 3, 4, 5};
  const std::vector<int32_t> ref = {1, 3, 5, 7};
  RougeLScore s = RougeLTokens(hyp, ref);
  EXPECT_DOUBLE_EQ(s.precision, 0.6);
  EXPECT_DOUBLE_EQ(s.recall, 0.75);
  EXPECT_DOUBLE_EQ(s.f, 2.0 / 3.0);
  // Repetitions count at token level: hyp 9 9 9, ref 9: LCS 1, P = 1/3, R = 1, F = (2/3) / (4/3) = 0.5.
  EXPECT_DOUBLE_EQ(RougeLTokens(std::vector<int32_t>{9, 9, 9}, std::vector<int32_t>{9}).f, 0.5);
  // No overlap or an empty side: all zero (no 0/0).
  RougeLScore none = RougeLTokens(std::vector<int32_t>{1, 2}, std::vector<int32_t>{3});
  EXPECT_EQ(none.f, 0.0);
  EXPECT_EQ(none.precision, 0.0);
  EXPECT_EQ(RougeLTokens({}, ref).f, 0.0);
  EXPECT_EQ(RougeLTokens(hyp, hyp).f, 1.0);
}

TEST(MetricsTest, NormalizedWordsLowercaseAndSplitOnNonAlphanumeric) {
  EXPECT_EQ(NormalizedWords("Hello, World! It's 2024."),
            (std::vector<std::string>{"hello", "world", "it", "s", "2024"}));
  EXPECT_EQ(NormalizedWords("  --  "), std::vector<std::string>{});
  // UTF-8 bytes are word characters: "café" stays one word.
  EXPECT_EQ(NormalizedWords("Caf\xc3\xa9 au-lait"), (std::vector<std::string>{"caf\xc3\xa9", "au", "lait"}));
}

TEST(MetricsTest, RougeLTextNormalizedWords) {
  // hyp: the cat sat on the mat (6); ref: the cat is on the mat (6).
  // LCS = the cat on the mat (5): P = R = 5/6, F = 5/6.
  RougeLScore s = RougeLText("The cat sat on the mat.", "the cat is on the mat", RougeTokenization::kNormalizedWords);
  EXPECT_DOUBLE_EQ(s.precision, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(s.recall, 5.0 / 6.0);
  EXPECT_NEAR(s.f, 5.0 / 6.0, 1e-15);
  EXPECT_EQ(RougeLText("", "a", RougeTokenization::kNormalizedWords).f, 0.0);
}

// The expected values below were worked out by hand from the rouge 1.0.1 algorithm (documented in
// engine/text/metrics.h) and agree with the package's own output.
TEST(MetricsTest, Rouge101CaseSensitiveWordSets) {
  // hyp sentences: ["The cat sat on the mat"] (the trailing "" after '.' is dropped);
  // hyp word set {The, cat, sat, on, the, mat}: n = 6. ref word set {the, cat, is, on, mat}: m = 5.
  // LCS(ref, hyp) = cat on the mat ("The" != "the"): 4 words. R = 4/5, P = 4/6.
  // F = 2 * (0.8 * 2/3) / (0.8 + 2/3 + 1e-8) ~= 8/11.
  RougeLScore s = RougeLText("The cat sat on the mat.", "the cat is on the mat");
  EXPECT_DOUBLE_EQ(s.recall, 0.8);
  EXPECT_DOUBLE_EQ(s.precision, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(s.f, Rouge101F(4.0 / 6.0, 0.8));
  EXPECT_NEAR(s.f, 8.0 / 11.0, 1e-8);
}

TEST(MetricsTest, Rouge101CountsDistinctWords) {
  // hyp "a a a": word set {a}, n = 1; ref {a}, m = 1; LCS union {a}: P = R = 1, F = 2 / (2 + 1e-8).
  // (Token-level Rouge-L would give 0.5.)
  RougeLScore s = RougeLText("a a a", "a");
  EXPECT_DOUBLE_EQ(s.precision, 1.0);
  EXPECT_DOUBLE_EQ(s.recall, 1.0);
  EXPECT_DOUBLE_EQ(s.f, Rouge101F(1.0, 1.0));
}

TEST(MetricsTest, Rouge101SummaryLevelUnionLcs) {
  // Lin's example: ref r = w1 w2 w3 w4 w5; hyp c1 = w1 w2 w6 w7 w8, c2 = w1 w3 w8 w9 w5.
  // LCS(r, c1) = w1 w2, LCS(r, c2) = w1 w3 w5, union {w1, w2, w3, w5} = 4.
  // m = 5 distinct ref words; n = |{w1 w2 w6 w7 w8 w3 w9 w5}| = 8. R = 4/5, P = 4/8.
  // F = 2 * 0.4 / (1.3 + 1e-8) ~= 8/13.
  RougeLScore s = RougeLText("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5");
  EXPECT_DOUBLE_EQ(s.recall, 0.8);
  EXPECT_DOUBLE_EQ(s.precision, 0.5);
  EXPECT_DOUBLE_EQ(s.f, Rouge101F(0.5, 0.8));
}

TEST(MetricsTest, Rouge101ReconstructionTieBreaking) {
  // ref sentences ["a b", "b"], hyp ["b a"]. LCS(a b, b a) has length 1 and could be "a" or "b";
  // the package's backtrack (up only when table[i-1][j] > table[i][j-1], else left) picks "b".
  // LCS("b", "b a") = b. Union {b} = 1; m = n = 2: P = R = 1/2, F = 0.5 / (1 + 1e-8).
  // Picking "a" for the first pair would give union {a, b} and F ~= 1.
  RougeLScore s = RougeLText("b a", "a b. b");
  EXPECT_DOUBLE_EQ(s.precision, 0.5);
  EXPECT_DOUBLE_EQ(s.recall, 0.5);
  EXPECT_DOUBLE_EQ(s.f, Rouge101F(0.5, 0.5));
}

TEST(MetricsTest, Rouge101WhitespaceAndEmptyInputs) {
  // "cat. " -> sentences ["cat", " "]; " " collapses to "" whose split(" ") is [""]: hyp word set
  // {cat, ""}, n = 2; ref {cat}, m = 1; union {cat}: P = 1/2, R = 1, F = 1 / (1.5 + 1e-8).
  RougeLScore s = RougeLText("cat. ", "cat");
  EXPECT_DOUBLE_EQ(s.precision, 0.5);
  EXPECT_DOUBLE_EQ(s.recall, 1.0);
  EXPECT_DOUBLE_EQ(s.f, Rouge101F(0.5, 1.0));
  // Tabs, newlines and U+00A0 are Python whitespace: same words as "Hello world".
  EXPECT_DOUBLE_EQ(RougeLText("Hello\xc2\xa0world", "Hello world").f, Rouge101F(1.0, 1.0));
  EXPECT_DOUBLE_EQ(RougeLText("x\ty\n", "x y").f, Rouge101F(1.0, 1.0));
  // The package raises ValueError when no sentence remains; Ferret scores those 0.
  EXPECT_EQ(RougeLText("", "a").f, 0.0);
  EXPECT_EQ(RougeLText("...", "a").f, 0.0);
  EXPECT_EQ(RougeLText("a", "").f, 0.0);
  // A whitespace-only hypothesis is one empty word: no overlap, F = 0.
  EXPECT_EQ(RougeLText(" ", "a").f, 0.0);
}

TEST(MetricsTest, ExactMatchNormalisation) {
  EXPECT_EQ(NormalizeAnswer("  The  Answer,\tis: 42!! "), "the answer is 42");
  EXPECT_TRUE(ExactMatch("Paris.", "paris"));
  EXPECT_TRUE(ExactMatch(" New\n York ", "new york"));
  EXPECT_FALSE(ExactMatch("New York", "NewYork"));
  EXPECT_FALSE(ExactMatch("42", "43"));
  EXPECT_TRUE(ExactMatch("", "?!"));
}

TEST(MetricsTest, PerplexityAndCorpusAverages) {
  EXPECT_DOUBLE_EQ(PerplexityFromMeanLoss(0.0), 1.0);
  EXPECT_DOUBLE_EQ(PerplexityFromMeanLoss(std::log(8.0)), 8.0);

  MetricsAccumulator acc(RougeTokenization::kNormalizedWords);
  EXPECT_EQ(acc.mean_rouge_l(), 0.0);
  EXPECT_EQ(acc.perplexity(), 1.0);
  acc.AddGeneration("Paris", "paris");    // F = 1, exact
  acc.AddGeneration("the cat", "a cat");  // LCS 1 of 2 and 2: F = 0.5, not exact
  acc.AddGeneration("dog", "cat");        // F = 0
  EXPECT_EQ(acc.generations(), 3);
  EXPECT_DOUBLE_EQ(acc.mean_rouge_l(), 0.5);  // (1 + 0.5 + 0) / 3
  EXPECT_DOUBLE_EQ(acc.exact_match_rate(), 1.0 / 3.0);

  // Token-weighted: (6 + 2) nats over (3 + 1) tokens = 2 nats/token, perplexity e^2.
  acc.AddLoss(6.0, 3);
  acc.AddLoss(2.0, 1);
  EXPECT_DOUBLE_EQ(acc.mean_loss(), 2.0);
  EXPECT_DOUBLE_EQ(acc.perplexity(), std::exp(2.0));

  MetricsAccumulator other(RougeTokenization::kNormalizedWords);
  // 4 tokens at loss 0: corpus mean (8 + 0) / 8 = 1 nat, perplexity e (the mean of per-example
  // perplexities would be (e^2 + e^2 + 1) / 3 instead).
  other.AddLoss(0.0, 4);
  other.AddGeneration("x", "x");
  acc.Merge(other);
  EXPECT_EQ(acc.tokens(), 8);
  EXPECT_DOUBLE_EQ(acc.mean_loss(), 1.0);
  EXPECT_DOUBLE_EQ(acc.perplexity(), std::exp(1.0));
  EXPECT_DOUBLE_EQ(acc.mean_rouge_l(), 0.625);  // (1 + 0.5 + 0 + 1) / 4
  EXPECT_DOUBLE_EQ(acc.exact_match_rate(), 0.5);
}

}  // namespace
}  // namespace tributary
