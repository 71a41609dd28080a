#!/usr/bin/env bash
# A cluster-mode job on the one-machine testbed (docs/testbed.md, docs/cluster.md):
#   bash tests/system/cluster_testbed_job_test.sh BUILD_DIR
# 2 islands x 2 workers in their own network namespaces, islands planned from the fabric identity the workers
# detect themselves (the IPv4 network of their fabric interface: no worker.nics given),
# the coordinator in the wan namespace behind tbf-shaped, delayed links; the real daemons with CURVE.
# Checks: the job completes; every member ends on the committed weights; the bytes on the wan links match
# the int8 codec's formula (islands x upload + members x broadcast per round, plus bounded control
# traffic); a member killed mid-round is evicted and its island re-forms while the other island's round goes on.
# Needs root and `ip netns`; otherwise prints a SKIP line and exits 77.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
TB="$ROOT/scripts/cluster-testbed"
BIN="$BUILD_DIR/cli/tributary"

# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root cluster_testbed_job_test

PREFIX="tbj$$"
PREFIX="${PREFIX:0:12}"
WORK="$(mktemp -d /tmp/cluster-testbed-job.XXXXXX)"
export TB_PREFIX="$PREFIX" TB_STATE_DIR="$WORK/state" TB_RELAY_BIN="$BUILD_DIR/bench/delay_relay"
ROUNDS=3
failures=0

cleanup() {
  "$TB" down >/dev/null 2>&1 || true
  if ((failures == 0)); then rm -rf "$WORK"; else echo "files kept in $WORK"; fi
}
trap cleanup EXIT

wan_bytes() { "$TB" counters | awk '$1 == "total-wan" { print $2 + $3 }'; }
cli() { "$TB" exec wan -- "$BIN" --config "$WORK/client.yaml" "$@"; }

# Model, data, keys and the CLI profile (the coordinator listens on the wan namespace's 10.200.0.1).
testbed_prepare "$WORK" "$BIN" 10.200.0.1

# 7401: the coordinator's uplink probe port (coordinator.probe_port), relayed like 7400 when delay runs in userspace.
"$TB" up --islands 2 --workers 2 --wan-rate 20mbit --wan-delay-ms 10 --coord-port 7400,7401 >"$WORK/testbed.env"
# shellcheck disable=SC1091
source "$WORK/testbed.env"

"$TB" exec wan -- "$BIN" --set coordinator.heartbeat_interval_s=0.5 --set coordinator.probe_port=7401 coordinator \
  --listen "tcp://$TB_COORD_IP:7400" --http "$TB_COORD_IP:8080" --data-dir "$WORK/store" \
  --key "$WORK/keys/coordinator.key" --allowed-keys "$WORK/keys/allowed" \
  --eval-data "demo-heldout=$WORK/demo/data/heldout.jsonl" >"$WORK/coordinator.log" 2>&1 &
for i in 0 1; do
  for j in 0 1; do
    n=$((2 * i + j))
    testbed_start_worker "$TB" "$WORK" "$BIN" "$i" "$j" "$n" - "$WORK/w$n.log"
  done
done

cat >"$WORK/job.yaml" <<EOF
name: testbed cluster job
model: {base: $WORK/demo/base-model}
data: {dataset: demo, seq_len: 128}
federation: {mode: cluster, rounds: $ROUNDS, min_clients: 3, deadline_floor_s: 20, deadline_ceiling_s: 300}
train: {local_steps: 30, batch_size: 8, lr: 0.3, optimizer: sgd, max_grad_norm: 1.0}
cluster: {codec: int8, collective_timeout_s: 5}
eval: {dataset: demo-heldout}
EOF

# Wait until all four workers registered, then measure the wan bytes of the job's rounds alone: after the
# link probes the job runs before its first round (docs/placement.md, "Measured links"; the uplink probes
# cross the wan), which the job log reports.
testbed_wait_registered "$WORK/coordinator.log" 4
job="$(cli submit "$WORK/job.yaml")"
echo "job $job"
for _ in $(seq 1 600); do
  cli logs "$job" 2>/dev/null | grep -q "links: campaign 1 done" && break
  sleep 0.1
done
before="$(wan_bytes)"
log="$(cli logs "$job")"
check "the job measured its links before its first round" grep -q "links: campaign 1 probes (job start: 2 pair(s) and 4 uplink(s)" <<<"$log"
check "every island pair and every uplink across the wan was measured" \
  grep -q "links: campaign 1 done in .*: 2 of 2 pair(s), 4 of 4 uplink(s) measured" <<<"$log"
