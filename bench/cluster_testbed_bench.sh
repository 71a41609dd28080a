#!/usr/bin/env bash
# Cluster mode on the namespace testbed (docs/testbed.md), side by side on one topology (benchmarks B1 and B2 of
# docs/benchmarks.md): the same 4 workers, data, model, seed and tokens in each configuration:
#   dp-span     one island spanning both sites: synchronous data parallel, its gradient all-reduce on the wan
#   diloco-int8 an island per site (by fabric identity), Nesterov outer step, int8 pseudo-gradients
#   ferret      an island per site, Ferret-projected pseudo-gradients (K per block), outer sgd lr 1
#   one-island  all 4 workers on one site (a 1 x 4 testbed): the ideal, nothing but the outer sync on the wan
# For each: wall time of the job (submitted to last round committed), tokens/s, bytes on the wan links
# (island <-> wan veths, both directions) and bytes per token, and the per-round cross-island sync time
# (committed - opened - the leaders' longest island phase: the fetch of the last mean, the upload, the commit)
# as p50 and p95 over the rounds after the first (benchmark B11 with --flap-period-s: the wan rate alternates
# between 1.5x and 0.5x --wan-rate every P seconds while each job runs).
#   sudo bash bench/cluster_testbed_bench.sh [BUILD_DIR] [--rounds 3] [--inner-steps 10] [--wan-rate 20mbit]
#                                            [--wan-delay-ms 25] [--flap-period-s P] [--only NAME]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
if [[ $# -gt 0 && $1 != --* ]]; then
  BUILD_DIR="$(cd "$1" && pwd)"
  shift
fi
ROUNDS=3 H=10 RATE=20mbit DELAY=25 ONLY="" FLAP=0
while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2" ;;
    --inner-steps) H="$2" ;;
    --wan-rate) RATE="$2" ;;
    --wan-delay-ms) DELAY="$2" ;;
    --only) ONLY="$2" ;;
    --flap-period-s) FLAP="$2" ;;
    *) echo "cluster_testbed_bench: unknown flag $1" >&2 && exit 2 ;;
  esac
  shift 2
done
# shellcheck source=tests/system/testbed_lib.sh
source "$ROOT/tests/system/testbed_lib.sh"
testbed_require_root cluster_testbed_bench
TB="$ROOT/scripts/cluster-testbed"
BIN="$BUILD_DIR/cli/tributary"
WORK="$(mktemp -d /tmp/cluster-testbed-bench.XXXXXX)"
export TB_PREFIX="tbb$$" TB_STATE_DIR="$WORK/state" TB_RELAY_BIN="$BUILD_DIR/bench/delay_relay"
BATCH=8 SEQ=128
trap '"$TB" down >/dev/null 2>&1 || true' EXIT

testbed_prepare "$WORK" "$BIN" 10.200.0.1

wan_bytes() { "$TB" counters | awk '$1 == "total-wan" { print $2 + $3 }'; }
cli() { "$TB" exec wan -- "$BIN" --config "$WORK/client.yaml" "$@"; }

# scaled_rate FACTOR: --wan-rate times FACTOR, in kbit (tc units).
scaled_rate() {
  [[ $RATE =~ ^([0-9.]+)(kbit|mbit|gbit)$ ]] || { echo "cluster_testbed_bench: --wan-rate: use kbit, mbit or gbit" >&2 && exit 2; }
  awk -v n="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[2]}" -v f="$1" \
    'BEGIN{m = (u == "kbit") ? 1 : (u == "mbit") ? 1e3 : 1e6; printf "%dkbit", n * m * f}'
}

# flap: until killed, the wan rate alternates between 0.5x and 1.5x --wan-rate every FLAP seconds.
flap() {
  local low high
  low="$(scaled_rate 0.5)" high="$(scaled_rate 1.5)"
  while true; do
    sleep "$FLAP" && "$TB" wan-rate "$low"
    sleep "$FLAP" && "$TB" wan-rate "$high"
  done
}

