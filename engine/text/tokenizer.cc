// ByteTokenizer, the byte-level symbol table and LoadTokenizer (the BPE model is in bpe_tokenizer.cc).
#include "engine/text/tokenizer.h"

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/file_util.h"

namespace tributary {

namespace {

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::array<std::string, 256> BuildByteSymbols() {
  // Printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) keep their code point; the
  // other 68 bytes take U+0100, U+0101, ... in byte order (GPT-2's bytes_to_unicode).
  std::array<std::string, 256> symbols;
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    AppendUtf8(printable ? b : next++, &symbols[b]);
  }
  return symbols;
}

constexpr const char* kByteSpecials[] = {"<pad>", "<bos>", "<eos>"};

}  // namespace

const std::string& ByteLevelSymbol(uint8_t b) {
  static const std::array<std::string, 256> symbols = BuildByteSymbols();
  return symbols[b];
}

std::vector<int32_t> ByteTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 1);
  if (add_special_tokens) ids.push_back(kBosId);
  size_t i = 0;
  while (i < text.size()) {
    // Special token strings in the text are the special tokens (as in HF added-token matching).
    bool matched = false;
    if (text[i] == '<') {
      for (int32_t id = 0; id < kByteOffset; ++id) {
        const std::string_view special = kByteSpecials[id];
        if (text.substr(i, special.size()) == special) {
          ids.push_back(id);
          i += special.size();
          matched = true;
          break;
        }
      }
    }
    if (!matched) ids.push_back(kByteOffset + static_cast<unsigned char>(text[i++]));
  }
  return ids;
}

Result<std::string> ByteTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= kVocabSize)
      return Status::InvalidArgument("byte tokenizer: token id " + std::to_string(id) + " is out of range [0, " +
                                     std::to_string(kVocabSize) + ")");
    if (id < kByteOffset) {
      if (!skip_special_tokens) out += kByteSpecials[id];
    } else {
      out.push_back(static_cast<char>(id - kByteOffset));
    }
  }
  return out;
}

std::optional<int32_t> ByteTokenizer::TokenToId(std::string_view token) const {
  for (int32_t id = 0; id < kByteOffset; ++id) {
    if (token == kByteSpecials[id]) return id;
  }
  for (int b = 0; b < 256; ++b) {
    if (token == ByteLevelSymbol(static_cast<uint8_t>(b))) return kByteOffset + b;
  }
  return std::nullopt;
}

std::string ByteTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= kVocabSize) return "";
  if (id < kByteOffset) return kByteSpecials[id];
  return ByteLevelSymbol(static_cast<uint8_t>(id - kByteOffset));
}

std::string ByteTokenizer::TokenizerJson() {
  using nlohmann::ordered_json;
  ordered_json vocab = ordered_json::object();
  ordered_json added = ordered_json::array();
  for (int32_t id = 0; id < kByteOffset; ++id) {
    vocab[kByteSpecials[id]] = id;
    added.push_back({{"id", id},
                     {"content", kByteSpecials[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  for (int b = 0; b < 256; ++b) vocab[ByteLevelSymbol(static_cast<uint8_t>(b))] = kByteOffset + b;
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  const ordered_json bos_item = {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {bos_item, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                         {"pair",
                          {bos_item,
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                           bos_item,
                           {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
                         {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {kBosId}}, {"tokens", {"<bos>"}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", ordered_json::array()}};
  return j.dump(2) + "\n";
}

std::string ByteTokenizer::TokenizerConfigJson() {
  nlohmann::ordered_json j;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  j["bos_token"] = "<bos>";
  j["eos_token"] = "<eos>";
  j["pad_token"] = "<pad>";
  j["add_bos_token"] = true;
  j["add_eos_token"] = false;
  j["clean_up_tokenization_spaces"] = false;
  j["model_max_length"] = 1000000000;
  return j.dump(2) + "\n";
}

Status ByteTokenizer::SaveToDir(const std::string& dir) const {
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), TokenizerJson()));
  return WriteFileAtomic(JoinPath(dir, "tokenizer_config.json"), TokenizerConfigJson());
}

Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "tokenizer.json");
  Result<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    std::error_code ec;
    if (std::filesystem::exists(JoinPath(model_dir, "tokenizer.model"), ec))
      return Status::InvalidArgument(path +
                                     ": missing (only tokenizer.model, a SentencePiece model, is present; "
                                     "it is not supported)");
    return text.status();
  }
  // tokenizer_config.json names bos/eos/pad; special_tokens_map.json is the older place for them.
  std::string config;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    Result<std::string> c = ReadFileToString(JoinPath(model_dir, name));
    if (c.ok()) {
      config = std::move(*c);
      break;
    }
  }
  return ParseHfTokenizer(*text, config, path);
}

}  // namespace tributary
