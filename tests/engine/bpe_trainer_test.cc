#include "engine/text/bpe_trainer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "base/file_util.h"
#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

std::unique_ptr<Tokenizer> Parse(const BpeTrainResult& r) {
  auto tok = ParseHfTokenizer(r.tokenizer_json, r.tokenizer_config_json, "trained tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

std::vector<std::string> Merges(const BpeTrainResult& r) {
  return nlohmann::json::parse(r.tokenizer_json)["model"]["merges"].get<std::vector<std::string>>();
}

BpeTrainOptions Options(int64_t vocab_size, int64_t min_frequency) {
  BpeTrainOptions o;
  o.vocab_size = vocab_size;
  o.min_frequency = min_frequency;
  return o;
}

// Pseudo-English: words of a small Zipf-like lexicon with spaces, punctuation, digits and newlines.
std::string Corpus(size_t bytes, uint32_t seed) {
  const char* lexicon[] = {
      "the",   "of",    "and",       "to",    "in",    "a",        "is",     "that",  "for",   "it",    "as",   "was",
      "with",  "be",    "by",        "on",    "not",   "he",       "this",   "are",   "or",    "his",   "from", "at",
      "which", "but",   "have",      "an",    "had",   "they",     "you",    "were",  "their", "one",   "all",  "we",
      "can",   "her",   "has",       "there", "been",  "if",       "more",   "when",  "will",  "would", "who",  "so",
      "no",    "river", "tributary", "model", "token", "learning", "Ferret", "naïve", "café",  "Zürich"};
  const size_t n = sizeof(lexicon) / sizeof(lexicon[0]);
  std::mt19937 rng(seed);
  std::string text;
  while (text.size() < bytes) {
    // Rank r with probability ~ 1/(r+1): the minimum of two uniform draws leans to frequent words.
    const size_t r = std::min(rng() % n, rng() % n);
    text += lexicon[r];
    const uint32_t p = rng() % 100;
    if (p < 80) {
      text += ' ';
    } else if (p < 88) {
      text += ", ";
    } else if (p < 94) {
      text += ".\n";
    } else {
      text += " " + std::to_string(rng() % 2000) + " ";
    }
  }
  return text;
}

// "aaab" alone: pairs (a,a) x2 and (a,b) x1 -> "a a" first; then (aa,a) and (a,b) tie at 1 and the
// pair with the smaller left bytes wins ("a" < "aa") -> "a b"; then "aa ab" leaves one token.
TEST(BpeTrainerTest, HandCheckableMerges) {
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(1000, 1), {"aaab"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Merges(*r), (std::vector<std::string>{"a a", "a b", "aa ab"}));
  EXPECT_EQ(r->merges, 3);
  EXPECT_EQ(r->vocab_size, 3 + 256 + 3);  // stopped early: no pair left
  EXPECT_EQ(r->input_bytes, 4);
  EXPECT_EQ(r->input_tokens, 1);
  const auto vocab = nlohmann::json::parse(r->tokenizer_json)["model"]["vocab"];
  EXPECT_EQ(vocab["<pad>"], 0);
  EXPECT_EQ(vocab["<bos>"], 1);
  EXPECT_EQ(vocab["<eos>"], 2);
  EXPECT_EQ(vocab["a"], 3 + 'a');
  EXPECT_EQ(vocab[ByteLevelSymbol(0)], 3);
  EXPECT_EQ(vocab["aa"], 259);
  EXPECT_EQ(vocab["ab"], 260);
  EXPECT_EQ(vocab["aaab"], 261);

  auto tok = Parse(*r);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 262);
  EXPECT_EQ(tok->Encode("aaab", false), (std::vector<int32_t>{261}));
  EXPECT_EQ(tok->Encode("aaab", true), (std::vector<int32_t>{1, 261}));
  // "a a" (rank 0) first: [aa, b]; "aa b" is no merge.
  EXPECT_EQ(tok->Encode("aab", false), (std::vector<int32_t>{259, 3 + 'b'}));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 0);
}

