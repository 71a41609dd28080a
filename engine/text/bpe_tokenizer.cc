// HF tokenizer.json BPE: parsing of the supported subset and encode / decode. Two flavours:
//   byte-level (GPT-2 / Llama-3 / Qwen2): text bytes map to printable symbols, regex pre-tokenisation;
//   SentencePiece-style (Llama-2 / Mistral): spaces become U+2581 "▁", symbols are characters, and
//   characters missing from the vocabulary fall back to <0xHH> byte tokens.
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "base/file_util.h"
#include "engine/text/tokenizer.h"

namespace tributary {

namespace {

// Unicode NFC of `text` (utf8proc). Invalid UTF-8 is returned unchanged: HF tokenizers only ever see
// valid strings, and the byte-level path must stay lossless for arbitrary bytes.
std::string Nfc(std::string_view text) {
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &mapped, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return std::string(text);
  std::string out(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
  return out;
}

using nlohmann::json;

constexpr const char* kMetaspace = "\xe2\x96\x81";  // U+2581 '▁'

constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// One pre-tokenisation step, applied to every piece produced by the previous steps.
struct PreStep {
  bool byte_level = false;  // ByteLevel: optional prefix space, optional GPT-2 split
  bool add_prefix_space = false;
  bool use_regex = false;
  PretokenizePattern pattern = PretokenizePattern::kGpt2;  // Split (or ByteLevel with use_regex)
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class BpeTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  Result<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  using Tokenizer::Decode;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  std::optional<int32_t> TokenToId(std::string_view token) const override {
    auto it = token_to_id_.find(std::string(token));
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
  }
  std::string IdToToken(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? id_to_token_[static_cast<size_t>(id)] : std::string();
  }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && is_special_[static_cast<size_t>(id)];
  }
  Status SaveToDir(const std::string& dir) const override;

  static Result<std::unique_ptr<Tokenizer>> Parse(const std::string& text, const std::string& config_text,
                                                  const std::string& source);

 private:
  Status ParseModel(const json& model, const std::string& source);
  Status ParsePreTokenizer(const json& pt, const std::string& source);
  Status ParsePostProcessor(const json& pp, const std::string& source);
  Status ParseNormalizer(const json& n, const std::string& source);
  Status ParseDecoder(const json& d, const std::string& source);
  void MergeSymbols(std::vector<int32_t>* ids) const;
  bool EncodeWhole(const std::string& symbols, std::vector<int32_t>* out) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  void EncodeChars(std::string_view word, std::vector<int32_t>* out) const;
  void EncodeOrdinary(std::string_view text, bool at_start, std::vector<int32_t>* out) const;
  std::string ByteLevelBytes(const std::string& token) const;
  void SetToken(int32_t id, const std::string& token);

  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> is_special_;
  std::vector<bool> is_added_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left, right) -> (rank, merged id)
  std::array<int32_t, 256> byte_ids_{};
  std::array<uint8_t, 512> symbol_bytes_{};   // code point (< 0x144) of a byte-level symbol -> byte
  std::vector<AddedToken> added_;             // longest content first
  std::array<bool, 256> added_first_byte_{};  // bytes that start some added token
  std::vector<PreStep> steps_;
  bool ignore_merges_ = false;
  // SentencePiece-style settings (byte_level_ false).
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  std::array<int32_t, 256> fallback_ids_{};  // ids of <0x00> .. <0xFF>
  bool norm_nfc_ = false;                    // normalizer NFC
  bool norm_prepend_ = false;                // normalizer Prepend("▁"): every segment
  bool norm_replace_ = false;                // normalizer Replace(" " -> "▁")
  bool metaspace_ = false;                   // Metaspace pre-tokenizer
  enum class PrependScheme { kNever, kFirst, kAlways } meta_prepend_ = PrependScheme::kAlways;
  bool meta_split_ = false;
  bool decode_metaspace_ = false;  // decoder turns "▁" back into spaces
  int strip_leading_spaces_ = 0;   // decoder Strip(" ", start) / Metaspace prefix removal
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  std::string json_text_, config_text_;
};

Status Unsupported(const std::string& source, const std::string& what) {
  return Status::InvalidArgument(source + ": " + what);
}

void BpeTokenizer::SetToken(int32_t id, const std::string& token) {
  if (static_cast<size_t>(id) >= id_to_token_.size()) {
    id_to_token_.resize(static_cast<size_t>(id) + 1);
    is_special_.resize(static_cast<size_t>(id) + 1, false);
    is_added_.resize(static_cast<size_t>(id) + 1, false);
  }
  id_to_token_[static_cast<size_t>(id)] = token;
  token_to_id_[token] = id;
}

Status BpeTokenizer::ParseModel(const json& model, const std::string& source) {
  if (!model.is_object()) return Unsupported(source, "'model' is missing or not an object");
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") return Unsupported(source, "model.type '" + type + "' is not supported (only byte-level BPE)");
  // A flag of the wrong type would silently change how text is split: refused, like a missing field.
  for (const char* flag : {"byte_fallback", "fuse_unk", "ignore_merges"})
    if (model.contains(flag) && !model[flag].is_boolean() && !model[flag].is_null())
      return Unsupported(source, std::string("model.") + flag + ": expected true or false, got " + model[flag].dump());
  if (model.contains("unk_token") && !model["unk_token"].is_string() && !model["unk_token"].is_null())
    return Unsupported(source, "model.unk_token: expected a string or null, got " + model["unk_token"].dump());
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean())
    byte_fallback_ = model["byte_fallback"].get<bool>();
  if (byte_fallback_ && byte_level_)
    return Unsupported(source, "model.byte_fallback together with a ByteLevel pre_tokenizer is not supported");
  if (model.contains("fuse_unk") && model["fuse_unk"].is_boolean()) fuse_unk_ = model["fuse_unk"].get<bool>();
  if (model.contains("dropout") && !model["dropout"].is_null())
    return Unsupported(source, "model.dropout is not supported");
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(field) && model[field].is_string() && !model[field].get<std::string>().empty())
      return Unsupported(source, std::string("model.") + field + " is not supported");
  }
  if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean())
    ignore_merges_ = model["ignore_merges"].get<bool>();
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return Unsupported(source, "model.vocab is missing or not an object");
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() >= (1 << 24))
      return Unsupported(source, "model.vocab['" + it.key() + "']: expected a non-negative id");
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    // Two tokens with one id would decode that id to whichever came last.
    if (static_cast<size_t>(id) < id_to_token_.size()) {
      auto prev = token_to_id_.find(id_to_token_[static_cast<size_t>(id)]);
      if (prev != token_to_id_.end() && prev->second == id)
        return Unsupported(source, "model.vocab['" + it.key() + "']: id " + std::to_string(id) +
                                       " is also the id of '" + id_to_token_[static_cast<size_t>(id)] + "'");
    }
    SetToken(id, it.key());
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = token_to_id_.find(model["unk_token"].get<std::string>());
    if (it == token_to_id_.end()) return Unsupported(source, "model.unk_token is not in model.vocab");
    unk_id_ = it->second;
  }
  if (!byte_level_) {
    if (byte_fallback_) {
      char name[8];
      for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto it = token_to_id_.find(name);
        if (it == token_to_id_.end())
          return Unsupported(source, std::string("model.byte_fallback is set but model.vocab lacks ") + name);
        fallback_ids_[static_cast<size_t>(b)] = it->second;
      }
    } else if (unk_id_ < 0) {
      return Unsupported(source,
                         "model has neither byte_fallback nor unk_token (characters outside the vocabulary "
                         "could not be encoded)");
    }
  }
  for (int b = 0; b < 256 && byte_level_; ++b) {
    const std::string& sym = ByteLevelSymbol(static_cast<uint8_t>(b));
    auto it = token_to_id_.find(sym);
    if (it == token_to_id_.end())
      return Unsupported(source, "model.vocab lacks the byte-level symbol of byte " + std::to_string(b) +
                                     " (not a byte-level BPE vocabulary)");
    byte_ids_[static_cast<size_t>(b)] = it->second;
    // Byte-level symbols are code points below 0x144; remember their byte for decoding.
    const auto* u = reinterpret_cast<const unsigned char*>(sym.data());
    const uint32_t cp = sym.size() == 1 ? u[0] : ((u[0] & 0x1fu) << 6) | (u[1] & 0x3fu);
    symbol_bytes_[cp] = static_cast<uint8_t>(b);
  }
  if (!model.contains("merges") || !model["merges"].is_array())
    return Unsupported(source, "model.merges is missing or not a list");
  int32_t rank = 0;
  for (const json& m : model["merges"]) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 >= s.size() || s.find(' ', space + 1) != s.npos)
        return Unsupported(source, "model.merges[" + std::to_string(rank) +
                                       "]: expected \"left right\" (two tokens, one space), got '" + s + "'");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Unsupported(source, "model.merges[" + std::to_string(rank) + "]: expected a string or a pair of strings");
    }
    auto l = token_to_id_.find(left), r = token_to_id_.find(right), merged = token_to_id_.find(left + right);
    if (l == token_to_id_.end() || r == token_to_id_.end() || merged == token_to_id_.end()) {
      const std::string missing = l == token_to_id_.end() ? left : r == token_to_id_.end() ? right : left + right;
      return Unsupported(source, "model.merges[" + std::to_string(rank) + "]: '" + left + " " + right +
                                     "' uses a token missing from model.vocab: '" + missing + "'");
    }
    merges_.emplace(PairKey(l->second, r->second), std::make_pair(rank, merged->second));
    ++rank;
  }
  return Status::OK();
}

