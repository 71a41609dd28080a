#!/usr/bin/env python3
"""Writes tests/engine/fixtures/pretokenize/splits.json: how HF tokenizers' Split pre-tokenizer cuts
strings over many scripts with the GPT-2, Llama-3 and Qwen2 regexes (the ones engine/text/bpe_tokenizer.cc
recognises), and what the NFC normalizer makes of them. The C++ test compares its scanner to these.

  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers
  /tmp/tokvenv/bin/python tests/oracle/make_pretokenize_oracle.py
"""
import json
import os

import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}

TEXTS = [
    # Latin with combining marks (decomposed and precomposed), contractions, digits, whitespace runs
    "Cafe\u0301 au lait, cafés!", "naïve re\u0301sume\u0301", "I'm sure they'LL come at 12345.",
    "  leading and trailing   ", "tabs\tand\nnew\r\nlines\n\n\nend", "ﬁne ligature ﬀ", "Ångström Œuvre ß",
    # Greek incl. extended
    "Ἐν ἀρχῇ ἦν ὁ λόγος", "Καλημέρα κόσμε 2024", "ᾅδης ῥήτωρ ῷ",
    # Cyrillic, Armenian, Georgian
    "Привет, мир! Ёлка", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო",
    # Arabic, Hebrew (with marks)
    "مرحبا بالعالم ١٢٣", "اَلْعَرَبِيَّة", "שָׁלוֹם עוֹלָם", "עברית 42",
    # Indic: Devanagari, Bengali, Tamil, Telugu, Gurmukhi
    "नमस्ते दुनिया १२३", "হ্যালো বিশ্ব ৪৫", "வணக்கம் உலகம் ௧௨", "తెలుగు భాష", "ਪੰਜਾਬੀ",
    # Southeast Asian: Thai, Lao, Khmer, Myanmar
    "สวัสดีชาวโลก เกมส์ ๑๒", "ໄປເຮືອນ", "សួស្តី​ពិភពលោក", "မင်္ဂလာပါ",
    # CJK, kana with iteration marks, Hangul
    "日本語のテキスト、時々ゝゞ", "人々は々を使う", "中文，全角！１２３", "한국어 텍스트 123", "ㄱㄴㄷ ᄀᄂ",
    # Emoji and symbols
    "emoji 👍🏽 and 👨‍👩‍👧 family", "math ∑ x² ≤ ½ ⅓ Ⅻ ①", "currency €100 ¥20 £5",
    # Code
    "def f(x):\n    return x**2  # comment", "if (a != b) { c += 1; }", "<html><body>Hi</body></html>",
    # Mixed scripts and digits
    "abc١٢٣def", "x1y22z333w4444", "Ⅳ and ⁴ and ₅", "〇一二三", "٣.١٤",
]


def main():
    out = {"tokenizers_version": tokenizers.__version__, "cases": []}
    nfc = normalizers.NFC()
    for text in TEXTS:
        case = {"text": text, "nfc": nfc.normalize_str(text)}
        for name, pattern in PATTERNS.items():
            split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
            case[name] = [piece for piece, _ in split.pre_tokenize_str(text)]
        out["cases"].append(case)
    path = os.path.join(os.path.dirname(__file__), "..", "engine", "fixtures", "pretokenize", "splits.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(TEXTS)} cases to {os.path.normpath(path)} (tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