// Word counts weight the pairs: " ab" x3 outweighs "aaab"'s (a,a) x2.
TEST(BpeTrainerTest, WordCountsWeightPairsAndLimitsHold) {
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(1000, 1), {"aaab ab ab ab"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Words "aaab", " ab" x3: (a,b) 4, (Ġ,a) 3, (a,a) 2.
  const std::vector<std::string> merges = Merges(*r);
  ASSERT_GE(merges.size(), 2u);
  EXPECT_EQ(merges[0], "a b");
  EXPECT_EQ(merges[1], "Ġ ab");

  // min_frequency: after "a a" (2) every pair of "aaab" occurs once.
  r = TrainByteLevelBpe(Options(1000, 2), {"aaab"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Merges(*r), (std::vector<std::string>{"a a"}));
  // vocab_size: 259 + 2 tokens.
  r = TrainByteLevelBpe(Options(261, 1), {"aaab"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Merges(*r), (std::vector<std::string>{"a a", "a b"}));
  EXPECT_EQ(r->vocab_size, 261);
}

TEST(BpeTrainerTest, DeterministicAndIndependentOfDocumentOrder) {
  const std::string a = Corpus(40000, 1), b = Corpus(40000, 2), c = Corpus(40000, 3);
  Result<BpeTrainResult> r1 = TrainByteLevelBpe(Options(600, 2), {a, b, c});
  Result<BpeTrainResult> r2 = TrainByteLevelBpe(Options(600, 2), {a, b, c});
  Result<BpeTrainResult> r3 = TrainByteLevelBpe(Options(600, 2), {c, a, b});
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  EXPECT_EQ(r1->tokenizer_json, r2->tokenizer_json);
  EXPECT_EQ(r1->tokenizer_json, r3->tokenizer_json);
  EXPECT_EQ(r1->tokenizer_config_json, r3->tokenizer_config_json);
}

TEST(BpeTrainerTest, RoundTripsAnyBytesAndCompresses) {
  const std::string corpus = Corpus(200000, 7);
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(800, 2), {corpus});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->vocab_size, 800);
  auto tok = Parse(*r);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 800);

  const std::vector<int32_t> ids = tok->Encode(corpus, false);
  // The trainer's own segmentation is what encoding gives.
  EXPECT_EQ(static_cast<int64_t>(ids.size()), r->input_tokens);
  EXPECT_EQ(r->input_bytes, static_cast<int64_t>(corpus.size()));
  EXPECT_LT(ids.size() * 3, corpus.size()) << "expected well over 3 bytes per token on the training text";
  EXPECT_EQ(tok->Decode(ids).value(), corpus);

  const std::string utf8 =
      "Grüße aus Zürich: naïve café, 東京, Ελληνικά, emoji 🙂 and <eos> inside\n\ttabs  2024";
  EXPECT_EQ(tok->Decode(tok->Encode(utf8, true)).value(), "<bos>" + utf8);
  EXPECT_EQ(tok->Decode(tok->Encode(utf8, false)).value(), utf8);
  std::mt19937 rng(42);
  for (int trial = 0; trial < 50; ++trial) {
    std::string bytes(rng() % 300, '\0');
    for (char& ch : bytes) ch = static_cast<char>(rng() & 0xff);
    const std::vector<int32_t> enc = tok->Encode(bytes, false);
    ASSERT_EQ(tok->Decode(enc).value(), bytes) << "trial " << trial;
  }
}

// Special tokens in the text are never part of a learned token.
TEST(BpeTrainerTest, SpecialTokensInTheTextStaySpecial) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "<bos>hello<eos>";
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(400, 2), {text});
  ASSERT_TRUE(r.ok());
  for (const std::string& m : Merges(*r)) EXPECT_EQ(m.find('<'), std::string::npos) << m;
  auto tok = Parse(*r);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(r->input_bytes, 50 * 5);
  const std::vector<int32_t> ids = tok->Encode("<bos>hello<eos>", false);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->IdToToken(ids[1]), "hello");
  EXPECT_EQ(ids[2], 2);
}

TEST(BpeTrainerTest, SavedFilesLoadThroughLoadTokenizer) {
  testutil::TempDir dir;
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(500, 2), {Corpus(30000, 5)});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir.path(), "tokenizer.json"), r->tokenizer_json).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir.path(), "tokenizer_config.json"), r->tokenizer_config_json).ok());
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), 500);
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  EXPECT_EQ((*tok)->pad_id(), 0);
  EXPECT_TRUE((*tok)->IsSpecial(2));
  const std::string text = "the river and the tributary";
  std::vector<int32_t> ids = (*tok)->Encode(text, true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ((*tok)->Decode(ids, /*skip_special_tokens=*/true).value(), text);
}

TEST(BpeTrainerTest, BadOptionsNameTheField) {
  Result<BpeTrainResult> r = TrainByteLevelBpe(Options(258, 1), {"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocab_size 258 is smaller than 259"), std::string::npos)
      << r.status().ToString();
  r = TrainByteLevelBpe(Options(300, 0), {"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("min_frequency"), std::string::npos);
  BpeTrainOptions o = Options(300, 1);
  o.eos_token = "</s>";
  r = TrainByteLevelBpe(o, {"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("eos_token '</s>'"), std::string::npos);
  // Without specials the bytes take ids 0..255 and nothing is prepended.
  o = Options(256, 1);
  o.special_tokens.clear();
  o.bos_token = o.eos_token = o.pad_token = "";
  r = TrainByteLevelBpe(o, {"abc"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto tok = Parse(*r);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a", true), (std::vector<int32_t>{'a'}));
}

}  // namespace
}  // namespace tributary