Status BpeTokenizer::ParsePreTokenizer(const json& pt, const std::string& source) {
  if (pt.is_null()) return Status::OK();
  const std::string type = pt.value("type", std::string());
  if (type == "Sequence") {
    if (!pt.contains("pretokenizers") || !pt["pretokenizers"].is_array())
      return Unsupported(source, "pre_tokenizer Sequence without 'pretokenizers'");
    for (const json& p : pt["pretokenizers"]) TRIB_RETURN_IF_ERROR(ParsePreTokenizer(p, source));
    return Status::OK();
  }
  PreStep step;
  if (type == "ByteLevel") {
    step.byte_level = true;
    step.add_prefix_space = pt.value("add_prefix_space", false);
    step.use_regex = pt.value("use_regex", true);
    step.pattern = PretokenizePattern::kGpt2;
  } else if (type == "Split") {
    std::string regex;
    if (pt.contains("pattern") && pt["pattern"].is_object()) {
      if (pt["pattern"].contains("Regex")) regex = pt["pattern"]["Regex"].get<std::string>();
      if (pt["pattern"].contains("String"))
        return Unsupported(source, "pre_tokenizer Split with a String pattern is not supported");
    }
    if (regex == kGpt2Regex) {
      step.pattern = PretokenizePattern::kGpt2;
    } else if (regex == kLlama3Regex) {
      step.pattern = PretokenizePattern::kLlama3;
    } else if (regex == kQwen2Regex) {
      step.pattern = PretokenizePattern::kQwen2;
    } else {
      return Unsupported(
          source, "pre_tokenizer Split regex '" + regex + "' is not supported (known: GPT-2, Llama-3, Qwen2 patterns)");
    }
    const std::string behavior = pt.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated" || pt.value("invert", false))
      return Unsupported(source, "pre_tokenizer Split behavior '" + behavior + "' is not supported (only Isolated)");
    step.use_regex = true;
  } else {
    if (type == "Metaspace") {
      if (pt.value("replacement", std::string(kMetaspace)) != kMetaspace)
        return Unsupported(source, "pre_tokenizer Metaspace replacement other than U+2581 is not supported");
      metaspace_ = true;
      meta_split_ = pt.value("split", true);
      const std::string scheme =
          pt.value("prepend_scheme", std::string(pt.value("add_prefix_space", true) ? "always" : "never"));
      if (scheme == "first") {
        meta_prepend_ = PrependScheme::kFirst;
      } else if (scheme == "always") {
        meta_prepend_ = PrependScheme::kAlways;
      } else if (scheme == "never") {
        meta_prepend_ = PrependScheme::kNever;
      } else {
        return Unsupported(source, "pre_tokenizer Metaspace prepend_scheme '" + scheme + "' is not supported");
      }
      return Status::OK();
    }
    return Unsupported(source, "pre_tokenizer '" + type + "' is not supported (ByteLevel, Split, Metaspace, Sequence)");
  }
  steps_.push_back(step);
  return Status::OK();
}

