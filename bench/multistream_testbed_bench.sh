#!/usr/bin/env bash
# B13 (docs/benchmarks.md): multi-connection transfer over one tbf-shaped link with 50 ms RTT, N = 1, 2, 4, 8, 16
# streams side by side in one run. Two network namespaces joined by one veth pair, tbf RATE on both ends; in the
# receiving namespace `multistream_bench relay` adds DELAY ms each way and emulates a fixed per-stream window
# (this kernel has no netem; see the relay's header in bench/multistream_bench.cc), then the receiver.
#   sudo bash bench/multistream_testbed_bench.sh [BUILD_DIR] [--rate-mbit 100] [--delay-ms 25] [--window 262144]
#                                                [--bytes 67108864] [--streams 1,2,3,4,8,16]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
if [[ $# -gt 0 && $1 != --* ]]; then
  BUILD_DIR="$(cd "$1" && pwd)"
  shift
fi
RATE=100 DELAY=25 WINDOW=262144 BYTES=67108864 STREAMS=1,2,3,4,8,16
while (($#)); do
  case "$1" in
    --rate-mbit) RATE="$2" ;;
    --delay-ms) DELAY="$2" ;;
    --window) WINDOW="$2" ;;
    --bytes) BYTES="$2" ;;
    --streams) STREAMS="$2" ;;
    *) echo "multistream_testbed_bench: unknown flag $1" >&2 && exit 2 ;;
  esac
  shift 2
done
# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root multistream_testbed_bench
BIN="$BUILD_DIR/bench/multistream_bench"
[[ -x $BIN ]] || { echo "multistream_testbed_bench: build $BIN first (ninja -C build multistream_bench)" >&2 && exit 2; }

P="msb$$"
A="$P-a" B="$P-b"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add a0 type veth peer name b0 netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev a0
ip -n "$B" addr add 10.77.0.2/24 dev b0
for ns in "$A" "$B"; do
  ip -n "$ns" link set lo up
done
ip -n "$A" link set a0 up
ip -n "$B" link set b0 up
# tbf on both ends (as scripts/cluster-testbed does): bucket = max(32 KiB, 5 ms at the rate), 50 ms queue.
BURST=$((RATE * 1000000 / 8 / 200))
((BURST < 32768)) && BURST=32768
tc -n "$A" qdisc add dev a0 root tbf rate "${RATE}mbit" burst "$BURST" latency 50ms
tc -n "$B" qdisc add dev b0 root tbf rate "${RATE}mbit" burst "$BURST" latency 50ms

KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
WORK="$(mktemp -d /tmp/multistream-bench.XXXXXX)"
ip netns exec "$B" "$BIN" relay --listen 10.77.0.2:7600 --target 127.0.0.1:7601 --delay-ms "$DELAY" \
  --window "$WINDOW" 2>"$WORK/relay.log" &
PIDS+=($!)
ip netns exec "$B" "$BIN" recv --listen 127.0.0.1:7601 --streams "$STREAMS" --key "$KEY" 2>"$WORK/recv.log" &
PIDS+=($!)
sleep 0.5

echo "# B13 multistream: tbf ${RATE} Mbit/s both ends, relay delay ${DELAY} ms each way (RTT $((2 * DELAY)) ms)"
echo "# $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) cores, kernel $(uname -r)"
ip netns exec "$A" "$BIN" send --target 10.77.0.2:7600 --streams "$STREAMS" --bytes "$BYTES" --key "$KEY" \
  --line-mbit "$RATE" --rtt-ms $((2 * DELAY)) --window "$WINDOW"
wait "${PIDS[1]}" || { cat "$WORK/recv.log" >&2 && exit 1; }
echo "# receiver: $(grep -c '^recv' "$WORK/recv.log") transfers ok; tbf drops on a0: $(tc -s -n "$A" qdisc show dev a0 |
  awk '/dropped/ { gsub(/,/, ""); print $7 }')"
rm -rf "$WORK"
