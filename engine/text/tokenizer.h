// Tokenizers: HF tokenizer.json BPE (byte-level as in GPT-2 / Llama-3 / Qwen2, or SentencePiece-style
// as in Llama-2 / Mistral) and a 256-byte tokenizer for models created by tributary.
//
// Supported tokenizer.json subset (anything else is an InvalidArgument naming the file and component):
//   model:          BPE with vocab + merges ("a b" strings or ["a", "b"] pairs), optional
//                   ignore_merges, byte_fallback (<0xHH> tokens), unk_token + fuse_unk; no dropout,
//                   no continuing_subword_prefix / end_of_word_suffix.
//   byte-level:     pre_tokenizer ByteLevel (GPT-2 regex or none), Split with the GPT-2, Llama-3 or
//                   Qwen2 regex (behavior Isolated), or a Sequence of those; decoder ByteLevel.
//   SentencePiece:  normalizer Prepend("▁") + Replace(" " -> "▁") (legacy Llama-2 files) or pre_tokenizer
//                   Metaspace (prepend_scheme first / always / never, split); decoder Metaspace or
//                   Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", n, 0).
//   normalizer:     also NFC (utf8proc), applied to the text between added tokens.
//   post_processor: null, ByteLevel, TemplateProcessing (special tokens around $A), or a Sequence.
//   added_tokens:   matched verbatim (longest first) before normalisation and pre-tokenisation;
//                   lstrip / rstrip / single_word are ignored.
// Decoding returns the raw bytes (no U+FFFD replacement), so decode(encode(x)) == x for any bytes
// whenever the encoding is lossless (byte-level always; SentencePiece-style except for added tokens).
// The hand-written regex scanner takes \p{L} and \p{N} from utf8proc's general categories (its Unicode
// version may trail HF tokenizers' for code points assigned since). A SentencePiece model file
// (tokenizer.model) alone is not supported.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace tributary {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`; with add_special_tokens, the tokenizer's BOS/EOS template is applied.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // Text of `ids`; InvalidArgument for an id outside [0, vocab_size()).
  virtual Result<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;
  Result<std::string> Decode(std::span<const int32_t> ids) const { return Decode(ids, false); }

  // One more than the largest id.
  virtual int64_t vocab_size() const = 0;
  // -1 when the tokenizer has no such token.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  // Id of a token given by its (vocabulary) string, e.g. "<eos>"; nullopt when unknown.
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  // Vocabulary string of `id` ("" when out of range).
  virtual std::string IdToToken(int32_t id) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;

  // Writes tokenizer.json and tokenizer_config.json into `dir` (HF-loadable).
  virtual Status SaveToDir(const std::string& dir) const = 0;
};

// Byte tokenizer for models initialised here: <pad>=0, <bos>=1, <eos>=2, byte b = 3 + b.
// (Ids 1 and 2 match LlamaConfig's default bos/eos ids.)
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int32_t kPadId = 0;
  static constexpr int32_t kBosId = 1;
  static constexpr int32_t kEosId = 2;
  static constexpr int32_t kByteOffset = 3;
  static constexpr int64_t kVocabSize = 259;

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  Result<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  using Tokenizer::Decode;
  int64_t vocab_size() const override { return kVocabSize; }
  int32_t bos_id() const override { return kBosId; }
  int32_t eos_id() const override { return kEosId; }
  int32_t pad_id() const override { return kPadId; }
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  bool IsSpecial(int32_t id) const override { return id >= 0 && id < kByteOffset; }
  Status SaveToDir(const std::string& dir) const override;

  // The equivalent HF tokenizer.json (BPE over the 256 byte-level symbols, no merges, specials as
  // added tokens, TemplateProcessing adding <bos>) and tokenizer_config.json.
  static std::string TokenizerJson();
  static std::string TokenizerConfigJson();
};

// Parses tokenizer.json text (+ optional tokenizer_config.json text, "" when absent, which names
// bos/eos/pad tokens). `source` names the file in errors.
Result<std::unique_ptr<Tokenizer>> ParseHfTokenizer(const std::string& tokenizer_json,
                                                    const std::string& tokenizer_config_json,
                                                    const std::string& source);

// Loads dir/tokenizer.json (+ dir/tokenizer_config.json or dir/special_tokens_map.json when present).
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

// GPT-2 byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 upward.
// Returns the UTF-8 text of byte b's symbol.
const std::string& ByteLevelSymbol(uint8_t b);

// Pre-tokenisation with one of the known split regexes (exposed for tests).
enum class PretokenizePattern { kGpt2, kLlama3, kQwen2 };
std::vector<std::string_view> Pretokenize(std::string_view text, PretokenizePattern pattern);
// The HF Split regex of `pattern`, exactly as tokenizer.json spells it (what the parser recognises).
const char* PretokenizeRegex(PretokenizePattern pattern);

}  // namespace tributary
