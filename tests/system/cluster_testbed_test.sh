#!/usr/bin/env bash
# Self-test of scripts/cluster-testbed (docs/testbed.md):
#   bash tests/system/cluster_testbed_test.sh BUILD_DIR
# Needs root and working `ip netns`; otherwise prints a SKIP line and exits 77. Needs BUILD_DIR/bench/delay_relay
# (cmake --build BUILD_DIR --target delay_relay). Brings up 2 islands x 2 workers, WAN 8mbit with 30 ms one-way
# delay, checks reachability, RTT, tbf rate, counter separation and teardown, and prints what it measured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
TB="$ROOT/scripts/cluster-testbed"
RELAY="$BUILD_DIR/bench/delay_relay"

# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root cluster_testbed_test
[[ -x $RELAY ]] || {
  echo "FAIL: $RELAY missing (cmake --build $BUILD_DIR --target delay_relay)"
  exit 1
}

PREFIX="tbt$$"
PREFIX="${PREFIX:0:12}"
STATE="$(mktemp -d /tmp/cluster-testbed-test.XXXXXX)"
export TB_PREFIX="$PREFIX" TB_STATE_DIR="$STATE" TB_RELAY_BIN="$RELAY"
RATE_MBIT=8
DELAY_MS=30
failures=0

cleanup() {
  "$TB" down >/dev/null 2>&1 || true
  rm -rf "$STATE"
}
trap cleanup EXIT

fcmp() { awk -v a="$1" -v b="$3" "BEGIN{exit !(a $2 b)}"; }
tbx() { "$TB" exec "$@"; }

