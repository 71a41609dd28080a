#include "engine/text/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "base/file_util.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

// tests/engine/fixtures/tiny_bpe: byte-level BPE designed by hand.
//   vocab: byte b's GPT-2 byte-level symbol -> id b (0..255), then merges in rank order:
//     0 "h e"->256 "he", 1 "l l"->257 "ll", 2 "he ll"->258 "hell", 3 "hell o"->259 "hello",
//     4 "Ġ w"->260 "Ġw", 5 "o r"->261 "or", 6 "Ġw or"->262 "Ġwor", 7 "l d"->263 "ld",
//     8 "Ġwor ld"->264 "Ġworld", 9 "e l"->265 "el"
//   (ranks 0-4 are written as "a b" strings, 5-9 as ["a", "b"] pairs).
//   added tokens: 266 "<|endoftext|>" (eos), 267 "<|begin|>" (bos, prepended by TemplateProcessing),
//   268 "<|user|>"; pre-tokenizer ByteLevel with the GPT-2 regex.
constexpr const char* kFixture = "tests/engine/fixtures/tiny_bpe";

std::unique_ptr<Tokenizer> LoadFixture() {
  auto tok = LoadTokenizer(kFixture);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

std::vector<int32_t> Ids(std::initializer_list<int32_t> ids) {
  return ids;
}

TEST(TokenizerTest, ByteLevelSymbolTable) {
  EXPECT_EQ(ByteLevelSymbol('a'), "a");
  EXPECT_EQ(ByteLevelSymbol(' '), "\xc4\xa0");   // U+0120 'Ġ'
  EXPECT_EQ(ByteLevelSymbol('\n'), "\xc4\x8a");  // U+010A 'Ċ'
  EXPECT_EQ(ByteLevelSymbol(0), "\xc4\x80");     // U+0100
  EXPECT_EQ(ByteLevelSymbol(0xad), "\xc5\x83");  // soft hyphen is the 68th non-printable byte: U+0143
  EXPECT_EQ(ByteLevelSymbol(0xe9), "\xc3\xa9");  // 'é' maps to itself
}

TEST(TokenizerTest, FixtureEncodingsDerivedByHand) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 269);
  EXPECT_EQ(tok->bos_id(), 267);
  EXPECT_EQ(tok->eos_id(), 266);
  EXPECT_EQ(tok->pad_id(), -1);
  // "hello": h e l l o -> (h,e) r0 -> he; (l,l) r1 -> ll; (he,ll) r2 -> hell; (hell,o) r3 -> hello.
  EXPECT_EQ(tok->Encode("hello", false), Ids({259}));
  // " world" is one GPT-2 piece: Ġ w o r l d -> Ġw (r4), or (r5), Ġwor (r6), ld (r7), Ġworld (r8).
  EXPECT_EQ(tok->Encode("hello world", false), Ids({259, 264}));
  // "yell": y e l l -> (l,l) r1 beats (e,l) r9 -> y e ll; (e,ll) is no merge -> [y, e, ll].
  EXPECT_EQ(tok->Encode("yell", false), Ids({'y', 'e', 257}));
  // "Hello": capital H has no merge with e -> H e l l o -> H e ll o.
  EXPECT_EQ(tok->Encode("Hello", false), Ids({'H', 'e', 257, 'o'}));
  // "eel": pieces "eel"; (e,e) none, (e,l) r9 -> e el.
  EXPECT_EQ(tok->Encode("eel", false), Ids({'e', 265}));
  // Added tokens split the text first; "world" without a space: w or ld.
  EXPECT_EQ(tok->Encode("hello<|endoftext|>world", false), Ids({259, 266, 'w', 261, 263}));
  EXPECT_EQ(tok->Encode("<|user|>hello", true), Ids({267, 268, 259}));
  // Bytes outside ASCII map to byte symbols: "é" = C3 A9 -> ids 0xC3, 0xA9.
  EXPECT_EQ(tok->Encode("é", false), Ids({0xc3, 0xa9}));
  // "  world": GPT-2 regex gives " " then " world" (\s+(?!\S) leaves the last space to the word).
  EXPECT_EQ(tok->Encode("  world", false), Ids({' ', 264}));
  EXPECT_EQ(tok->TokenToId("Ġworld"), 264);
  EXPECT_EQ(tok->IdToToken(259), "hello");
  EXPECT_TRUE(tok->IsSpecial(266));
  EXPECT_FALSE(tok->IsSpecial(259));
}

