// Byte-level BPE training (see bpe_trainer.h): word counting, incremental pair counts, the JSON files.
#include "engine/text/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace tributary {

namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
int32_t PairLeft(uint64_t key) {
  return static_cast<int32_t>(key >> 32);
}
int32_t PairRight(uint64_t key) {
  return static_cast<int32_t>(key & 0xffffffffu);
}

std::string SymbolString(std::string_view bytes) {
  std::string s;
  for (char c : bytes) s += ByteLevelSymbol(static_cast<uint8_t>(c));
  return s;
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

struct HeapEntry {
  int64_t count;
  uint64_t pair;
};

// The merge loop's state: token bytes by id, the words, pair counts and where each pair occurs.
class MergeState {
 public:
  MergeState(std::vector<std::string> token_bytes, std::vector<Word> words, std::set<std::string> blocked_symbols)
      : token_bytes_(std::move(token_bytes)), words_(std::move(words)), blocked_(std::move(blocked_symbols)) {
    for (size_t t = 0; t < token_bytes_.size(); ++t) {
      if (!token_bytes_[t].empty()) id_of_.emplace(token_bytes_[t], static_cast<int32_t>(t));
    }
    word_stamp_.assign(words_.size(), -1);
    for (size_t w = 0; w < words_.size(); ++w) {
      const std::vector<int32_t>& s = words_[w].symbols;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t key = PairKey(s[i], s[i + 1]);
        pair_count_[key] += words_[w].count;
        where_[key].push_back(static_cast<int32_t>(w));
      }
    }
    for (const auto& [key, count] : pair_count_) heap_.push_back({count, key});
    std::make_heap(heap_.begin(), heap_.end(), Less());
  }

  // Adds merges until the vocabulary holds `vocab_size` tokens (the non-empty entries of token_bytes
  // plus `reserved`) or no pair occurs `min_frequency` times.
  void Run(int64_t vocab_size, int64_t reserved, int64_t min_frequency) {
    int64_t vocab = reserved + static_cast<int64_t>(id_of_.size());
    while (vocab < vocab_size && !heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), Less());
      const HeapEntry top = heap_.back();
      heap_.pop_back();
      auto it = pair_count_.find(top.pair);
      if (it == pair_count_.end() || it->second != top.count) continue;  // stale entry
      if (top.count < min_frequency) break;
      const int32_t left = PairLeft(top.pair), right = PairRight(top.pair);
      std::string merged = token_bytes_[static_cast<size_t>(left)] + token_bytes_[static_cast<size_t>(right)];
      if (blocked_.count(SymbolString(merged)) > 0) {
        // Its vocabulary string would be a special token's: never merged.
        pair_count_.erase(it);
        where_.erase(top.pair);
        continue;
      }
      int32_t id;
      auto existing = id_of_.find(merged);
      if (existing != id_of_.end()) {
        id = existing->second;  // reached by another merge path: same token, no new id
      } else {
        id = static_cast<int32_t>(token_bytes_.size());
        id_of_.emplace(merged, id);
        token_bytes_.push_back(std::move(merged));
        ++vocab;
      }
      merges_.emplace_back(left, right);
      Apply(top.pair, id);
    }
  }

  const std::vector<std::string>& token_bytes() const { return token_bytes_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  int64_t TokenCount() const {
    int64_t n = 0;
    for (const Word& w : words_) n += w.count * static_cast<int64_t>(w.symbols.size());
    return n;
  }

 private:
  // Max-heap order: higher count first; on equal counts the pair whose (left bytes, right bytes) is
  // lexicographically smallest.
  struct LessFn {
    const std::vector<std::string>* bytes;
    bool operator()(const HeapEntry& a, const HeapEntry& b) const {
      if (a.count != b.count) return a.count < b.count;
      const std::string& al = (*bytes)[static_cast<size_t>(PairLeft(a.pair))];
      const std::string& bl = (*bytes)[static_cast<size_t>(PairLeft(b.pair))];
      if (al != bl) return al > bl;
      return (*bytes)[static_cast<size_t>(PairRight(a.pair))] > (*bytes)[static_cast<size_t>(PairRight(b.pair))];
    }
  };
  LessFn Less() const { return LessFn{&token_bytes_}; }

  // Replaces every non-overlapping occurrence (left to right) of `pair` by `id` in the words holding it,
  // and moves the pair counts by the difference.
  void Apply(uint64_t pair, int32_t id) {
    const int32_t left = PairLeft(pair), right = PairRight(pair);
    std::vector<int32_t> holders = std::move(where_[pair]);
    where_.erase(pair);
    ++stamp_;
    deltas_.clear();
    std::vector<int32_t> out;
    for (int32_t w : holders) {
      // `where` lists a word once per occurrence and keeps words that lost the pair since: the stamp
      // visits each once, the scan finds whether it still holds the pair.
      if (word_stamp_[static_cast<size_t>(w)] == stamp_) continue;
      word_stamp_[static_cast<size_t>(w)] = stamp_;
      Word& word = words_[static_cast<size_t>(w)];
      const std::vector<int32_t>& s = word.symbols;
      out.clear();
      bool changed = false;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          out.push_back(id);
          i += 2;
          changed = true;
        } else {
          out.push_back(s[i++]);
        }
      }
      if (!changed) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) deltas_.emplace_back(PairKey(s[i], s[i + 1]), -word.count);
      for (size_t i = 0; i + 1 < out.size(); ++i) {
        const uint64_t key = PairKey(out[i], out[i + 1]);
        deltas_.emplace_back(key, word.count);
        // Only adjacencies with the new token are new to this word.
        if (out[i] == id || out[i + 1] == id) where_[key].push_back(w);
      }
      word.symbols.swap(out);
    }
    // Summed per pair (sorted, not hashed: a hash map cleared per merge costs its bucket count each time).
    std::sort(deltas_.begin(), deltas_.end());
    for (size_t i = 0; i < deltas_.size();) {
      const uint64_t key = deltas_[i].first;
      int64_t d = 0;
      for (; i < deltas_.size() && deltas_[i].first == key; ++i) d += deltas_[i].second;
      if (d == 0) continue;
      int64_t& count = pair_count_[key];
      count += d;
      if (count <= 0) {
        pair_count_.erase(key);
        where_.erase(key);
      } else {
        heap_.push_back({count, key});
        std::push_heap(heap_.begin(), heap_.end(), Less());
      }
    }
  }

  std::vector<std::string> token_bytes_;  // "" for specials (never merged)
  std::unordered_map<std::string, int32_t> id_of_;
  std::vector<Word> words_;
  std::set<std::string> blocked_;
  std::unordered_map<uint64_t, int64_t> pair_count_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;
  std::vector<std::pair<uint64_t, int64_t>> deltas_;
  std::vector<HeapEntry> heap_;
  std::vector<int64_t> word_stamp_;
  int64_t stamp_ = 0;
  std::vector<std::pair<int32_t, int32_t>> merges_;
};

}  // namespace

