// Hand-written scanners for the split regexes of GPT-2, Llama-3 and Qwen2 tokenizers (std::regex has
// no \p{L} / \p{N}; the categories come from utf8proc). Each scanner tries the regex alternatives in order at the
// current position, exactly as a backtracking regex engine would, and emits the first alternative that matches.
#include <utf8proc.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/text/tokenizer.h"

namespace tributary {

namespace {

struct CodePoint {
  uint32_t cp;
  size_t len;  // bytes in the UTF-8 encoding (1 for an invalid byte, which decodes to U+FFFD)
};

// Decodes one UTF-8 code point at text[pos] (pos < size). Invalid sequences consume one byte.
CodePoint DecodeAt(std::string_view text, size_t pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) return {b0, 1};
  size_t len = 0;
  uint32_t cp = 0;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2;
    cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3;
    cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return {0xfffd, 1};
  }
  if (pos + len > text.size()) return {0xfffd, 1};
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[pos + k]);
    if ((b & 0xc0) != 0x80) return {0xfffd, 1};
    cp = (cp << 6) | (b & 0x3f);
  }
  return {cp, len};
}

// \p{L} and \p{N} of the split regexes: the Unicode general categories L* and N* (utf8proc's tables).
bool IsLetter(uint32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return true;
    default: return false;
  }
}
bool IsNumber(uint32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
  }
}

// Unicode White_Space (what \s matches in the Rust / Oniguruma regexes).
bool IsSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}
bool IsNewline(uint32_t cp) {
  return cp == '\r' || cp == '\n';
}
// [^\s\p{L}\p{N}]
bool IsOther(uint32_t cp) {
  return !IsSpace(cp) && !IsLetter(cp) && !IsNumber(cp);
}

// A cursor over code points.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}
  bool AtEnd(size_t pos) const { return pos >= text_.size(); }
  uint32_t Cp(size_t pos) const { return DecodeAt(text_, pos).cp; }
  size_t Next(size_t pos) const { return pos + DecodeAt(text_, pos).len; }
  // End of the run of code points satisfying pred starting at pos (pos itself when none).
  template <typename Pred>
  size_t Run(size_t pos, Pred pred, size_t max_count = SIZE_MAX) const {
    size_t count = 0;
    while (!AtEnd(pos) && count < max_count && pred(Cp(pos))) {
      pos = Next(pos);
      ++count;
    }
    return pos;
  }
  std::string_view text() const { return text_; }

 private:
  std::string_view text_;
};

// 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for Llama-3 / Qwen2). Returns the match end or pos.
size_t MatchContraction(std::string_view text, size_t pos, bool ignore_case) {
  if (text[pos] != '\'') return pos;
  auto lower = [&](size_t i) -> char {
    if (i >= text.size()) return 0;
    char c = text[i];
    if (ignore_case && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return c;
  };
  const char a = lower(pos + 1), b = lower(pos + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
  return pos;
}

// \s+(?!\S) then \s+ : whitespace not followed by a non-space keeps its last space for the next word.
size_t MatchTrailingSpace(const Scanner& s, size_t pos) {
  const size_t end = s.Run(pos, IsSpace);
  if (end == pos) return pos;
  if (s.AtEnd(end)) return end;
  // Back off one code point so the following word can take a leading space.
  size_t last = pos, p = pos;
  while (p < end) {
    last = p;
    p = s.Next(p);
  }
  if (last > pos) return last;
  return end;  // a single space before a word: the plain \s+ alternative
}

size_t MatchGpt2(const Scanner& s, size_t pos) {
  const std::string_view text = s.text();
  size_t end = MatchContraction(text, pos, false);
  if (end != pos) return end;
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
  const size_t start = text[pos] == ' ' ? pos + 1 : pos;
  if (!s.AtEnd(start)) {
    const uint32_t cp = s.Cp(start);
    if (IsLetter(cp)) return s.Run(start, IsLetter);
    if (IsNumber(cp)) return s.Run(start, IsNumber);
    if (IsOther(cp)) return s.Run(start, IsOther);
  }
  end = MatchTrailingSpace(s, pos);
  if (end != pos) return end;
  return s.Next(pos);
}

// Llama-3 (max_digits 3) and Qwen2 (max_digits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t MatchLlama3(const Scanner& s, size_t pos, size_t max_digits) {
  const std::string_view text = s.text();
  size_t end = MatchContraction(text, pos, true);
  if (end != pos) return end;
  const uint32_t c0 = s.Cp(pos);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (IsLetter(c0)) return s.Run(pos, IsLetter);
  if (!IsNewline(c0) && !IsNumber(c0)) {
    const size_t after = s.Next(pos);
    if (!s.AtEnd(after) && IsLetter(s.Cp(after))) return s.Run(after, IsLetter);
  }
  // \p{N}{1,N}
  if (IsNumber(c0)) return s.Run(pos, IsNumber, max_digits);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t start = c0 == ' ' ? pos + 1 : pos;
  if (!s.AtEnd(start) && IsOther(s.Cp(start))) {
    end = s.Run(start, IsOther);
    return s.Run(end, IsNewline);
  }
  // \s*[\r\n]+ : the whitespace run up to and including its last newline.
  const size_t ws_end = s.Run(pos, IsSpace);
  size_t last_newline_end = pos;
  for (size_t p = pos; p < ws_end; p = s.Next(p)) {
    if (IsNewline(s.Cp(p))) last_newline_end = s.Next(p);
  }
  if (last_newline_end != pos) return last_newline_end;
  end = MatchTrailingSpace(s, pos);
  if (end != pos) return end;
  return s.Next(pos);
}

}  // namespace

std::vector<std::string_view> Pretokenize(std::string_view text, PretokenizePattern pattern) {
  std::vector<std::string_view> pieces;
  Scanner s(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = 0;
    switch (pattern) {
      case PretokenizePattern::kGpt2: end = MatchGpt2(s, pos); break;
      case PretokenizePattern::kLlama3: end = MatchLlama3(s, pos, 3); break;
      case PretokenizePattern::kQwen2: end = MatchLlama3(s, pos, 1); break;
    }
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

}  // namespace tributary