TEST(TokenizerTest, FixtureDecode) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(*tok->Decode(Ids({267, 259, 264, 266})), "<|begin|>hello world<|endoftext|>");
  EXPECT_EQ(*tok->Decode(Ids({267, 259, 264, 266}), true), "hello world");
  EXPECT_EQ(*tok->Decode(Ids({0xc3, 0xa9})), "é");
  EXPECT_TRUE(tok->Decode(Ids({269})).status().IsInvalidArgument());
  EXPECT_TRUE(tok->Decode(Ids({-1})).status().IsInvalidArgument());
}

const std::vector<std::string>& RoundTripTexts() {
  static const std::vector<std::string> texts = {
      "",
      "hello world",
      "Hello, World! It's 2024: 12345 apples\n\n\tindented  two  spaces   \n",
      "naïve café, Ελληνικά, русский, 日本語テキスト, 한국어, emoji 🙂👍",
      "e\xcc\x81 combining accent and \xe2\x80\x83 em space",
      "<|user|> special <|endoftext|> tokens <|begin|>",
      std::string("\x00\x01\xff\xfe raw bytes", 15),
  };
  return texts;
}

TEST(TokenizerTest, RoundTripFixture) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  for (const std::string& text : RoundTripTexts()) {
    auto ids = tok->Encode(text, false);
    auto back = tok->Decode(ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
  }
}

TEST(TokenizerTest, ByteTokenizer) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.Encode("ab", true), Ids({1, 3 + 'a', 3 + 'b'}));
  EXPECT_EQ(tok.Encode("a<eos>", false), Ids({3 + 'a', 2}));
  EXPECT_EQ(*tok.Decode(Ids({1, 3 + 'h', 3 + 'i', 2})), "<bos>hi<eos>");
  EXPECT_EQ(*tok.Decode(Ids({1, 3 + 'h', 3 + 'i', 2}), true), "hi");
  EXPECT_TRUE(tok.Decode(Ids({259})).status().IsInvalidArgument());
  EXPECT_EQ(tok.TokenToId("<pad>"), 0);
  EXPECT_EQ(tok.TokenToId("Ġ"), 3 + ' ');
  EXPECT_EQ(tok.IdToToken(3 + 'x'), "x");
  for (const std::string& text : RoundTripTexts()) EXPECT_EQ(*tok.Decode(tok.Encode(text, true), true), text);
}

