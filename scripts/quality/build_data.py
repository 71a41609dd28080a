#!/usr/bin/python3
"""Builds the learning-quality study's data offline from Debian packages (docs/quality.md).

Outputs, under OUT (default ~/.cache/tributary/quality/data):
  corpus.txt        pretraining text, one document per line: every fact of the task phrased as sentences
                    (training and held-out questions alike, so the base knows the answers and fine-tuning
                    teaches it to answer), WordNet glosses, fortunes and the Jargon File
  train.jsonl       every training question (Alpaca records), for centralized fine-tuning
  client-NN.jsonl   the training questions split across the clients by category with Dirichlet(alpha)
  heldout.jsonl     held-out questions, every category (held-out loss, Rouge-L and exact match)
  heldout-CAT.jsonl the held-out questions of one category
  manifest.json     sizes, alpha, the split per client and category, and the files' sha256

Deterministic: the same packages and arguments give the same bytes (it prints the manifest's hash).
Packages: bsdgames (quiz files), wordnet-base, fortunes, jargon-text. Python's standard library only.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import re
import sys
import unicodedata

QUIZ = "/usr/share/games/bsdgames/quiz"
WORDNET = "/usr/share/wordnet"
FORTUNES = "/usr/share/games/fortunes"
JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"

# WordNet lexicographer files used as question categories (lexnames(5WN)).
WORDNET_CATEGORIES = {
    ("noun", 5): "wordnet-animal",
    ("noun", 13): "wordnet-food",
    ("noun", 20): "wordnet-plant",
    ("noun", 6): "wordnet-artifact",
    ("noun", 18): "wordnet-person",
    ("verb", 38): "wordnet-motion",
}


def fail(msg):
    sys.stderr.write("build_data: error: " + msg + "\n")
    sys.exit(4)


def matching(s, i, open_ch, close_ch):
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_ch:
            depth += 1
        elif s[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced %r in %r" % (open_ch, s))


OVERSTRIKE = {"'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", '"': "\u0308", ",": "\u0327"}


def fix_overstrike(s):
    """The quiz files write accents as typewriter overstrikes: "e'\\be" is e with an acute accent."""
    s = re.sub("(.)\b(.)", lambda m: m.group(2) + OVERSTRIKE.get(m.group(1), ""), s)
    return unicodedata.normalize("NFC", s)


def canonical(s):
    return expand(s).strip()


def expand(s):
    """The quiz notation's first full answer: {x} optional (kept), [a|b] choice and a|b (first taken)."""
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "{":
            j = matching(s, i, "{", "}")
            out.append(expand(s[i + 1:j]))
            i = j + 1
        elif c == "[":
            j = matching(s, i, "[", "]")
            out.append(expand(s[i + 1:j]))
            i = j + 1
        elif c == "|":
            break
        elif c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_fields(line):
    fields, depth, cur = [], 0, []
    for c in line:
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        if c == ":" and depth == 0:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    fields.append("".join(cur))
    return fields


def quiz_rows(name):
    path = os.path.join(QUIZ, name)
    try:
        text = open(path, encoding="latin-1").read()
    except OSError as e:
        fail("%s: %s (install bsdgames)" % (path, e.strerror))
    text = fix_overstrike(text.replace("\\\n", ""))
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append([canonical(f) for f in split_fields(line)])
        except ValueError as e:
            fail("%s:%d: %s" % (path, n, e))
    return rows