Status BpeTokenizer::ParsePostProcessor(const json& pp, const std::string& source) {
  if (pp.is_null()) return Status::OK();
  const std::string type = pp.value("type", std::string());
  if (type == "Sequence") {
    if (!pp.contains("processors") || !pp["processors"].is_array())
      return Unsupported(source, "post_processor Sequence without 'processors'");
    for (const json& p : pp["processors"]) TRIB_RETURN_IF_ERROR(ParsePostProcessor(p, source));
    return Status::OK();
  }
  if (type == "ByteLevel") return Status::OK();  // only adjusts offsets
  if (type != "TemplateProcessing")
    return Unsupported(source, "post_processor '" + type + "' is not supported (TemplateProcessing, ByteLevel)");
  if (!pp.contains("single") || !pp["single"].is_array())
    return Unsupported(source, "post_processor TemplateProcessing without 'single'");
  bool seen_sequence = false;
  for (const json& item : pp["single"]) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken"))
      return Unsupported(source, "post_processor TemplateProcessing: unknown item " + item.dump());
    const std::string name = item["SpecialToken"].value("id", std::string());
    std::vector<int32_t> ids;
    if (pp.contains("special_tokens") && pp["special_tokens"].contains(name) &&
        pp["special_tokens"][name].contains("ids")) {
      for (const json& id : pp["special_tokens"][name]["ids"]) {
        // get<int32_t> of a float such as 2e68 is undefined behaviour, not an exception (found by fuzz_tokenizer).
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
          return Unsupported(source, "post_processor TemplateProcessing: special token '" + name + "' has id " +
                                         id.dump() + " (expected an integer token id)");
        ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else if (auto id = TokenToId(name)) {
      ids.push_back(*id);
    } else {
      return Unsupported(source, "post_processor TemplateProcessing: unknown special token '" + name + "'");
    }
    for (int32_t id : ids) (seen_sequence ? suffix_ids_ : prefix_ids_).push_back(id);
  }
  return Status::OK();
}

bool HasByteLevelDecoder(const json& d) {
  if (!d.is_object()) return false;
  const std::string type = d.value("type", std::string());
  if (type == "ByteLevel") return true;
  if (type == "Sequence" && d.contains("decoders") && d["decoders"].is_array()) {
    for (const json& sub : d["decoders"]) {
      if (HasByteLevelDecoder(sub)) return true;
    }
  }
  return false;
}

// The "String" of a Replace pattern ("" when it is a regex).
std::string ReplacePattern(const json& r) {
  if (r.contains("pattern") && r["pattern"].is_object() && r["pattern"].contains("String"))
    return r["pattern"]["String"].get<std::string>();
  return "";
}

Status BpeTokenizer::ParseNormalizer(const json& n, const std::string& source) {
  if (n.is_null()) return Status::OK();
  const std::string type = n.value("type", std::string());
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& sub : n["normalizers"]) TRIB_RETURN_IF_ERROR(ParseNormalizer(sub, source));
    return Status::OK();
  }
  if (type == "NFC") {
    norm_nfc_ = true;
    return Status::OK();
  }
  if (type == "Prepend" && n.value("prepend", std::string()) == kMetaspace) {
    norm_prepend_ = true;
    return Status::OK();
  }
  if (type == "Replace" && ReplacePattern(n) == " " && n.value("content", std::string()) == kMetaspace) {
    norm_replace_ = true;
    return Status::OK();
  }
  return Unsupported(source, "normalizer '" + type + "' is not supported (null, NFC, SentencePiece Prepend/Replace)");
}

