#!/usr/bin/env bash
# `tributary probe` across a tbf-shaped veth between two network namespaces (docs/placement.md):
#   bash tests/system/link_probe_testbed_test.sh BUILD_DIR
# The measured goodput is within 10% below the shaped rate (TCP/IP headers take ~4%) and never above it,
# for two rates; a peer with another key is refused. Needs root and `ip netns`; otherwise SKIP, exit 77.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
BIN="$BUILD_DIR/cli/tributary"
if [[ $(id -u) -ne 0 ]] || ! ip netns list >/dev/null 2>&1; then
  echo "SKIP link_probe_testbed_test: needs root and ip netns"
  exit 77
fi
P="lp$$"
WORK="$(mktemp -d /tmp/link-probe.XXXXXX)"
failures=0
cleanup() {
  pkill -f "probe --serve 10.98.0.2" 2>/dev/null || true
  ip netns del "${P}a" 2>/dev/null || true
  ip netns del "${P}b" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

ip netns add "${P}a"
ip netns add "${P}b"
ip link add "${P}x" type veth peer name "${P}y"
ip link set "${P}x" netns "${P}a"
ip link set "${P}y" netns "${P}b"
ip -n "${P}a" addr add 10.98.0.1/24 dev "${P}x"
ip -n "${P}b" addr add 10.98.0.2/24 dev "${P}y"
ip -n "${P}a" link set "${P}x" up
ip -n "${P}b" link set "${P}y" up
head -c 32 /dev/urandom >"$WORK/key"
head -c 32 /dev/urandom >"$WORK/other"
ip netns exec "${P}b" "$BIN" probe --serve 10.98.0.2:7777 --key-file "$WORK/key" >"$WORK/server.log" 2>&1 &
for _ in $(seq 1 50); do grep -q "probe server on" "$WORK/server.log" && break; sleep 0.1; done

within() { # within MBPS RATE: RATE x 0.9 <= MBPS <= RATE x 1.02
  python3 -c "import sys; m, r = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if 0.9 * r <= m <= 1.02 * r else 1)" "$1" "$2"
}
for rate in 100 20; do
  for dev in "${P}a ${P}x" "${P}b ${P}y"; do
    read -r ns ifc <<<"$dev"
    tc -n "$ns" qdisc replace dev "$ifc" root tbf rate "${rate}mbit" burst 64kb latency 50ms
  done
  out="$(ip netns exec "${P}a" "$BIN" probe 10.98.0.2:7777 --key-file "$WORK/key" --format json)"
  mbps="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["data"]["mbps"])' "$out")"
  echo "shaped ${rate} Mbit/s: measured $mbps Mbit/s"
  check "the probe measures ${rate} Mbit/s within 10% below the line rate" within "$mbps" "$rate"
done
set +e
ip netns exec "${P}a" "$BIN" probe 10.98.0.2:7777 --key-file "$WORK/other" >"$WORK/refused.log" 2>&1
rc=$?
set -e
check "a peer with another key is refused (exit 2)" test "$rc" -eq 2
check "the refusal names the peer" grep -q "probe peer 10.98.0.2:7777" "$WORK/refused.log"
((failures == 0)) && echo "all checks passed"
exit $((failures > 0))