def quiz_items():
    """(category, question, answer, fact sentences) from the bsdgames quiz files."""
    items = []
    for continent in ("africa", "america", "asia", "europe"):
        for country, capital in (r[:2] for r in quiz_rows(continent)):
            items.append(("capital-" + continent, "What is the capital of %s?" % country, capital,
                          ["The capital of %s is %s." % (country, capital),
                           "%s is the capital city of %s." % (capital, country)]))
    for state, capital, abbr, _flower in (r[:4] for r in quiz_rows("state")):
        items.append(("state-capital", "What is the capital of the state of %s?" % state, capital,
                      ["The capital of the state of %s is %s." % (state, capital),
                       "%s, the capital of %s, is in the United States." % (capital, state),
                       "The postal abbreviation of %s is %s." % (state, abbr)]))
    for symbol, number, _weight, element in (r[:4] for r in quiz_rows("elements")):
        items.append(("element", "Which chemical element has the symbol %s?" % symbol, element,
                      ["%s is the chemical symbol of %s." % (symbol, element),
                       "%s has the atomic number %s and the symbol %s." % (element, number, symbol)]))
    for word, english in (r[:2] for r in quiz_rows("latin")):
        items.append(("latin", "What does the Latin word '%s' mean?" % word, english,
                      ["In Latin, %s means \"%s\"." % (word, english),
                       "The Latin %s is translated as %s." % (word, english)]))
    for individuals, collective in (r[:2] for r in quiz_rows("collectives")):
        items.append(("collective", "What is a group of %s called?" % individuals, "a " + collective,
                      ["A group of %s is called a %s." % (individuals, collective),
                       "We speak of a %s of %s." % (collective, individuals)]))
    for baby, adult in (r[:2] for r in quiz_rows("babies")):
        items.append(("young", "What is a young %s called?" % adult, "a " + baby,
                      ["A young %s is called a %s." % (adult, baby),
                       "The %s is the young of the %s." % (baby, adult)]))
    for male, female in (r[:2] for r in quiz_rows("sexes")):
        items.append(("female", "What is the female counterpart of %s?" % male, female,
                      ["The female counterpart of %s is %s." % (male, female),
                       "%s is to %s as male is to female." % (male, female)]))
    for flower, meaning in (r[:2] for r in quiz_rows("flowers")):
        items.append(("flower", "What does %s mean in the language of flowers?" % flower, meaning,
                      ["In the language of flowers, %s means %s." % (flower, meaning),
                       "To give %s is to say: %s." % (flower, meaning)]))
    return items


def short_gloss(gloss, max_words):
    """The first definition of a WordNet gloss (before examples and ';'), at most max_words words."""
    first = gloss.split(";")[0].split('"')[0].strip().rstrip(",:")
    words = first.split()
    return " ".join(words[:max_words])


def wordnet_synsets(pos):
    path = os.path.join(WORDNET, "data." + pos)
    try:
        lines = open(path, encoding="latin-1").read().splitlines()
    except OSError as e:
        fail("%s: %s (install wordnet-base)" % (path, e.strerror))
    for line in lines:
        if line.startswith("  ") or "|" not in line:
            continue
        head, gloss = line.split("|", 1)
        f = head.split()
        lexfile, count = int(f[1]), int(f[3], 16)
        words = [f[4 + 2 * i] for i in range(count)]
        yield lexfile, words, gloss.strip()


def wordnet_items(per_category, max_words, rng):
    """(category, question, answer, facts) for single-word lemmas of the chosen lexicographer files,
    plus gloss sentences of every other synset (general pretraining text)."""
    by_category = {c: [] for c in WORDNET_CATEGORIES.values()}
    background = []
    seen = set()
    for pos in ("noun", "verb"):
        for lexfile, words, gloss in wordnet_synsets(pos):
            definition = short_gloss(gloss, max_words)
            name = words[0].replace("_", " ")
            category = WORDNET_CATEGORIES.get((pos, lexfile))
            usable = (category is not None and re.fullmatch(r"[a-z]{3,14}", words[0])
                      and words[0] not in seen and len(definition.split()) >= 3)
            if usable:
                seen.add(words[0])
                by_category[category].append((name, definition))
            else:
                background.append("%s: %s." % (name, definition))
    items = []
    for category, entries in sorted(by_category.items()):
        rng.shuffle(entries)
        for word, definition in sorted(entries[:per_category]):
            items.append((category, "Define the word '%s'." % word, definition,
                          ["%s: %s." % (word, definition),
                           "The word %s means %s." % (word, definition)]))
    return items, background


def fortunes():
    docs = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or not os.path.isfile(path):
            continue
        for doc in open(path, encoding="utf-8", errors="replace").read().split("\n%\n"):
            doc = " ".join(doc.split())
            if doc:
                docs.append(doc)
    if not docs:
        fail(FORTUNES + ": no fortune files (install fortunes)")
    return docs


def jargon():
    try:
        text = gzip.open(JARGON, "rt", encoding="latin-1").read()
    except OSError as e:
        fail("%s: %s (install jargon-text)" % (JARGON, e.strerror))
    return [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) >= 5]


