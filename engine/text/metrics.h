// Evaluation metrics: Rouge-L (Ferret's headline metric), exact match, perplexity, corpus averages.
//
// Rouge-L on strings comes in two tokenisations:
//  - kRouge101 reproduces `Rouge().get_scores(hyp, ref)[0]["rouge-l"]` of the `rouge` 1.0.1 Python
//    package (pltrdy/rouge) that Ferret and FedKSeed report: the text is cut into sentences at '.',
//    whitespace runs are collapsed, words are split at ' ' (case and punctuation other than '.' are kept),
//    and the score is its summary-level union-LCS Rouge-L with `exclusive=True`, i.e. word SETS:
//    m = distinct reference words, n = distinct hypothesis words, LCS_u = distinct words in the union of
//    the reconstructed LCS of every (reference sentence, hypothesis sentence) pair; P = LCS_u/n,
//    R = LCS_u/m, F = 2PR/(P + R + 1e-8). Where the package raises ValueError (no sentence left, e.g. an
//    empty hypothesis) the score is 0, as Ferret's evaluation wrapper does.
//  - kNormalizedWords: lowercase ASCII, split on every non-alphanumeric byte (bytes >= 0x80 count as
//    word characters so UTF-8 words stay whole), one plain LCS over the word sequences, F = 2PR/(P + R).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tributary {

struct RougeLScore {
  double precision = 0.0;
  double recall = 0.0;
  double f = 0.0;  // beta = 1
};

// Length of the longest common subsequence (O(|a|·|b|) time, O(min) memory).
int64_t LcsLength(std::span<const int32_t> a, std::span<const int32_t> b);

// Rouge-L over token ids: P = LCS/|hyp|, R = LCS/|ref|, F = 2PR/(P+R); all 0 when LCS = 0.
RougeLScore RougeLTokens(std::span<const int32_t> hyp, std::span<const int32_t> ref);

enum class RougeTokenization { kRouge101, kNormalizedWords };

// Lowercased ASCII alphanumeric words (kNormalizedWords tokenisation).
std::vector<std::string> NormalizedWords(std::string_view text);

RougeLScore RougeLText(std::string_view hyp, std::string_view ref,
                       RougeTokenization tokenization = RougeTokenization::kRouge101);

// Lowercase ASCII, drop ASCII punctuation, collapse whitespace runs to one space, trim.
std::string NormalizeAnswer(std::string_view text);
// NormalizeAnswer(prediction) == NormalizeAnswer(reference).
bool ExactMatch(std::string_view prediction, std::string_view reference);

// exp(mean token negative log-likelihood, in nats).
double PerplexityFromMeanLoss(double mean_loss);

// Corpus averages over examples: mean Rouge-L F, exact-match rate, token-weighted mean loss and
// the perplexity of that mean (exp of the corpus mean NLL, not the mean of per-example perplexities).
class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(RougeTokenization tokenization = RougeTokenization::kRouge101)
      : tokenization_(tokenization) {}

  // One generated answer against its reference: adds its Rouge-L F and exact match.
  void AddGeneration(std::string_view prediction, std::string_view reference);
  // One example's summed token NLL over `tokens` target tokens.
  void AddLoss(double loss_sum, int64_t tokens);
  // Merges another accumulator (e.g. a worker's partial evaluation).
  void Merge(const MetricsAccumulator& other);

  int64_t generations() const { return generations_; }
  int64_t tokens() const { return tokens_; }
  double mean_rouge_l() const;      // 0 when no generations
  double exact_match_rate() const;  // 0 when no generations
  double mean_loss() const;         // 0 when no tokens
  double perplexity() const;        // exp(mean_loss()); 1 when no tokens

 private:
  RougeTokenization tokenization_;
  int64_t generations_ = 0;
  int64_t exact_matches_ = 0;
  double rouge_l_sum_ = 0.0;
  double loss_sum_ = 0.0;
  int64_t tokens_ = 0;
};

}  // namespace tributary
