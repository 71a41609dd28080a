#!/usr/bin/env bash
# B12 (docs/benchmarks.md): ring order on the namespace testbed, and the flow-level simulator's prediction for
# the same topology. Builds the topology with scripts/cluster-testbed, starts one bench/ring_testbed_bench
# process per rank in its worker namespace (rendezvous through files in a shared directory), and prints the
# probe matrix and the table of measured vs simulated all-reduce times (rank 0's output).
#
#   sudo bash bench/ring_testbed_bench.sh [BUILD_DIR] [--topology b12|wan] [--base-mbit 40] [--values 396288]
#                                         [--iters 5] [--warmup 1] [--probe-target-s 1]
#
# b12: 3 sites A, B, C (islands 0..2) x 2 workers, joined pairwise by tbf-shaped site links A-B 5x, B-C 1x,
#      A-C 3x the base rate; index order A1 B1 C1 A2 B2 C2.
# wan: scripts/cluster-testbed's 2 sites x 2 workers, each site's uplink to the wan namespace at the base rate
#      (cross-site traffic crosses both uplinks); index order A1 B1 A2 B2 (sites interleaved, as a
#      NIC-oblivious placement lists them).
# Site-internal links are unshaped veths on a bridge. No delay is added (worker-to-worker traffic between sites
# gets none from the relay; the RTTs are the veths' own).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
if [[ $# -gt 0 && $1 != --* ]]; then
  BUILD_DIR="$(cd "$1" && pwd)"
  shift
fi
TOPOLOGY=b12 BASE=40 VALUES=396288 ITERS=5 WARMUP=1 PROBE_S=1
while (($#)); do
  case "$1" in
    --topology) TOPOLOGY="$2" ;;
    --base-mbit) BASE="$2" ;;
    --values) VALUES="$2" ;;
    --iters) ITERS="$2" ;;
    --warmup) WARMUP="$2" ;;
    --probe-target-s) PROBE_S="$2" ;;
    *) echo "ring_testbed_bench: unknown flag $1" >&2 && exit 2 ;;
  esac
  shift 2
done
# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root ring_testbed_bench
BIN="$BUILD_DIR/bench/ring_testbed_bench"
[[ -x $BIN ]] || { echo "ring_testbed_bench: build $BIN first (ninja -C build ring_testbed_bench)" >&2 && exit 2; }
[[ $BASE =~ ^[0-9]+$ ]] || { echo "ring_testbed_bench: --base-mbit must be an integer" >&2 && exit 2; }

TB="$ROOT/scripts/cluster-testbed"
P="rb$$"
WORK="$(mktemp -d /tmp/ring-testbed-bench.XXXXXX)"
export TB_PREFIX="$P" TB_STATE_DIR="$WORK/state"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$TB" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# members: NAME:SITE:NAMESPACE-SUFFIX:IP, in index order; SIM: the topology for the simulator.
case "$TOPOLOGY" in
  b12)
    "$TB" up --islands 3 --workers 2 --wan-rate "${BASE}mbit" --wan-delay-ms 0 --site-link "0-1:$((5 * BASE))mbit" \
      --site-link "1-2:${BASE}mbit" --site-link "0-2:$((3 * BASE))mbit" >"$WORK/up.log" 2>&1 ||
      { cat "$WORK/up.log" >&2 && exit 1; }
    MEMBERS=(A1:A:i0w0:10.10.0.10 B1:B:i1w0:10.11.0.10 C1:C:i2w0:10.12.0.10
      A2:A:i0w1:10.10.0.11 B2:B:i1w1:10.11.0.11 C2:C:i2w1:10.12.0.11)
    SIM=(--sim-site-link "A-B:$((5 * BASE))" --sim-site-link "B-C:$BASE" --sim-site-link "A-C:$((3 * BASE))")
    SHAPED=("A>B:i0:s1" "B>A:i1:s0" "B>C:i1:s2" "C>B:i2:s1" "A>C:i0:s2" "C>A:i2:s0")
    DESC="3 sites x 2 workers, site links A-B $((5 * BASE)), B-C $BASE, A-C $((3 * BASE)) Mbit/s (tbf both ends)"
    ;;
  wan)
    "$TB" up --islands 2 --workers 2 --wan-rate "${BASE}mbit" --wan-delay-ms 0 >"$WORK/up.log" 2>&1 ||
      { cat "$WORK/up.log" >&2 && exit 1; }
    MEMBERS=(A1:A:i0w0:10.10.0.10 B1:B:i1w0:10.11.0.10 A2:A:i0w1:10.10.0.11 B2:B:i1w1:10.11.0.11)
    SIM=(--sim-uplink "A:$BASE" --sim-uplink "B:$BASE")
    SHAPED=("A>wan:i0:wan0" "wan>A:wan:i0" "B>wan:i1:wan0" "wan>B:wan:i1")
    DESC="2 sites x 2 workers, each site's uplink to the wan namespace $BASE Mbit/s (tbf both ends)"
    ;;
  *) echo "ring_testbed_bench: --topology must be b12 or wan" >&2 && exit 2 ;;