grep "links: campaign 1" <<<"$log" || true
# The stored matrix (/api/jobs/<id> "links"): every uplink crosses the 20 Mbit/s wan, so it measures at most that
# rate (TCP/IP headers take ~4%) and not far below it.
uplinks_near_wan_rate() {
  "$TB" exec wan -- python3 - "http://$TB_COORD_IP:8080/api/jobs/$job" <<'PY'
import json, sys, urllib.request
links = json.load(urllib.request.urlopen(sys.argv[1]))["links"]
rates = {u["worker"]: round(u["mbps"], 1) for u in links["uplinks"]}
print("measured uplinks (Mbit/s):", rates, "pairs:", {p["a"] + "-" + p["b"]: round(p["mbps"]) for p in links["pairs"]})
sys.exit(0 if len(rates) == 4 and all(10 <= r <= 20.4 for r in rates.values()) else 1)
PY
}
check "the stored uplinks measure the shaped wan rate (10..20.4 Mbit/s)" uplinks_near_wan_rate

# Two fabrics detected from the workers' reports, and the plan keeps every dense group inside one.
islands_of_round1() {
  python3 - "$1" <<'PY'
import json, sys
islands = {i["island_id"]: sorted(i["members"]) for i in json.loads(sys.argv[1])["data"].get("islands", [])}
print(islands)
sys.exit(0 if islands == {"fabric:10.10.0.0/24": ["w0", "w1"], "fabric:10.11.0.0/24": ["w2", "w3"]} else 1)
PY
}
for _ in $(seq 1 300); do
  status="$(cli status "$job" --format json 2>/dev/null || true)"
  [[ -n $status ]] && islands_of_round1 "$status" >/dev/null && break
  sleep 0.2
done
check "islands are the two detected fabrics, each with its own two workers" islands_of_round1 "$status"

# Kill island 0's second member once round 2 is open.
for _ in $(seq 1 600); do
  cli logs "$job" 2>/dev/null | grep -q "round 2 opened" && break
  sleep 0.2
done
sleep 1
killed_ms="$(date +%s%3N)"
"$TB" exec i0w1 -- pkill -9 -f "name w1" || true
check "the job completes" cli wait "$job" --timeout 600
log="$(cli logs "$job")"
check "island fabric:10.10.0.0/24 re-forms without its killed member" \
  grep -q "round 2: island fabric:10.10.0.0/24 lost w1: re-formed" <<<"$log"
# shellcheck disable=SC2016  # $1 is bash -c's argument, expanded there
check "island fabric:10.11.0.0/24's round 2 is not re-planned" bash -c '! grep -q "re-planning the round" <<<"$1"' _ "$log"

# How long eviction took (reported, not asserted: a test never times): kill to the coordinator's re-formation.
reformed="$(grep -m1 "re-formed as incarnation" "$WORK/coordinator.log" | cut -c1-23 || true)"
if [[ -n $reformed ]]; then
  echo "eviction: island re-formed $(($(date -d "$reformed" +%s%3N) - killed_ms)) ms after the kill"
fi

# Replicas: every alive member ends on the last committed weights (they report it in heartbeats once the
# final broadcast arrived, so the wan counters are read after that).
replicas_final() {
  python3 - "$1" <<'PY'
import json, sys
job = json.loads(sys.argv[1])["data"]
last = job["rounds"][-1]
same = [r for r in job.get("replicas", []) if r["round"] == last["round"] and r["weights_hash"] == last["weights_hash"]]
print("replicas at the final hash:", sorted(r["worker_id"] for r in same))
sys.exit(0 if len(same) >= 3 else 1)
PY
}
for _ in $(seq 1 50); do
  status="$(cli status "$job" --format json)"
  replicas_final "$status" >/dev/null && break
  sleep 0.2
done
check "the three alive members hold the final weights" replicas_final "$status"
after="$(wan_bytes)"

# Bytes on the wan links against the codec's formula: per round 2 uploads + one broadcast per member.
read -r payload members_total <<<"$(python3 - "$status" <<'PY'
import json, sys
job = json.loads(sys.argv[1])["data"]
rounds = job["rounds"]
per = rounds[0]["bytes_up"] // rounds[0]["participants"]
print(per, sum(r["bytes_down"] for r in rounds) // per)
PY
)"
wan=$((after - before))
formula=$((ROUNDS * 2 * payload + members_total * payload))
echo "wan bytes $wan; codec formula $formula (int8 payload $payload B per island upload and per broadcast)"
check "wan bytes are at least the formula's payload bytes" test "$wan" -ge "$formula"
check "wan bytes exceed the formula by less than 25% (control, TCP/IP headers, rendezvous)" \
  test $((wan * 100)) -le $((formula * 125))
if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