// The HF tokenizer.json the ByteTokenizer writes loads into an equivalent BPE tokenizer.
TEST(TokenizerTest, ByteTokenizerJsonIsEquivalent) {
  const fs::path dir = fs::temp_directory_path() / ("trib_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ByteTokenizer byte_tok;
  ASSERT_TRUE(byte_tok.SaveToDir(dir.string()).ok());
  auto loaded = LoadTokenizer(dir.string());
  fs::remove_all(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Tokenizer& bpe = **loaded;
  EXPECT_EQ(bpe.vocab_size(), ByteTokenizer::kVocabSize);
  EXPECT_EQ(bpe.bos_id(), 1);
  EXPECT_EQ(bpe.eos_id(), 2);
  EXPECT_EQ(bpe.pad_id(), 0);
  std::mt19937_64 rng(3);
  std::vector<std::string> texts = RoundTripTexts();
  for (int i = 0; i < 50; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xff);
    if (i % 5 == 0) s += "<eos>";
    texts.push_back(s);
  }
  for (const std::string& text : texts) {
    EXPECT_EQ(bpe.Encode(text, true), byte_tok.Encode(text, true));
    EXPECT_EQ(*bpe.Decode(byte_tok.Encode(text, false)), text);
  }
}

std::vector<std::string> Pieces(std::string_view text, PretokenizePattern p) {
  std::vector<std::string> out;
  for (auto v : Pretokenize(text, p)) out.emplace_back(v);
  return out;
}
using Strs = std::vector<std::string>;

TEST(TokenizerTest, PretokenizeGpt2) {
  const auto p = PretokenizePattern::kGpt2;
  EXPECT_EQ(Pieces("I'm 12345 ok", p), (Strs{"I", "'m", " 12345", " ok"}));
  EXPECT_EQ(Pieces("Hello,  world!!\n", p), (Strs{"Hello", ",", " ", " world", "!!", "\n"}));
  EXPECT_EQ(Pieces("I'M", p), (Strs{"I", "'", "M"}));  // contractions are case-sensitive in GPT-2
  EXPECT_EQ(Pieces("héllo wörld", p), (Strs{"héllo", " wörld"}));
  EXPECT_EQ(Pieces("日本語 text", p), (Strs{"日本語", " text"}));
  EXPECT_EQ(Pieces("e\xcc\x81", p), (Strs{"e", "\xcc\x81"}));  // a combining mark is not a letter
  EXPECT_EQ(Pieces("a  \n b", p), (Strs{"a", "  \n", " b"}));
}

TEST(TokenizerTest, PretokenizeLlama3AndQwen2) {
  const auto l = PretokenizePattern::kLlama3;
  EXPECT_EQ(Pieces("I'm 12345 ok", l), (Strs{"I", "'m", " ", "123", "45", " ok"}));
  EXPECT_EQ(Pieces("I'M", l), (Strs{"I", "'M"}));  // case-insensitive contractions
  EXPECT_EQ(Pieces("(hello) world", l), (Strs{"(hello", ")", " world"}));
  EXPECT_EQ(Pieces("a.\n\nb", l), (Strs{"a", ".\n\n", "b"}));
  EXPECT_EQ(Pieces("x  \n  y", l), (Strs{"x", "  \n", " ", " y"}));
  EXPECT_EQ(Pieces("\tfoo", l), (Strs{"\tfoo"}));
  EXPECT_EQ(Pieces("end  ", l), (Strs{"end", "  "}));
  EXPECT_EQ(Pieces("12345", PretokenizePattern::kQwen2), (Strs{"1", "2", "3", "4", "5"}));
}

// tests/engine/fixtures/pretokenize/splits.json (tests/oracle/make_pretokenize_oracle.py): HF tokenizers'
// Split pre-tokenizer over 42 strings in more than 15 scripts (combining marks, Greek extended, Thai,
// Khmer, Tamil, kana iteration marks, emoji ZWJ sequences, code) under the three regexes.
TEST(TokenizerTest, PretokenizeMatchesHfTokenizersOverManyScripts) {
  auto text = ReadFileToString("tests/engine/fixtures/pretokenize/splits.json");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const auto fixture = nlohmann::json::parse(*text);
  int compared = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string input = c["text"];
    for (const auto& [name, pattern] :
         {std::pair{"gpt2", PretokenizePattern::kGpt2}, std::pair{"llama3", PretokenizePattern::kLlama3},
          std::pair{"qwen2", PretokenizePattern::kQwen2}}) {
      EXPECT_EQ(Pieces(input, pattern), c[name].get<Strs>()) << name << " on '" << input << "'";
      ++compared;
    }
  }
  EXPECT_EQ(compared, 3 * 42);
}