# run NAME ISLANDS WORKERS_PER_ISLAND CLUSTER_YAML: one job on a fresh testbed; prints a result row.
run() {
  local name="$1" islands="$2" per="$3" cluster="$4" dir="$WORK/$1"
  mkdir -p "$dir"
  "$TB" up --islands "$islands" --workers "$per" --wan-rate "$RATE" --wan-delay-ms "$DELAY" \
    --coord-port 7400 >"$dir/testbed.env"
  "$TB" exec wan -- "$BIN" --set coordinator.heartbeat_interval_s=1 coordinator --listen tcp://10.200.0.1:7400 \
    --http 10.200.0.1:8080 --data-dir "$dir/store" --key "$WORK/keys/coordinator.key" \
    --allowed-keys "$WORK/keys/allowed" --eval-data "demo-heldout=$WORK/demo/data/heldout.jsonl" \
    >"$dir/coordinator.log" 2>&1 &
  local i j n=0
  for ((i = 0; i < islands; i++)); do
    for ((j = 0; j < per; j++)); do
      testbed_start_worker "$TB" "$WORK" "$BIN" "$i" "$j" "$n" site "$dir/w$n.log"
      n=$((n + 1))
    done
  done
  cat >"$dir/job.yaml" <<EOF
name: testbed bench $name
model: {base: $WORK/demo/base-model}
data: {dataset: demo, seq_len: $SEQ}
federation: {mode: cluster, rounds: $ROUNDS, min_clients: 4, seed: 5, deadline_floor_s: 600, deadline_ceiling_s: 3600}
train: {local_steps: $H, batch_size: $BATCH, lr: 0.3, optimizer: sgd, max_grad_norm: 1.0}
eval: {dataset: demo-heldout, every: $ROUNDS}
$cluster
EOF
  testbed_wait_registered "$dir/coordinator.log" 4
  local before after job status
  before="$(wan_bytes)"
  job="$(cli submit "$dir/job.yaml")"
  local flapper=""
  if [[ $FLAP != 0 ]]; then
    flap &
    flapper=$!
  fi
  cli wait "$job" --timeout 3600 >/dev/null
  [[ -z $flapper ]] || { kill "$flapper" && wait "$flapper" || true; }
  for _ in $(seq 1 50); do # the final broadcast has arrived once every member reports the last round
    status="$(cli status "$job" --format json)"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1])["data"]; r=d["rounds"][-1]
sys.exit(0 if sum(x["round"]==r["round"] for x in d["replicas"]) >= 4 else 1)' "$status" && break
    sleep 0.2
  done
  after="$(wan_bytes)"
  python3 - "$name" "$status" "$((after - before))" "$((ROUNDS * H * 4 * BATCH * SEQ))" <<'PY'
import json, sys
name, status, wan, tokens = sys.argv[1], json.loads(sys.argv[2])["data"], int(sys.argv[3]), int(sys.argv[4])
rounds = status["rounds"]
wall = (rounds[-1]["committed_unix_ms"] - status["job"]["created_unix_ms"]) / 1000.0
print(f"{name:12s} wall {wall:8.1f} s  tokens/s {tokens / wall:8.1f}  wan {wan:11d} B  wan B/token {wan / tokens:9.3f}  "
      f"held-out {rounds[-1]['heldout_loss']:.4f}  state {status['job']['state']}")
# Cross-island sync per round, the first round (model loading, calibration, probes) left out.
sync = sorted((r["committed_unix_ms"] - r["opened_unix_ms"]) / 1000.0 - r["slowest_train_seconds"]
              for r in rounds[1:] if r.get("opened_unix_ms"))
if sync:
    pick = lambda q: sync[min(len(sync) - 1, int(q * len(sync)))]
    print(f"{'':12s} sync over {len(sync)} rounds: p50 {pick(0.5):.3f} s  p95 {pick(0.95):.3f} s  "
          f"p95/p50 {pick(0.95) / pick(0.5):.2f}  max {sync[-1]:.3f} s")
PY
  "$TB" down >/dev/null 2>&1
}

want() { [[ -z $ONLY || $ONLY == "$1" ]]; }
echo "cluster_testbed_bench: $ROUNDS rounds x $H inner steps x 4 workers x $BATCH x $SEQ tokens; wan $RATE, ${DELAY} ms each way"
want dp-span && run dp-span 2 2 "cluster: {codec: fp32, outer_optimizer: sgd, outer_lr: 1, islands: ['span=w0,w1,w2,w3']}"
want diloco-int8 && run diloco-int8 2 2 "cluster: {codec: int8}"
want ferret && run ferret 2 2 "$(printf 'cluster: {codec: ferret, outer_optimizer: sgd, outer_lr: 1}\nferret: {k: 256}')"
want one-island && run one-island 1 4 "cluster: {codec: int8}"
rm -rf "$WORK"
