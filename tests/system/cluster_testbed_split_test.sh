#!/usr/bin/env bash
# Measured links split an island (docs/placement.md, "Measured links" and decision 2) on the one-machine
# testbed (docs/testbed.md):
#   bash tests/system/cluster_testbed_split_test.sh BUILD_DIR
# One fabric of 3 workers in their own network namespaces; the bridge port to w2 is tbf-shaped to 100 Mbit/s,
# the others are not. The coordinator probes the fabric's pairs before the first round, stores the matrix with
# the job, and the planner's bandwidth clustering cuts the slow pairs: w0 and w1 train as one island, w2 alone.
# Needs root and `ip netns`; otherwise prints a SKIP line and exits 77.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
TB="$ROOT/scripts/cluster-testbed"
BIN="$BUILD_DIR/cli/tributary"

# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root cluster_testbed_split_test

PREFIX="tbs$$"
PREFIX="${PREFIX:0:12}"
WORK="$(mktemp -d /tmp/cluster-testbed-split.XXXXXX)"
export TB_PREFIX="$PREFIX" TB_STATE_DIR="$WORK/state"
failures=0

cleanup() {
  "$TB" down >/dev/null 2>&1 || true
  if ((failures == 0)); then rm -rf "$WORK"; else echo "files kept in $WORK"; fi
}
trap cleanup EXIT

cli() { "$TB" exec wan -- "$BIN" --config "$WORK/client.yaml" "$@"; }

testbed_prepare "$WORK" "$BIN" 10.200.0.1
# No wan delay: no userspace relay is needed, and the coordinator's probe port is reachable directly.
"$TB" up --islands 1 --workers 3 --wan-rate 1gbit --wan-delay-ms 0 --coord-port 7400 >"$WORK/testbed.env"
# shellcheck disable=SC1091
source "$WORK/testbed.env"
# Traffic to w2 leaves the island's bridge on port w2: shaped, so every pair with w2 measures ~100 Mbit/s.
"$TB" exec i0 -- tc qdisc replace dev w2 root tbf rate 100mbit burst 64kb latency 50ms

"$TB" exec wan -- "$BIN" --set coordinator.heartbeat_interval_s=0.5 coordinator \
  --listen "tcp://$TB_COORD_IP:7400" --http "$TB_COORD_IP:8080" --data-dir "$WORK/store" \
  --key "$WORK/keys/coordinator.key" --allowed-keys "$WORK/keys/allowed" >"$WORK/coordinator.log" 2>&1 &
for j in 0 1 2; do
  testbed_start_worker "$TB" "$WORK" "$BIN" 0 "$j" "$j" - "$WORK/w$j.log"
done

cat >"$WORK/job.yaml" <<EOF
name: testbed split job
model: {base: $WORK/demo/base-model}
data: {dataset: demo, seq_len: 128}
federation: {mode: cluster, rounds: 1, min_clients: 3, deadline_floor_s: 20, deadline_ceiling_s: 300}
train: {local_steps: 5, batch_size: 8, lr: 0.3, optimizer: sgd, max_grad_norm: 1.0}
cluster: {codec: int8, collective_timeout_s: 5}
EOF
testbed_wait_registered "$WORK/coordinator.log" 3
job="$(cli submit "$WORK/job.yaml")"
echo "job $job"

# The round's islands while it is open: the measured matrix cut w2 off the fast pair.
islands_split() {
  python3 - "$1" <<'PY'
import json, sys
islands = sorted(sorted(i["members"]) for i in json.loads(sys.argv[1])["data"].get("islands", []))
print("islands:", islands)
sys.exit(0 if islands == [["w0", "w1"], ["w2"]] else 1)
PY
}
status=""
for _ in $(seq 1 600); do
  status="$(cli status "$job" --format json 2>/dev/null || true)"
  [[ -n $status ]] && islands_split "$status" >/dev/null && break
  sleep 0.2
done
check "w0 and w1 train as one island, w2 (behind the 100 Mbit/s port) alone" islands_split "$status"

log="$(cli logs "$job")"
grep "links: campaign 1" <<<"$log" || true
check "the job measured its fabric's three pairs before its first round" \
  grep -q "links: campaign 1 done in .*: 3 of 3 pair(s)" <<<"$log"
pairs_measured() {
  "$TB" exec wan -- python3 - "http://$TB_COORD_IP:8080/api/jobs/$job" <<'PY'
import json, sys, urllib.request
pairs = {p["a"] + "-" + p["b"]: p["mbps"] for p in json.load(urllib.request.urlopen(sys.argv[1]))["links"]["pairs"]}
print("measured pairs (Mbit/s):", {k: round(v, 1) for k, v in pairs.items()})
slow = [pairs.get("w0-w2", 0), pairs.get("w1-w2", 0)]
sys.exit(0 if all(50 <= s <= 102 for s in slow) and pairs.get("w0-w1", 0) > 4 * max(slow) else 1)
PY
}
check "the pairs with w2 measure the shaped 100 Mbit/s, the fast pair over 4x that" pairs_measured
check "the job completes" cli wait "$job" --timeout 600

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