// The NFC normalizer composes (e + U+0301 -> é) before pre-tokenisation, as HF's does.
TEST(TokenizerTest, NfcNormalizerComposesLikeHf) {
  auto text = ReadFileToString(std::string(kFixture) + "/tokenizer.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  auto plain = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  j["normalizer"] = nlohmann::json::parse(R"({"type": "Sequence", "normalizers": [{"type": "NFC"}]})");
  auto nfc = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(plain.ok() && nfc.ok()) << nfc.status().ToString();
  auto fixture_text = ReadFileToString("tests/engine/fixtures/pretokenize/splits.json");
  ASSERT_TRUE(fixture_text.ok());
  const auto fixture = nlohmann::json::parse(*fixture_text);
  int decomposed = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string input = c["text"], composed = c["nfc"];
    EXPECT_EQ((*nfc)->Encode(input, false), (*plain)->Encode(composed, false)) << input;
    if (input != composed) {
      ++decomposed;
      EXPECT_NE((*plain)->Encode(input, false), (*plain)->Encode(composed, false)) << input;
    }
  }
  EXPECT_GE(decomposed, 2) << "the fixture has decomposed text";
  // Invalid UTF-8 passes through unchanged (byte-level stays lossless).
  const std::string invalid = "a\xff\xfe b";
  EXPECT_EQ(*(*nfc)->Decode((*nfc)->Encode(invalid, false)), invalid);
}

TEST(TokenizerTest, SplitPreTokenizerFromJson) {
  auto text = ReadFileToString(std::string(kFixture) + "/tokenizer.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  j["pre_tokenizer"] = nlohmann::json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})");
  j["model"]["ignore_merges"] = true;
  j["model"]["vocab"]["yell"] = 269;  // reachable only as a whole word (no merges build it)
  auto tok = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // Without tokenizer_config.json: BOS from the template, EOS from the usual name.
  EXPECT_EQ((*tok)->bos_id(), 267);
  EXPECT_EQ((*tok)->eos_id(), 266);
  // Llama-3 split: "hello" " world" as before; "12345" -> "123" "45" (digits have no merges).
  EXPECT_EQ((*tok)->Encode("hello world 12345", false), Ids({259, 264, ' ', '1', '2', '3', '4', '5'}));
  // ignore_merges: a piece that is a whole vocab entry maps directly; BPE alone would give [y, e, ll].
  EXPECT_EQ((*tok)->Encode("yell", false), Ids({269}));
  EXPECT_EQ((*tok)->Encode("yells", false), Ids({'y', 'e', 257, 's'}));
  for (const std::string& s : RoundTripTexts()) EXPECT_EQ(*(*tok)->Decode((*tok)->Encode(s, false)), s);
}

// tests/engine/fixtures/tiny_spm: SentencePiece-style BPE (Llama-2 layout) designed by hand.
//   vocab: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> = 3..258, chars ▁=259 h=260 e=261 l=262 o=263 w=264
//   r=265 d=266; merges (rank: pair -> id): 0 ▁ h->267, 1 l l->268, 2 e ll->269, 3 ▁h ell->270,
//   4 ▁hell o->271, 5 ▁ w->272, 6 o r->273, 7 ▁w or->274, 8 l d->275, 9 ▁wor ld->276.
//   normalizer Prepend("▁") + Replace(" " -> "▁") on every segment between added tokens; byte_fallback,
//   fuse_unk; decoder Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0); template adds <s>.
constexpr const char* kSpmFixture = "tests/engine/fixtures/tiny_spm";

TEST(TokenizerTest, SentencePieceStyleFixture) {
  auto loaded = LoadTokenizer(kSpmFixture);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Tokenizer& tok = **loaded;
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  // "▁hello▁world": ▁h (r0), ll (r1), ell (r2), ▁hell (r3), ▁hello (r4), ▁w (r5), or (r6), ▁wor (r7),
  // ld (r8), ▁world (r9).
  EXPECT_EQ(tok.Encode("hello world", true), Ids({1, 271, 276}));
  // "▁hi": ▁h, then 'i' is not in the vocabulary -> byte fallback <0x69> = 3 + 0x69.
  EXPECT_EQ(tok.Encode("hi", false), Ids({267, 3 + 0x69}));
  // "▁é": ▁, then é = C3 A9 -> <0xC3> <0xA9>.
  EXPECT_EQ(tok.Encode("é", false), Ids({259, 3 + 0xc3, 3 + 0xa9}));
  // A leading space gives "▁▁hello": ▁ stays alone, ▁hello as before.
  EXPECT_EQ(tok.Encode(" hello", false), Ids({259, 271}));
  // Every segment between added tokens gets the prepended ▁ (HF's legacy Llama-2 behaviour).
  EXPECT_EQ(tok.Encode("<s>hello</s>", false), Ids({1, 271, 2}));
  EXPECT_EQ(*tok.Decode(Ids({1, 271, 276})), "<s> hello world");
  EXPECT_EQ(*tok.Decode(Ids({1, 271, 276}), true), "hello world");
  EXPECT_EQ(*tok.Decode(Ids({259, 3 + 0xc3, 3 + 0xa9})), "é");
  for (const std::string& text :
       {std::string("hello world"), std::string("  two spaces\nnew line\ttab"),
        std::string("naïve café 日本語 🙂"), std::string(" leading"), std::string("")}) {
    EXPECT_EQ(*tok.Decode(tok.Encode(text, true), true), text) << text;
  }
}