Status BpeTokenizer::ParseDecoder(const json& d, const std::string& source) {
  if (byte_level_) {
    if (!HasByteLevelDecoder(d)) return Unsupported(source, "decoder '" + d.dump() + "' is not supported (ByteLevel)");
    return Status::OK();
  }
  const std::string type = d.is_object() ? d.value("type", std::string()) : std::string();
  if (type == "Sequence" && d.contains("decoders") && d["decoders"].is_array()) {
    for (const json& sub : d["decoders"]) TRIB_RETURN_IF_ERROR(ParseDecoder(sub, source));
    return Status::OK();
  }
  if (type == "Metaspace") {
    decode_metaspace_ = true;
    const std::string scheme =
        d.value("prepend_scheme", std::string(d.value("add_prefix_space", true) ? "always" : "never"));
    if (scheme != "never") strip_leading_spaces_ = 1;
    return Status::OK();
  }
  if (type == "Replace" && ReplacePattern(d) == kMetaspace && d.value("content", std::string()) == " ") {
    decode_metaspace_ = true;
    return Status::OK();
  }
  if (type == "ByteFallback" || type == "Fuse") return Status::OK();
  if (type == "Strip" && d.value("content", std::string()) == " " && d.value("stop", 0) == 0) {
    strip_leading_spaces_ = d.value("start", 0);
    return Status::OK();
  }
  return Unsupported(source, "decoder '" + (d.is_null() ? std::string("null") : d.dump()) +
                                 "' is not supported (ByteLevel; or Metaspace / Replace, ByteFallback, Fuse, Strip)");
}