Status ValidateBpeTrainOptions(const BpeTrainOptions& o) {
  const int64_t minimum = static_cast<int64_t>(o.special_tokens.size()) + 256;
  if (o.vocab_size < minimum)
    return Status::InvalidArgument("bpe trainer: vocab_size " + std::to_string(o.vocab_size) + " is smaller than " +
                                   std::to_string(minimum) + " (" + std::to_string(o.special_tokens.size()) +
                                   " special tokens + 256 bytes)");
  if (o.vocab_size > (1 << 24))
    return Status::InvalidArgument("bpe trainer: vocab_size " + std::to_string(o.vocab_size) + " exceeds 16777216");
  if (o.min_frequency < 1)
    return Status::InvalidArgument("bpe trainer: min_frequency " + std::to_string(o.min_frequency) +
                                   " must be at least 1");
  std::set<std::string> seen;
  for (const std::string& s : o.special_tokens) {
    if (s.empty()) return Status::InvalidArgument("bpe trainer: a special token is empty");
    if (!seen.insert(s).second) return Status::InvalidArgument("bpe trainer: special token '" + s + "' is repeated");
    for (int b = 0; b < 256; ++b) {
      if (s == ByteLevelSymbol(static_cast<uint8_t>(b)))
        return Status::InvalidArgument("bpe trainer: special token '" + s + "' is a byte-level symbol");
    }
  }
  for (const auto& [field, name] : {std::pair<const char*, const std::string*>{"bos_token", &o.bos_token},
                                    {"eos_token", &o.eos_token},
                                    {"pad_token", &o.pad_token}}) {
    if (!name->empty() && seen.count(*name) == 0)
      return Status::InvalidArgument(std::string("bpe trainer: ") + field + " '" + *name +
                                     "' is not one of the special tokens");
  }
  return Status::OK();
}