TEST(TokenizerTest, SentencePieceMetaspaceAndUnkVariants) {
  auto text = ReadFileToString(std::string(kSpmFixture) + "/tokenizer.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  // Newer layout: Metaspace pre-tokenizer (prepend only at the start of the input) and decoder.
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
  auto meta = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ((*meta)->Encode("hello world", false), Ids({271, 276}));
  // A leading space is the ▁ itself, nothing more is prepended.
  EXPECT_EQ((*meta)->Encode(" hello", false), Ids({271}));
  // After an added token no ▁ is prepended: "hello" -> h, ell (r1, r2), o.
  EXPECT_EQ((*meta)->Encode("<s>hello", false), Ids({1, 260, 269, 263}));
  EXPECT_EQ(*(*meta)->Decode(Ids({271, 276})), "hello world");
  // A merge that crosses a ▁ boundary, ranked first: "o ▁" -> "o▁" (277).
  j["model"]["vocab"]["o\u2581"] = 277;
  j["model"]["merges"].insert(j["model"]["merges"].begin(), "o \u2581");
  auto joined = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  // split=false: "▁o▁world" is one piece: o▁ (r0) first, then or, ld -> ▁ o▁ w or ld.
  EXPECT_EQ((*joined)->Encode("o world", false), Ids({259, 277, 264, 273, 275}));
  // split=true cuts before each ▁: "▁o" | "▁world" -> ▁ o | ▁world.
  j["pre_tokenizer"]["split"] = true;
  auto split = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(split.ok()) << split.status().ToString();
  EXPECT_EQ((*split)->Encode("o world", false), Ids({259, 263, 276}));

  // Without byte fallback, unknown characters become <unk>, consecutive ones fused.
  j = nlohmann::json::parse(*text);
  j["model"]["byte_fallback"] = false;
  auto unk = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_TRUE(unk.ok()) << unk.status().ToString();
  EXPECT_EQ((*unk)->Encode("hiii", false), Ids({267, 0}));
  j["model"]["unk_token"] = nullptr;
  EXPECT_FALSE(ParseHfTokenizer(j.dump(), "", "tokenizer.json").ok());

  j = nlohmann::json::parse(*text);
  j["model"]["vocab"].erase("<0x41>");
  auto missing = ParseHfTokenizer(j.dump(), "", "tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("<0x41>"), std::string::npos) << missing.status().message();
  j = nlohmann::json::parse(*text);
  j["decoder"] = nullptr;
  EXPECT_FALSE(ParseHfTokenizer(j.dump(), "", "tokenizer.json").ok());
}

TEST(TokenizerTest, UnsupportedTokenizersAreClearErrors) {
  auto base_text = ReadFileToString(std::string(kFixture) + "/tokenizer.json");
  ASSERT_TRUE(base_text.ok());
  const auto base = nlohmann::json::parse(*base_text);
  struct Case {
    std::string label, patch, expect;  // patch: JSON merged into the top level
  };
  const std::vector<Case> cases = {
      {"unigram", R"({"model": {"type": "Unigram", "vocab": []}})", "model.type 'Unigram' is not supported"},
      {"byte fallback with ByteLevel", "", "model.byte_fallback"},
      {"metaspace with byte-level vocab", R"({"pre_tokenizer": {"type": "Whitespace"}})", "pre_tokenizer 'Whitespace'"},
      {"regex", R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}})",
       "Split regex '\\w+' is not supported"},
      {"decoder", R"({"decoder": {"type": "Metaspace"}})", "decoder"},
      {"normalizer", R"({"normalizer": {"type": "NFKC"}})", "normalizer 'NFKC'"},
      {"bad merge", "", "uses a token missing from model.vocab"},
      {"no byte symbols", "", "lacks the byte-level symbol"},
      {"post processor", R"({"post_processor": {"type": "BertProcessing"}})", "post_processor 'BertProcessing'"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = base;
    if (!c.patch.empty()) j.merge_patch(nlohmann::json::parse(c.patch));
    if (c.label == "byte fallback with ByteLevel") j["model"]["byte_fallback"] = true;
    if (c.label == "bad merge") j["model"]["merges"].push_back("x yz");
    if (c.label == "no byte symbols") j["model"]["vocab"].erase("a");
    auto r = ParseHfTokenizer(j.dump(), "", "dir/tokenizer.json");
    ASSERT_FALSE(r.ok()) << c.label;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.label;
    EXPECT_EQ(r.status().message().rfind("dir/tokenizer.json: ", 0), 0u) << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.label << ": " << r.status().message();
  }
  EXPECT_FALSE(ParseHfTokenizer("{not json", "", "tokenizer.json").ok());
  EXPECT_TRUE(LoadTokenizer("/nonexistent").status().IsNotFound());
}