// A special-token entry of tokenizer_config.json: "<s>", {"content": "<s>", ...} or null.
std::string SpecialTokenName(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

Result<std::unique_ptr<Tokenizer>> BpeTokenizer::Parse(const std::string& text, const std::string& config_text,
                                                       const std::string& source) {
  auto tok = std::make_unique<BpeTokenizer>();
  TRIB_ASSIGN_OR_RETURN(json j, ParseJsonObject(text, source));
  try {
    TRIB_RETURN_IF_ERROR(tok->ParseNormalizer(j.value("normalizer", json()), source));
    TRIB_RETURN_IF_ERROR(tok->ParsePreTokenizer(j.value("pre_tokenizer", json()), source));
    for (const PreStep& s : tok->steps_) tok->byte_level_ = tok->byte_level_ || s.byte_level;
    const bool sentencepiece = tok->metaspace_ || tok->norm_replace_;
    if (tok->byte_level_ && (sentencepiece || tok->norm_prepend_))
      return Unsupported(source, "mixing ByteLevel with Metaspace / SentencePiece normalizers is not supported");
    if (!tok->byte_level_ && !sentencepiece)
      return Unsupported(source,
                         "pre_tokenizer has no ByteLevel step and there is no Metaspace / SentencePiece "
                         "normalizer (unsupported tokenizer family)");
    if (!tok->byte_level_ && !tok->steps_.empty())
      return Unsupported(source, "regex Split pre_tokenizers are only supported with ByteLevel");
    TRIB_RETURN_IF_ERROR(tok->ParseDecoder(j.value("decoder", json()), source));
    if (!tok->byte_level_ && !tok->decode_metaspace_)
      return Unsupported(source, "decoder does not turn U+2581 back into spaces (expected Metaspace or Replace)");
    TRIB_RETURN_IF_ERROR(tok->ParseModel(j.value("model", json()), source));
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
        const json& a = j["added_tokens"][i];
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
            !a["id"].is_number_integer() || (a.contains("special") && !a["special"].is_boolean()))
          return Unsupported(
              source, where + ": expected {\"content\": string, \"id\": integer, \"special\": bool}, got " + a.dump());
        AddedToken t;
        t.content = a["content"].get<std::string>();
        const int64_t id = a["id"].get<int64_t>();
        t.id = static_cast<int32_t>(std::clamp<int64_t>(id, -1, 1 << 24));
        t.special = a.value("special", false);
        if (t.id < 0 || t.id >= (1 << 24) || t.content.empty())
          return Unsupported(source, where + ": bad entry " + a.dump());
        tok->SetToken(t.id, t.content);
        tok->is_special_[static_cast<size_t>(t.id)] = t.special;
        tok->is_added_[static_cast<size_t>(t.id)] = true;
        tok->added_first_byte_[static_cast<uint8_t>(t.content[0])] = true;
        tok->added_.push_back(std::move(t));
      }
    }
    std::stable_sort(tok->added_.begin(), tok->added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    TRIB_RETURN_IF_ERROR(tok->ParsePostProcessor(j.value("post_processor", json()), source));

    json config;
    if (!config_text.empty()) {
      try {
        config = json::parse(config_text);
      } catch (const json::exception&) {
        return Status::InvalidArgument(source + ": tokenizer_config.json / special_tokens_map.json is invalid JSON");
      }
    }
    auto resolve = [&](const char* key, int32_t* out) -> Status {
      const std::string name = SpecialTokenName(config, key);
      if (name.empty()) return Status::OK();
      auto id = tok->TokenToId(name);
      if (!id) return Unsupported(source, std::string("tokenizer config ") + key + " '" + name + "' is not a token");
      *out = *id;
      return Status::OK();
    };
    TRIB_RETURN_IF_ERROR(resolve("bos_token", &tok->bos_id_));
    TRIB_RETURN_IF_ERROR(resolve("eos_token", &tok->eos_id_));
    TRIB_RETURN_IF_ERROR(resolve("pad_token", &tok->pad_id_));
    // Without a config: BOS is what the template prepends; EOS one of the usual names.
    if (tok->bos_id_ < 0 && !tok->prefix_ids_.empty()) tok->bos_id_ = tok->prefix_ids_[0];
    if (tok->eos_id_ < 0) {
      for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"}) {
        if (auto id = tok->TokenToId(name)) {
          tok->eos_id_ = *id;
          break;
        }
      }
    }
  } catch (const json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    return Status::InvalidArgument(source + ": unexpected structure: " + what);
  }
  tok->json_text_ = text;
  tok->config_text_ = config_text;
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

