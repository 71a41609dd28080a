// tokenizer.json (engine/text/tokenizer.h ParseHfTokenizer): vocabularies, merges, pre-tokenizers,
// normalizers, added tokens and templates of a model directory someone else wrote; then the parsed
// tokenizer encodes and decodes a fixed text and the input's own tail.
//
// Input: tokenizer.json text, then optionally a NUL byte and tokenizer_config.json text. Text after a
// second NUL is encoded too.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/tokenizer.h"

using namespace tributary;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string json(all.substr(0, nul));
  std::string config;
  std::string text = "Hello, world! 123 \xc3\xa9t\xc3\xa9 \xe2\x98\x83  tabs\tand\nnewlines <s></s>";
  if (nul != std::string_view::npos) {
    const std::string_view rest = all.substr(nul + 1);
    const size_t nul2 = rest.find('\0');
    config = std::string(rest.substr(0, nul2));
    if (nul2 != std::string_view::npos) text = std::string(rest.substr(nul2 + 1));
  }
  auto tokenizer = ParseHfTokenizer(json, config, "fuzz/tokenizer.json");
  if (!tokenizer.ok()) return 0;
  const Tokenizer& tok = *tokenizer.value();
  for (const bool special : {false, true}) {
    const std::vector<int32_t> ids = tok.Encode(text, special);
    tok.Decode(ids, !special).status().IgnoreError();
  }
  // Every id of a small vocabulary, and the ids just outside it.
  std::vector<int32_t> ids;
  const int64_t vocab = tok.vocab_size();
  for (int64_t id = -1; id <= vocab && id < 512; ++id) ids.push_back(static_cast<int32_t>(id));
  tok.Decode(ids, false).status().IgnoreError();
  for (const int32_t id : ids) {
    const std::string token = tok.IdToToken(id);
    (void)tok.TokenToId(token);
    (void)tok.IsSpecial(id);
  }
  return 0;
}