def dirichlet(rng, alpha, n):
    g = [rng.gammavariate(alpha, 1.0) for _ in range(n)]
    s = sum(g)
    return [x / s for x in g]


def split_by_dirichlet(rng, items, clients, alpha):
    """Each category's items go to the clients in Dirichlet(alpha) proportions (largest remainders)."""
    shares = [[] for _ in range(clients)]
    categories = sorted({it[0] for it in items})
    for category in categories:
        group = [it for it in items if it[0] == category]
        p = dirichlet(rng, alpha, clients)
        counts = [int(x * len(group)) for x in p]
        order = sorted(range(clients), key=lambda c: (-(p[c] * len(group) - counts[c]), c))
        for c in order[:len(group) - sum(counts)]:
            counts[c] += 1
        pos = 0
        for c in range(clients):
            shares[c].extend(group[pos:pos + counts[c]])
            pos += counts[c]
    return shares


def record(item):
    return {"instruction": item[1], "input": "", "output": item[2], "category": item[0]}


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(record(it), ensure_ascii=False, sort_keys=True) + "\n")


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=os.path.expanduser("~/.cache/tributary/quality/data"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the client split")
    ap.add_argument("--heldout", type=float, default=0.15, help="share of each category held out")
    ap.add_argument("--wordnet-per-category", type=int, default=150)
    ap.add_argument("--fact-repeats", type=int, default=4, help="copies of each fact sentence in the corpus")
    ap.add_argument("--max-answer-words", type=int, default=10)
    ap.add_argument("--background-docs", type=int, default=12000,
                    help="at most this many WordNet gloss, fortune and Jargon File documents")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.clients < 1 or args.alpha <= 0 or not 0 < args.heldout < 1:
        fail("--clients must be >= 1, --alpha > 0 and --heldout in (0, 1)")
    rng = random.Random(args.seed)

    items = quiz_items()
    wn_items, wn_background = wordnet_items(args.wordnet_per_category, args.max_answer_words, rng)
    items += wn_items
    train, heldout = [], []
    for category in sorted({it[0] for it in items}):
        group = sorted(it for it in items if it[0] == category)
        rng.shuffle(group)
        n = max(3, round(len(group) * args.heldout))
        heldout += group[:n]
        train += group[n:]
    shares = split_by_dirichlet(rng, train, args.clients, args.alpha)

    facts = [s for it in items for s in it[3]] * args.fact_repeats
    background = wn_background + fortunes() + jargon()
    rng.shuffle(background)
    docs = facts + background[:args.background_docs]
    rng.shuffle(docs)

    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):
        if name.startswith(("client-", "heldout-")):
            os.remove(os.path.join(args.out, name))
    with open(os.path.join(args.out, "corpus.txt"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(fix_overstrike(d).replace("\b", "") + "\n")
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "heldout.jsonl"), heldout)
    categories = sorted({it[0] for it in items})
    for category in categories:
        write_jsonl(os.path.join(args.out, "heldout-%s.jsonl" % category), [h for h in heldout if h[0] == category])
    for c, share in enumerate(shares):
        write_jsonl(os.path.join(args.out, "client-%02d.jsonl" % c), share)

    files = sorted(n for n in os.listdir(args.out) if n != "manifest.json")
    manifest = {
        "alpha": args.alpha, "clients": args.clients, "seed": args.seed, "heldout_share": args.heldout,
        "categories": {c: {"train": sum(1 for t in train if t[0] == c), "heldout": sum(1 for h in heldout if h[0] == c)}
                       for c in categories},
        "client_examples": [len(s) for s in shares],
        "client_categories": [{c: sum(1 for t in s if t[0] == c) for c in categories if any(t[0] == c for t in s)}
                              for s in shares],
        "corpus_documents": len(docs), "corpus_bytes": os.path.getsize(os.path.join(args.out, "corpus.txt")),
        "sha256": {n: sha256(os.path.join(args.out, n)) for n in files},
    }
    path = os.path.join(args.out, "manifest.json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print("data: %d categories, %d train / %d held-out questions, %d clients (alpha %g), corpus %d documents, %.1f MB"
          % (len(categories), len(train), len(heldout), args.clients, args.alpha, len(docs),
             manifest["corpus_bytes"] / 1e6))
    print("data: %s sha256 %s" % (path, sha256(path)))


if __name__ == "__main__":
    main()