// Repeatedly merges the leftmost adjacent pair of lowest merge rank until no pair has a merge.
void BpeTokenizer::MergeSymbols(std::vector<int32_t>* ids) const {
  while (ids->size() > 1) {
    int32_t best_rank = INT32_MAX, best_merged = -1;
    size_t best_pos = 0;
    for (size_t i = 0; i + 1 < ids->size(); ++i) {
      auto it = merges_.find(PairKey((*ids)[i], (*ids)[i + 1]));
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_merged = it->second.second;
        best_pos = i;
      }
    }
    if (best_merged < 0) break;
    (*ids)[best_pos] = best_merged;
    ids->erase(ids->begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
  }
}

// ignore_merges: a pre-token that is itself a (non-added) vocabulary entry becomes that one token.
bool BpeTokenizer::EncodeWhole(const std::string& symbols, std::vector<int32_t>* out) const {
  if (!ignore_merges_) return false;
  auto it = token_to_id_.find(symbols);
  if (it == token_to_id_.end() || is_added_[static_cast<size_t>(it->second)]) return false;
  out->push_back(it->second);
  return true;
}

// Byte-level BPE on one pre-token: start from the byte symbols.
void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    std::string symbols;
    for (char c : word) symbols += ByteLevelSymbol(static_cast<uint8_t>(c));
    if (EncodeWhole(symbols, out)) return;
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  for (char c : word) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
  MergeSymbols(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

// Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes).
size_t Utf8Length(unsigned char c) {
  if ((c & 0xe0) == 0xc0) return 2;
  if ((c & 0xf0) == 0xe0) return 3;
  if ((c & 0xf8) == 0xf0) return 4;
  return 1;
}

// SentencePiece-style BPE on one piece: characters are the symbols; a character outside the
// vocabulary becomes its <0xHH> byte tokens (byte_fallback) or unk (fused when fuse_unk).
void BpeTokenizer::EncodeChars(std::string_view word, std::vector<int32_t>* out) const {
  if (EncodeWhole(std::string(word), out)) return;
  std::vector<int32_t> ids;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = std::min(Utf8Length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    auto it = token_to_id_.find(std::string(word.substr(pos, len)));
    if (it != token_to_id_.end() && !is_added_[static_cast<size_t>(it->second)]) {
      ids.push_back(it->second);
    } else if (byte_fallback_) {
      for (size_t k = 0; k < len; ++k) ids.push_back(fallback_ids_[static_cast<uint8_t>(word[pos + k])]);
    } else if (!(fuse_unk_ && !ids.empty() && ids.back() == unk_id_)) {
      ids.push_back(unk_id_);
    }
    pos += len;
  }
  MergeSymbols(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

// Text between added tokens (at_start: it begins the input): normalisation, pre-tokenisation, BPE.
void BpeTokenizer::EncodeOrdinary(std::string_view raw, bool at_start, std::vector<int32_t>* out) const {
  if (raw.empty()) return;
  const std::string normalized = norm_nfc_ ? Nfc(raw) : std::string();
  const std::string_view text = norm_nfc_ ? std::string_view(normalized) : raw;
  if (!byte_level_) {
    // SentencePiece style: spaces become "▁", a "▁" is prepended per the normalizer / Metaspace rules.
    std::string s;
    if (norm_prepend_) s = kMetaspace;
    for (char c : text) {
      if (c == ' ' && (norm_replace_ || metaspace_)) {
        s += kMetaspace;
      } else {
        s += c;
      }
    }
    if (metaspace_ && s.rfind(kMetaspace, 0) != 0 &&
        (meta_prepend_ == PrependScheme::kAlways || (meta_prepend_ == PrependScheme::kFirst && at_start)))
      s.insert(0, kMetaspace);
    if (!metaspace_ || !meta_split_) {
      EncodeChars(s, out);
      return;
    }
    // Split before every "▁" (the delimiter starts the next piece).
    const std::string_view view(s), meta(kMetaspace);
    size_t begin = 0;
    for (size_t pos = view.find(meta, 1); pos != std::string_view::npos; pos = view.find(meta, pos + meta.size())) {
      EncodeChars(view.substr(begin, pos - begin), out);
      begin = pos;
    }
    EncodeChars(view.substr(begin), out);
    return;
  }
  std::vector<std::string> pieces = {std::string(text)};
  for (const PreStep& step : steps_) {
    std::vector<std::string> next;
    for (std::string& piece : pieces) {
      if (step.byte_level && step.add_prefix_space && (piece.empty() || piece[0] != ' ')) piece.insert(0, " ");
      if (!step.use_regex) {
        next.push_back(std::move(piece));
        continue;
      }
      for (std::string_view p : Pretokenize(piece, step.pattern)) next.emplace_back(p);
    }
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) EncodeWord(piece, out);
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = prefix_ids_;
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* match = nullptr;
    for (const AddedToken& a : added_) {
      if (!added_first_byte_[static_cast<uint8_t>(text[pos])]) break;  // longest first
      if (text.compare(pos, a.content.size(), a.content) == 0) {
        match = &a;
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    EncodeOrdinary(text.substr(start, pos - start), start == 0, &ids);
    ids.push_back(match->id);
    pos += match->content.size();
    start = pos;
  }
  EncodeOrdinary(text.substr(start), start == 0, &ids);
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

// Byte of a "<0xHH>" token, or -1.
int ByteFallbackValue(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = token[static_cast<size_t>(k)];
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Byte-level token -> its bytes; a token with a symbol outside the byte table is kept verbatim (as HF).
std::string BpeTokenizer::ByteLevelBytes(const std::string& token) const {
  std::string bytes;
  for (size_t k = 0; k < token.size();) {
    const auto* u = reinterpret_cast<const unsigned char*>(token.data() + k);
    uint32_t cp = 0;
    size_t len = 1;
    if (u[0] < 0x80) {
      cp = u[0];
    } else if ((u[0] & 0xe0) == 0xc0 && k + 1 < token.size()) {
      cp = ((u[0] & 0x1fu) << 6) | (u[1] & 0x3fu);
      len = 2;
    } else {
      return token;
    }
    const uint8_t b = cp < symbol_bytes_.size() ? symbol_bytes_[cp] : 0;
    if (cp >= symbol_bytes_.size() || ByteLevelSymbol(b) != token.substr(k, len)) return token;
    bytes.push_back(static_cast<char>(b));
    k += len;
  }
  return bytes;
}

Result<std::string> BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || id_to_token_[static_cast<size_t>(id)].empty())
      return Status::InvalidArgument("tokenizer: token id " + std::to_string(id) + " is out of range or unused");
    const size_t i = static_cast<size_t>(id);
    if (is_special_[i] && skip_special_tokens) continue;
    const std::string& token = id_to_token_[i];
    if (is_added_[i]) {
      out += token;
    } else if (byte_level_) {
      out += ByteLevelBytes(token);
    } else if (int b = byte_fallback_ ? ByteFallbackValue(token) : -1; b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      // "▁" back to spaces.
      const std::string_view meta(kMetaspace);
      for (size_t k = 0; k < token.size();) {
        if (token.compare(k, meta.size(), meta) == 0) {
          out += ' ';
          k += meta.size();
        } else {
          out += token[k++];
        }
      }
    }
  }
  // The space the encoder prepended (Strip / Metaspace decoder).
  for (int k = 0; k < strip_leading_spaces_ && !out.empty() && out[0] == ' '; ++k) out.erase(0, 1);
  return out;
}

Status BpeTokenizer::SaveToDir(const std::string& dir) const {
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), json_text_));
  if (!config_text_.empty())
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, "tokenizer_config.json"), config_text_));
  return Status::OK();
}

}  // namespace

const char* PretokenizeRegex(PretokenizePattern pattern) {
  switch (pattern) {
    case PretokenizePattern::kGpt2: return kGpt2Regex;
    case PretokenizePattern::kLlama3: return kLlama3Regex;
    case PretokenizePattern::kQwen2: return kQwen2Regex;
  }
  return kGpt2Regex;
}

Result<std::unique_ptr<Tokenizer>> ParseHfTokenizer(const std::string& tokenizer_json,
                                                    const std::string& tokenizer_config_json,
                                                    const std::string& source) {
  return BpeTokenizer::Parse(tokenizer_json, tokenizer_config_json, source);
}

}  // namespace tributary