esac

ARGS=(--store "$WORK/store" --probe-key "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" --values "$VALUES"
  --iters "$ITERS" --warmup "$WARMUP" --probe-target-s "$PROBE_S" "${SIM[@]}")
for m in "${MEMBERS[@]}"; do
  IFS=: read -r name site _ ip <<<"$m"
  ARGS+=(--member "$name:$site:$ip")
done
mkdir -p "$WORK/store"

echo "# ring_testbed_bench --topology $TOPOLOGY: $DESC; sites' internal links unshaped"
echo "# $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
# "LABEL sent_bytes packets dropped" for every shaped link (tbf counters, cumulative).
tbf_counters() {
  local link label suffix dev
  for link in "${SHAPED[@]}"; do
    IFS=: read -r label suffix dev <<<"$link"
    echo "$label $(ip netns exec "$P-$suffix" tc -s qdisc show dev "$dev" |
      awk '/Sent/ { gsub(/,/, ""); print $2, $4, $7; exit }')"
  done
}

# Per order, the tbf counters' growth divided by its all-reduces (warm-up included): snapshots when the probes
# are done and when every rank has stored an order's times (each all-reduce starts 200 ms after a barrier, so
# the next order's traffic has hardly begun).
monitor_links() {
  local n="${#MEMBERS[@]}" pairs=$((${#MEMBERS[@]} * (${#MEMBERS[@]} - 1) / 2)) o=0 r before after
  until [[ -e "$WORK/store/probe%done%$((pairs - 1))" ]]; do sleep 0.02; done
  before="$(tbf_counters)"
  while :; do
    for ((r = 0; r < n; r++)); do
      until [[ -e "$WORK/store/times%$o%$r" || -e "$WORK/store/finished%0" ]]; do sleep 0.02; done
    done
    [[ -e "$WORK/store/times%$o%0" ]] || break
    after="$(tbf_counters)"
    paste <(echo "$before") <(echo "$after") | awk -v o="$o" -v k="$((ITERS + WARMUP))" '
      { printf "%s%s %.3f MB %d pkts (%d B/pkt) %d drops", (NR == 1 ? "# tbf per all-reduce, order " o ": " : "; "),
        $1, ($6 - $2) / k / 1e6, ($7 - $3) / k, ($7 > $3 ? ($6 - $2) / ($7 - $3) : 0), $8 - $4 }
      END { print "" }'
    before="$after"
    o=$((o + 1))
  done
}

monitor_links >"$WORK/links.out" 2>&1 &
MONITOR=$!
for ((r = 0; r < ${#MEMBERS[@]}; r++)); do
  IFS=: read -r _ _ suffix _ <<<"${MEMBERS[$r]}"
  "$TB" exec "$suffix" -- "$BIN" --rank "$r" "${ARGS[@]}" >"$WORK/rank$r.out" 2>"$WORK/rank$r.err" &
  PIDS+=($!)
done
# Wait for every rank; once one fails, stop the others (they would wait for it in the store for minutes).
failed=0 left=${#PIDS[@]}
declare -A reaped=()
while ((left > 0 && !failed)); do
  for ((r = 0; r < ${#PIDS[@]}; r++)); do
    [[ -z ${reaped[$r]:-} ]] && ! kill -0 "${PIDS[$r]}" 2>/dev/null || continue
    reaped[$r]=1
    left=$((left - 1))
    wait "${PIDS[$r]}" || { failed=1 && echo "rank $r failed: $(cat "$WORK/rank$r.err")" >&2; }
  done
  sleep 0.1
done
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
PIDS=()
cat "$WORK/rank0.out"
kill "$MONITOR" 2>/dev/null || true
wait "$MONITOR" 2>/dev/null || true
cat "$WORK/links.out"
exit "$failed"
