#!/usr/bin/env bash
# B12's topology in miniature (docs/benchmarks.md): 3 sites x 2 workers joined pairwise by shaped site links
# (A-B 5x, B-C 1x, A-C 3x of 50 Mbit/s). bench/ring_testbed_bench.sh probes every pair with the link prober,
# orders the ring with both objectives and runs real gloo all-reduces (checking their sums) in each order. Checks
# behaviour, not timing: every pair was probed, both planned rings avoid the slowest link (B-C) that index order
# crosses twice, and every order's all-reduces completed. Root only (SKIP, exit 77, otherwise).
#   bash tests/system/ring_testbed_test.sh BUILD_DIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root ring_testbed_test
OUT="$(mktemp /tmp/ring-testbed-test.XXXXXX)"
trap 'rm -f "$OUT"' EXIT

failures=0
check "the bench runs on the 3-site topology" bash "$ROOT/bench/ring_testbed_bench.sh" "$BUILD_DIR" --topology b12 \
  --base-mbit 50 --values 65536 --iters 1 --warmup 0 --probe-target-s 0.2 >"$OUT" 2>&1 || true
cat "$OUT"
check "all 15 pairs probed" test "$(grep -c '^probe ' "$OUT")" -eq 15
check "index order crosses B-C twice" grep -Eq '^index .*B-C x2' "$OUT"
check "the max-min ring avoids B-C" bash -c "grep -E '^max_min ' '$OUT' | grep -v 'B-C' | grep -q 'A-B x2, A-C x2'"
check "the min-sum-inverse ring avoids B-C" \
  bash -c "grep -E '^min_sum_inverse ' '$OUT' | grep -v 'B-C' | grep -q 'A-B x2, A-C x2'"
((failures == 0)) || exit 1
echo "ring_testbed_test: all checks passed"
