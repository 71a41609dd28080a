#include "engine/text/metrics.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "base/status.h"

namespace tributary {
namespace {

// Byte length of the Python str.isspace() character starting at text[pos], 0 when it is not one.
// Python's str.split() (used by the rouge package to collapse whitespace) splits on these.
size_t PythonSpaceLength(std::string_view text, size_t pos) {
  const auto byte = [&](size_t k) -> unsigned char {
    return pos + k < text.size() ? static_cast<unsigned char>(text[pos + k]) : 0;
  };
  const unsigned char c = byte(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && (byte(1) == 0x85 || byte(1) == 0xa0)) return 2;  // U+0085, U+00A0
  if (c == 0xe1 && byte(1) == 0x9a && byte(2) == 0x80) return 3;    // U+1680
  if (c == 0xe2 && byte(1) == 0x80) {
    const unsigned char c2 = byte(2);
    if ((c2 >= 0x80 && c2 <= 0x8a) || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf) return 3;  // U+2000..200A, 2028/9, 202F
  }
  if (c == 0xe2 && byte(1) == 0x81 && byte(2) == 0x9f) return 3;  // U+205F
  if (c == 0xe3 && byte(1) == 0x80 && byte(2) == 0x80) return 3;  // U+3000
  return 0;
}

// rouge 1.0.1: sentences = [" ".join(s.split()) for s in text.split(".") if len(s) > 0], then each
// sentence's words = sentence.split(" ") (so a whitespace-only sentence is one empty word).
std::vector<std::vector<std::string>> Rouge101Sentences(std::string_view text) {
  std::vector<std::vector<std::string>> sentences;
  size_t start = 0;
  while (start <= text.size()) {
    size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) dot = text.size();
    const std::string_view piece = text.substr(start, dot - start);
    if (!piece.empty()) {
      std::vector<std::string> words;
      std::string word;
      for (size_t i = 0; i < piece.size();) {
        const size_t space = PythonSpaceLength(piece, i);
        if (space > 0) {
          if (!word.empty()) words.push_back(std::move(word));
          word.clear();
          i += space;
        } else {
          word.push_back(piece[i]);
          ++i;
        }
      }
      if (!word.empty()) words.push_back(std::move(word));
      if (words.empty()) words.emplace_back();  // "".split(" ") == [""]
      sentences.push_back(std::move(words));
    }
    start = dot + 1;
  }
  return sentences;
}

// Maps words to dense ids shared by hypothesis and reference.
class WordIds {
 public:
  int32_t Id(const std::string& word) {
    auto [it, inserted] = ids_.emplace(word, static_cast<int32_t>(ids_.size()));
    return it->second;
  }
  std::vector<int32_t> Ids(const std::vector<std::string>& words) {
    std::vector<int32_t> out;
    out.reserve(words.size());
    for (const auto& w : words) out.push_back(Id(w));
    return out;
  }

 private:
  std::unordered_map<std::string, int32_t> ids_;
};

// The words of the LCS of (x = reference, y = hypothesis) reconstructed with the rouge package's
// tie-breaking (match -> diagonal; else up when table[i-1][j] > table[i][j-1]; else left), added to `out`.
void AddReconstructedLcs(const std::vector<int32_t>& x, const std::vector<int32_t>& y,
                         std::unordered_set<int32_t>& out) {
  const size_t n = x.size(), m = y.size();
  std::vector<int32_t> table((n + 1) * (m + 1), 0);
  auto at = [&](size_t i, size_t j) -> int32_t& { return table[i * (m + 1) + j]; };
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      at(i, j) = x[i - 1] == y[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
    }
  }
  size_t i = n, j = m;
  while (i > 0 && j > 0) {
    if (x[i - 1] == y[j - 1]) {
      out.insert(x[i - 1]);
      --i;
      --j;
    } else if (at(i - 1, j) > at(i, j - 1)) {
      --i;
    } else {
      --j;
    }
  }
}

