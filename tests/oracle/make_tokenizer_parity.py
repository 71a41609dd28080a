#!/usr/bin/env python3
"""Writes tests/engine/fixtures/tokenizer_parity/: four small tokenizer.json files in the layouts of
GPT-2, Llama-3, Qwen2 and Llama-2 (SentencePiece BPE with byte fallback), each trained by HF tokenizers
on a multilingual corpus, and ids.json: what HF tokenizers encodes 300+ strings over 20+ scripts to with
each of them. tests/engine/tokenizer_parity_test.cc compares tributary's tokenizer to these ids.

  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers
  /tmp/tokvenv/bin/python tests/oracle/make_tokenizer_parity.py
"""
import json
import os
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(__file__))
from make_pretokenize_oracle import PATTERNS, TEXTS  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "engine", "fixtures", "tokenizer_parity")

EXTRA = [
    "The quick brown fox jumps over the lazy dog.", "Ünïcödé wörds ärë fün", "1234567890 12 345 6789",
    "don't can't won't I'd you're we've they'll", "DON'T CAN'T", "  two  spaces  and\ttabs\t",
    "line1\nline2\r\nline3\n\n", "http://example.com/path?q=1&r=2", "snake_case camelCase kebab-case",
    "€£¥₹₩ 100", "“quotes” ‘single’ «guillemets» „low“", "— en–dash … ellipsis", "α+β=γ; ∀x∈ℝ", "\u00a0nbsp\u2009thin",
]


def corpus():
    base = TEXTS + EXTRA
    return base * 40 + [a + " " + b for a in base for b in base[:6]]


def strings():
    base = TEXTS + EXTRA
    out = []
    for t in base:
        out += [t, " " + t, t.upper(), t.lower(), t.title(), t + " " + t[::-1]]
    out += [a + "\n" + b for a, b in zip(base, base[1:])]
    seen, unique = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def byte_level(pattern_name, nfc):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    if pattern_name == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pattern_name]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def sentencepiece_bpe():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False, limit_alphabet=400)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    families = {
        "gpt2": byte_level("gpt2", False),
        "llama3": byte_level("llama3", False),
        "qwen2": byte_level("qwen2", True),
        "llama2": sentencepiece_bpe(),
    }
    cases = strings()
    ids = {"tokenizers_version": tokenizers.__version__, "strings": cases, "ids": {}}
    for name, tok in families.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        ids["ids"][name] = [tok.encode(s, add_special_tokens=False).ids for s in cases]
    with open(os.path.join(OUT, "ids.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} strings x {len(families)} tokenizers -> {os.path.normpath(OUT)} "
          f"(tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