TEST(TokenizerTest, BrokenMergesAndWrongTypesNameTheFileAndEntry) {
  auto base_text = ReadFileToString(std::string(kFixture) + "/tokenizer.json");
  ASSERT_TRUE(base_text.ok());
  const auto base = nlohmann::json::parse(*base_text);
  struct Case {
    std::string label;
    std::function<void(nlohmann::json&)> patch;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"unknown left token", [](auto& j) { j["model"]["merges"].push_back("xyz o"); },
       "model.merges[10]: 'xyz o' uses a token missing from model.vocab: 'xyz'"},
      {"merged token missing", [](auto& j) { j["model"]["merges"].push_back("w o"); },
       "model.merges[10]: 'w o' uses a token missing from model.vocab: 'wo'"},
      {"three tokens", [](auto& j) { j["model"]["merges"][0] = "h e l"; },
       "model.merges[0]: expected \"left right\" (two tokens, one space), got 'h e l'"},
      {"no space", [](auto& j) { j["model"]["merges"][1] = "ll"; }, "model.merges[1]: expected \"left right\""},
      {"number", [](auto& j) { j["model"]["merges"][2] = 7; },
       "model.merges[2]: expected a string or a pair of strings"},
      {"triple",
       [](auto& j) {
         j["model"]["merges"][5] = {"o", "r", "x"};
       },
       "model.merges[5]: expected a string or a pair of strings"},
      {"merges not a list", [](auto& j) { j["model"]["merges"] = "h e"; }, "model.merges is missing or not a list"},
      {"duplicate id", [](auto& j) { j["model"]["vocab"]["zz"] = 261; }, "is also the id of"},
      {"flag type", [](auto& j) { j["model"]["ignore_merges"] = "yes"; },
       "model.ignore_merges: expected true or false, got \"yes\""},
      {"unk type", [](auto& j) { j["model"]["unk_token"] = 3; }, "model.unk_token: expected a string or null"},
      {"added token id", [](auto& j) { j["added_tokens"][0]["id"] = "266"; }, "added_tokens[0]: expected {"},
      {"added token entry", [](auto& j) { j["added_tokens"][1] = "<|begin|>"; }, "added_tokens[1]: expected {"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = base;
    c.patch(j);
    auto r = ParseHfTokenizer(j.dump(), "", "dir/tokenizer.json");
    ASSERT_FALSE(r.ok()) << c.label;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.label;
    EXPECT_EQ(r.status().message().rfind("dir/tokenizer.json: ", 0), 0u) << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.label << ": " << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << c.label;
  }
}

}  // namespace
}  // namespace tributary