namespace {

std::string TokenizerJson(const BpeTrainOptions& o, const std::vector<std::string>& token_bytes,
                          const std::vector<std::pair<int32_t, int32_t>>& merges) {
  using nlohmann::ordered_json;
  const size_t n_special = o.special_tokens.size();
  ordered_json vocab = ordered_json::object();
  ordered_json added = ordered_json::array();
  for (size_t id = 0; id < n_special; ++id) {
    vocab[o.special_tokens[id]] = id;
    added.push_back({{"id", id},
                     {"content", o.special_tokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  std::vector<std::string> symbols(token_bytes.size());
  for (size_t id = n_special; id < token_bytes.size(); ++id) {
    symbols[id] = SymbolString(token_bytes[id]);
    vocab[symbols[id]] = id;
  }
  ordered_json merge_list = ordered_json::array();
  for (const auto& [l, r] : merges)
    merge_list.push_back(symbols[static_cast<size_t>(l)] + " " + symbols[static_cast<size_t>(r)]);

  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  // As HF writes Llama-3's: the split regex, then ByteLevel without its own regex.
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", PretokenizeRegex(o.pattern)}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  if (o.bos_token.empty()) {
    j["post_processor"] = nullptr;
  } else {
    const auto bos_id = static_cast<int64_t>(std::find(o.special_tokens.begin(), o.special_tokens.end(), o.bos_token) -
                                             o.special_tokens.begin());
    const ordered_json bos_item = {{"SpecialToken", {{"id", o.bos_token}, {"type_id", 0}}}};
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", {bos_item, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {bos_item,
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          bos_item,
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{o.bos_token, {{"id", o.bos_token}, {"ids", {bos_id}}, {"tokens", {o.bos_token}}}}}}};
  }
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  return j.dump(2) + "\n";
}

std::string TokenizerConfigJson(const BpeTrainOptions& o) {
  nlohmann::ordered_json j;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  auto name = [](const std::string& s) {
    return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
  };
  j["bos_token"] = name(o.bos_token);
  j["eos_token"] = name(o.eos_token);
  j["pad_token"] = name(o.pad_token);
  j["add_bos_token"] = !o.bos_token.empty();
  j["add_eos_token"] = false;
  j["clean_up_tokenization_spaces"] = false;
  j["model_max_length"] = 1000000000;
  return j.dump(2) + "\n";
}

}  // namespace

void BpeTrainer::AddText(std::string_view text) {
  // Special tokens in the text are special tokens when encoding (added tokens match first): they are
  // not part of any word here either. Longest match first, as the encoder.
  std::array<bool, 256> first{};
  for (const std::string& s : options_.special_tokens)
    if (!s.empty()) first[static_cast<uint8_t>(s[0])] = true;
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    size_t len = 0;
    if (first[static_cast<uint8_t>(text[pos])]) {
      for (const std::string& s : options_.special_tokens)
        if (!s.empty() && s.size() > len && text.compare(pos, s.size(), s) == 0) len = s.size();
    }
    if (len == 0) {
      ++pos;
      continue;
    }
    CountSegment(text.substr(start, pos - start));
    pos += len;
    start = pos;
  }
  CountSegment(text.substr(start));
}

void BpeTrainer::CountSegment(std::string_view segment) {
  input_bytes_ += static_cast<int64_t>(segment.size());
  std::string key;
  for (std::string_view piece : Pretokenize(segment, options_.pattern)) {
    key.assign(piece);
    ++word_counts_[key];
  }
}

Result<BpeTrainResult> BpeTrainer::Train() const {
  TRIB_RETURN_IF_ERROR(ValidateBpeTrainOptions(options_));
  const size_t n_special = options_.special_tokens.size();
  std::vector<std::string> token_bytes(n_special);  // specials: "" (never part of a word)
  for (int b = 0; b < 256; ++b) token_bytes.emplace_back(1, static_cast<char>(b));

  // Words in byte order, so nothing below depends on the hash map's iteration order.
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(word_counts_.size());
  for (const auto& [w, c] : word_counts_) sorted.emplace_back(w, c);
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    words[i].count = sorted[i].second;
    words[i].symbols.reserve(sorted[i].first.size());
    for (char c : sorted[i].first)
      words[i].symbols.push_back(static_cast<int32_t>(n_special) + static_cast<uint8_t>(c));
  }

  MergeState state(std::move(token_bytes), std::move(words),
                   std::set<std::string>(options_.special_tokens.begin(), options_.special_tokens.end()));
  state.Run(options_.vocab_size, static_cast<int64_t>(n_special), options_.min_frequency);

  BpeTrainResult result;
  result.tokenizer_json = TokenizerJson(options_, state.token_bytes(), state.merges());
  result.tokenizer_config_json = TokenizerConfigJson(options_);
  result.vocab_size = static_cast<int64_t>(state.token_bytes().size());
  result.merges = static_cast<int64_t>(state.merges().size());
  result.input_bytes = input_bytes_;
  result.input_tokens = state.TokenCount();
  return result;
}

Result<BpeTrainResult> TrainByteLevelBpe(const BpeTrainOptions& options, const std::vector<std::string_view>& texts) {
  BpeTrainer trainer(options);
  for (std::string_view text : texts) trainer.AddText(text);
  return trainer.Train();
}

}  // namespace tributary
