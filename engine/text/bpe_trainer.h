// Training of a byte-level BPE tokenizer (GPT-2 / Llama-3 style) from plain text, written as the HF
// tokenizer.json that bpe_tokenizer.cc loads.
//
// Text is split around the special tokens, pre-tokenised with the chosen split regex and counted as
// words; every word starts as its bytes (the 256 byte-level symbols are always in the vocabulary) and the
// most frequent adjacent pair is merged until the vocabulary is full or no pair occurs min_frequency
// times. Pair counts are kept incrementally (a pair -> count map, the words holding each pair and a
// lazy max-heap), so a merge costs the words it touches, not the corpus.
//
// Deterministic: equal counts are broken by the pair's bytes (the left token's bytes, then the right
// token's, lexicographically smallest first), never by hash-map order; the same input gives the same
// bytes out.
//
// Ids: the special tokens first (0, 1, ... in the given order; by default <pad>=0, <bos>=1, <eos>=2 as
// LlamaConfig's default bos 1 / eos 2 expect), then byte b's symbol at specials + b, then the merges'
// tokens in merge order. A merge whose concatenation is already a token (reached by another merge
// path) reuses that token's id, as HF's trainer does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "engine/text/tokenizer.h"

namespace tributary {

struct BpeTrainOptions {
  // Tokens in the result: specials + 256 bytes + merges. Smaller than specials + 256 is an error.
  int64_t vocab_size = 8192;
  // A pair merges only if it occurs at least this often (weighted by word counts); >= 1.
  int64_t min_frequency = 2;
  std::vector<std::string> special_tokens = {"<pad>", "<bos>", "<eos>"};
  // Which of special_tokens are bos (prepended by the template), eos and pad; "" for none.
  std::string bos_token = "<bos>";
  std::string eos_token = "<eos>";
  std::string pad_token = "<pad>";
  PretokenizePattern pattern = PretokenizePattern::kLlama3;
};

struct BpeTrainResult {
  std::string tokenizer_json;         // HF tokenizer.json
  std::string tokenizer_config_json;  // HF tokenizer_config.json (bos/eos/pad names)
  int64_t vocab_size = 0;             // tokens, specials included
  int64_t merges = 0;
  int64_t input_bytes = 0;  // bytes of the text counted (specials excluded)
  // Tokens the trained model gives the counted text (its segmentation at the end of training, which
  // is what encoding produces; specials excluded).
  int64_t input_tokens = 0;
};

// Counts words over any number of texts, then trains.
class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainOptions options) : options_(std::move(options)) {}

  // Adds one document (files are independent: no word spans two AddText calls).
  void AddText(std::string_view text);
  // InvalidArgument naming the field for bad options. Does not change the counts.
  Result<BpeTrainResult> Train() const;

 private:
  void CountSegment(std::string_view segment);

  BpeTrainOptions options_;
  std::unordered_map<std::string, int64_t> word_counts_;
  int64_t input_bytes_ = 0;
};

// InvalidArgument naming the field (vocab_size below specials + 256, min_frequency < 1, a repeated or
// empty special token, a bos/eos/pad name that is not a special token); what Train checks first.
Status ValidateBpeTrainOptions(const BpeTrainOptions& options);

// One-shot form of BpeTrainer.
Result<BpeTrainResult> TrainByteLevelBpe(const BpeTrainOptions& options, const std::vector<std::string_view>& texts);

}  // namespace tributary
