#!/usr/bin/env bash
# The learning-quality study in miniature (docs/quality.md, "The CI smoke test"): the task built from Debian
# packages at a tenth of its size, a tiny base pretrained for a few steps with its own BPE tokenizer, then every
# method for 3 rounds on 4 clients (bench/quality_study --check): each must lower the held-out loss of the base.
# Needs bsdgames, wordnet-base, fortunes and jargon-text (scripts/setup.sh installs them); SKIP (77) without.
set -euo pipefail
BUILD_DIR="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
for f in /usr/share/games/bsdgames/quiz/index /usr/share/wordnet/data.noun /usr/share/games/fortunes/fortunes \
  /usr/share/doc/jargon-text/jargon.txt.gz; do
  [[ -f "$f" ]] || { echo "SKIP: $f missing (scripts/setup.sh installs the study's data packages)"; exit 77; }
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

export QUALITY_DIR="$WORK/quality" BUILD_DIR VOCAB=512 PRETRAIN_STEPS=60 PRETRAIN_BATCH=8 PRETRAIN_SEQ=64 \
  PRETRAIN_LR=3e-3 PRETRAIN_WARMUP=10
export BUILD_DATA_ARGS="--clients 4 --wordnet-per-category 12 --background-docs 1500 --fact-repeats 2"
export MODEL_SETS="hidden_size=64 intermediate_size=172 num_hidden_layers=2 num_attention_heads=4 num_key_value_heads=2"
"$ROOT/scripts/quality/pretrain"

"$BUILD_DIR/bench/quality_study" --data "$QUALITY_DIR/data" --base "$QUALITY_DIR/base" --dir "$WORK/study" \
  --out "$WORK/results.jsonl" --rounds 3 --local-steps 4 --batch 4 --seq-len 64 --lr 3e-3 \
  --methods central,fedavg,ferret,fedkseed,lora,dp,diloco-int8,diloco-ferret --ferret-k 1024 --ferret-server-lr 0.1 \
  --fedkseed-k 64 --fedkseed-steps 20 --fedkseed-lr 1e-3 --generations 4 --eval-every 3 --timeout 300 --check
[[ $(wc -l < "$WORK/results.jsonl") -gt 8 ]] || { echo "FAIL: too few result rows"; exit 1; }
echo "PASS"