# Start a helper server in a namespace and wait until it accepts connections.
serve() {  # serve NS_SUFFIX MODE IP:PORT
  tbx "$1" -- "$RELAY" "--$2" --listen "$3" 2>>"$STATE/servers.log" &
  local k
  for ((k = 0; k < 50; k++)); do
    if tbx "$1" -- bash -c "exec 3<>/dev/tcp/${3%:*}/${3#*:}" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: $2 server on $3 in $1 did not start"
  return 1
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

if command -v setpriv >/dev/null; then
  out="$(setpriv --reuid=65534 --regid=65534 --clear-groups "$TB" up --wan-rate 1mbit --wan-delay-ms 1 2>&1 || true)"
  check "up refuses to run as non-root" grep -q "must run as root" <<<"$out"
fi

"$TB" up --islands 2 --workers 2 --wan-rate "${RATE_MBIT}mbit" --wan-delay-ms "$DELAY_MS" --coord-port 7400 \
  >"$STATE/summary.env"
# shellcheck disable=SC1091
source "$STATE/summary.env"
echo "testbed up: prefix $PREFIX, delay mode $TB_DELAY_MODE, coordinator $TB_COORD_IP in $TB_COORD_NS"

# (1) Island peers reach each other over the bridge; workers reach a listener at the coordinator address.
serve wan echo "$TB_COORD_IP:7400"
serve i0w1 echo "$TB_I0W1_IP:9000"
out="$(tbx i0w0 -- "$RELAY" --rtt --target "$TB_I0W1_IP:9000" --count 20)"
echo "  i0w0 -> i0w1 (island peer, TCP ping): $out"
check "island peer reachable over the bridge" test -n "$(field min "$out")"
check "island peer RTT well below the WAN delay" fcmp "$(field max "$out")" "<" "$DELAY_MS"

# (2) RTT through each island's coordinator address (the relay, or netem) is >= 2 x one-way delay.
for w in I0W0 I1W1; do
  addr_var="TB_${w}_COORD_ADDR"
  out="$(tbx "${w,,}" -- "$RELAY" --rtt --target "${!addr_var}" --count 10)"
  echo "  ${w,,} -> coordinator via ${!addr_var}: $out"
  check "${w,,} reaches the coordinator listener; RTT min >= 2 x ${DELAY_MS} ms" \
    fcmp "$(field min "$out")" ">=" "$((2 * DELAY_MS))"
  check "${w,,} RTT avg below 2 x delay + 40 ms" fcmp "$(field avg "$out")" "<" "$((2 * DELAY_MS + 40))"
done

# (3) Bulk transfer across the WAN veth is limited near the tbf rate, in both directions.
# The sink listens on island 0's coordinator host in the wan namespace (the relay's transit address, or the
# coordinator address under netem): the transfer crosses i0's wan veth but not the relay.
wan_sink="$TB_I0_COORD_HOST:9100"
serve wan sink "$wan_sink"
serve i0w0 sink "$TB_I0W0_IP:9100"
bytes=$((RATE_MBIT * 1000000 * 3 / 8))  # about 3 s at the rate
lo="$(awk -v r="$RATE_MBIT" 'BEGIN{print 0.5*r}')"
hi="$(awk -v r="$RATE_MBIT" 'BEGIN{print 1.3*r}')"
out="$(tbx i0w0 -- "$RELAY" --send "$bytes" --target "$wan_sink")"
echo "  i0w0 -> wan bulk: $out (tbf rate ${RATE_MBIT} Mbit/s)"
check "upstream bulk rate within [$lo, $hi] Mbit/s" \
  bash -c "awk -v x=$(field mbit_s "$out") -v lo=$lo -v hi=$hi 'BEGIN{exit !(x >= lo && x <= hi)}'"
out="$(tbx wan -- "$RELAY" --send "$bytes" --target "$TB_I0W0_IP:9100")"
echo "  wan -> i0w0 bulk: $out"
check "downstream bulk rate within [$lo, $hi] Mbit/s" \
  bash -c "awk -v x=$(field mbit_s "$out") -v lo=$lo -v hi=$hi 'BEGIN{exit !(x >= lo && x <= hi)}'"

# (4) Intra-island traffic stays off the wan links.
serve i0w1 sink "$TB_I0W1_IP:9100"
total() { "$TB" counters | awk -v k="$1" '$1 == "total-" k {print $2 + $3}'; }
wan0="$(total wan)"
intra0="$(total intra)"
intra_bytes=$((200 * 1000 * 1000))
out="$(tbx i0w0 -- "$RELAY" --send "$intra_bytes" --target "$TB_I0W1_IP:9100")"
echo "  i0w0 -> i0w1 intra bulk: $out"
wan_delta=$(($(total wan) - wan0))
intra_delta=$(($(total intra) - intra0))
echo "  counters during the intra transfer: intra +$intra_delta bytes, wan +$wan_delta bytes"
"$TB" counters | sed 's/^/  /'
check "intra counters saw the ${intra_bytes}-byte transfer" test "$intra_delta" -ge "$intra_bytes"
check "wan counters stayed flat (< 16 KiB) during intra traffic" test "$wan_delta" -lt 16384

# (5) down removes every namespace and relay of the prefix; a second down is a no-op.
mapfile -t relay_pids < <(cat "$STATE/$PREFIX"/*.pid 2>/dev/null || true)
"$TB" down 2>&1 | sed 's/^/  /'
check "down is idempotent" "$TB" down
check "no namespace of the prefix left" test -z "$(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true)"
check "no link of the prefix in the root namespace" test -z "$(ip -o link | grep -F "$PREFIX-" || true)"
left=0
for pid in "${relay_pids[@]}"; do
  if [[ -r /proc/$pid/cmdline ]] && grep -q delay_relay "/proc/$pid/cmdline" 2>/dev/null; then left=1; fi
done
check "relay processes gone (${#relay_pids[@]} recorded)" test "$left" -eq 0
check "state file removed" test ! -e "$STATE/$PREFIX.env"

if ((failures)); then
  echo "cluster_testbed_test: $failures check(s) FAILED"
  exit 1
fi
echo "cluster_testbed_test: all checks passed"