RougeLScore Rouge101(std::string_view hyp, std::string_view ref) {
  const auto hyp_sentences = Rouge101Sentences(hyp);
  const auto ref_sentences = Rouge101Sentences(ref);
  if (hyp_sentences.empty() || ref_sentences.empty()) return {};  // the package raises ValueError
  WordIds ids;
  std::vector<std::vector<int32_t>> hyp_ids, ref_ids;
  std::unordered_set<int32_t> hyp_words, ref_words;
  for (const auto& s : hyp_sentences) {
    hyp_ids.push_back(ids.Ids(s));
    hyp_words.insert(hyp_ids.back().begin(), hyp_ids.back().end());
  }
  for (const auto& s : ref_sentences) {
    ref_ids.push_back(ids.Ids(s));
    ref_words.insert(ref_ids.back().begin(), ref_ids.back().end());
  }
  std::unordered_set<int32_t> lcs_union;
  for (const auto& r : ref_ids) {
    for (const auto& h : hyp_ids) AddReconstructedLcs(r, h, lcs_union);
  }
  RougeLScore score;
  const double llcs = static_cast<double>(lcs_union.size());
  score.recall = llcs / static_cast<double>(ref_words.size());
  score.precision = llcs / static_cast<double>(hyp_words.size());
  score.f = 2.0 * ((score.precision * score.recall) / (score.precision + score.recall + 1e-8));
  return score;
}

bool IsAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char AsciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
bool IsAsciiSpace(unsigned char c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0d);
}
bool IsAsciiPunct(unsigned char c) {
  return c >= 0x21 && c <= 0x7e && !IsAsciiAlnum(c);
}

}  // namespace

int64_t LcsLength(std::span<const int32_t> a, std::span<const int32_t> b) {
  if (a.size() < b.size()) std::swap(a, b);  // rows over the shorter sequence
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

RougeLScore RougeLTokens(std::span<const int32_t> hyp, std::span<const int32_t> ref) {
  const int64_t lcs = LcsLength(hyp, ref);
  RougeLScore score;
  if (lcs == 0) return score;
  score.precision = static_cast<double>(lcs) / static_cast<double>(hyp.size());
  score.recall = static_cast<double>(lcs) / static_cast<double>(ref.size());
  score.f = 2.0 * score.precision * score.recall / (score.precision + score.recall);
  return score;
}

std::vector<std::string> NormalizedWords(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsAsciiAlnum(c) || c >= 0x80) {
      word.push_back(AsciiLower(ch));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

RougeLScore RougeLText(std::string_view hyp, std::string_view ref, RougeTokenization tokenization) {
  if (tokenization == RougeTokenization::kRouge101) return Rouge101(hyp, ref);
  WordIds ids;
  const auto hyp_ids = ids.Ids(NormalizedWords(hyp));
  const auto ref_ids = ids.Ids(NormalizedWords(ref));
  return RougeLTokens(hyp_ids, ref_ids);
}

std::string NormalizeAnswer(std::string_view text) {
  std::string out;
  bool pending_space = false;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsAsciiPunct(c)) continue;
    if (IsAsciiSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(AsciiLower(ch));
  }
  return out;
}

bool ExactMatch(std::string_view prediction, std::string_view reference) {
  return NormalizeAnswer(prediction) == NormalizeAnswer(reference);
}

double PerplexityFromMeanLoss(double mean_loss) {
  return std::exp(mean_loss);
}

void MetricsAccumulator::AddGeneration(std::string_view prediction, std::string_view reference) {
  rouge_l_sum_ += RougeLText(prediction, reference, tokenization_).f;
  exact_matches_ += ExactMatch(prediction, reference) ? 1 : 0;
  ++generations_;
}

void MetricsAccumulator::AddLoss(double loss_sum, int64_t tokens) {
  TRIB_CHECK(tokens >= 0);
  loss_sum_ += loss_sum;
  tokens_ += tokens;
}

void MetricsAccumulator::Merge(const MetricsAccumulator& other) {
  TRIB_CHECK(other.tokenization_ == tokenization_);
  generations_ += other.generations_;
  exact_matches_ += other.exact_matches_;
  rouge_l_sum_ += other.rouge_l_sum_;
  loss_sum_ += other.loss_sum_;
  tokens_ += other.tokens_;
}

double MetricsAccumulator::mean_rouge_l() const {
  return generations_ > 0 ? rouge_l_sum_ / static_cast<double>(generations_) : 0.0;
}

double MetricsAccumulator::exact_match_rate() const {
  return generations_ > 0 ? static_cast<double>(exact_matches_) / static_cast<double>(generations_) : 0.0;
}

double MetricsAccumulator::mean_loss() const {
  return tokens_ > 0 ? loss_sum_ / static_cast<double>(tokens_) : 0.0;
}

double MetricsAccumulator::perplexity() const {
  return PerplexityFromMeanLoss(mean_loss());
}

}  // namespace tributary
