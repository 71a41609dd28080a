// Token ids equal to HF tokenizers', string for string: tests/engine/fixtures/tokenizer_parity holds four
// tokenizer.json files in the GPT-2, Llama-3, Qwen2 (NFC) and Llama-2 (SentencePiece BPE, byte fallback)
// layouts, trained by HF tokenizers, and ids.json the ids HF gives 300+ strings over 20+ scripts
// (tests/oracle/make_tokenizer_parity.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "engine/text/tokenizer.h"

namespace tributary {
namespace {

constexpr const char* kDir = "tests/engine/fixtures/tokenizer_parity";

TEST(TokenizerParityTest, IdsEqualHfTokenizersForEveryStringAndFamily) {
  auto text = ReadFileToString(std::string(kDir) + "/ids.json");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const auto fixture = nlohmann::json::parse(*text);
  const std::vector<std::string> strings = fixture["strings"];
  ASSERT_GE(strings.size(), 300u);
  for (const char* family : {"gpt2", "llama3", "qwen2", "llama2"}) {
    SCOPED_TRACE(family);
    auto tok = LoadTokenizer(std::string(kDir) + "/" + family);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    const auto& expected = fixture["ids"][family];
    int mismatches = 0;
    for (size_t i = 0; i < strings.size(); ++i) {
      const std::vector<int32_t> ids = (*tok)->Encode(strings[i], /*add_special_tokens=*/false);
      const std::vector<int32_t> want = expected[i];
      if (ids != want && ++mismatches <= 5) ADD_FAILURE() << family << " on '" << strings[i] << "'";
    }
    EXPECT_EQ(mismatches, 0) << family << ": " << mismatches << " of " << strings.size() << " strings differ";
  }
}

}  // namespace
}  // namespace tributary
