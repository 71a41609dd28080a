# shellcheck shell=bash
# Shared by the scripts that run on the namespace testbed (tests/system/cluster_testbed*_test.sh,
# bench/cluster_testbed_bench.sh): sourced, not run.

# Runs COMMAND...; prints "ok: DESCRIPTION" or "FAIL: DESCRIPTION" and counts the failures in the caller's
# `failures` variable (the scripts exit non-zero when it is above 0).
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then
    echo "ok: $what"
  else
    echo "FAIL: $what"
    failures=$((failures + 1))
  fi
}

# Exits 77 with a SKIP line (ctest's skip code) unless this is root with a working `ip netns`.
testbed_require_root() { # testbed_require_root NAME
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: $1 needs root (network namespaces)"
    exit 77
  fi
  if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "SKIP: $1 needs a working 'ip netns'"
    exit 77
  fi
}

# The demo's model, worker shards and held-out set in WORK/demo (one short demo run on loopback), and CURVE
# keys in WORK/keys: the coordinator's, the CLI's (client) and workers w0..w3, all on WORK/keys/allowed; the
# CLI profile WORK/client.yaml for a coordinator on tcp://COORD_IP:7400.
testbed_prepare() { # testbed_prepare WORK BIN COORD_IP
  local work="$1" bin="$2" name
  "$bin" demo --dir "$work/demo" --rounds 1 >"$work/demo.log" 2>&1 || {
    cat "$work/demo.log"
    return 1
  }
  mkdir -p "$work/keys"
  "$bin" keygen -o "$work/keys/coordinator" >/dev/null
  : >"$work/keys/allowed"
  for name in client w0 w1 w2 w3; do
    "$bin" keygen -o "$work/keys/$name" >/dev/null
    echo "$(cat "$work/keys/$name.pub") $name" >>"$work/keys/allowed"
  done
  printf 'client:\n  coordinator: tcp://%s:7400\n  secret_key: %s\n  coordinator_key: %s\n' \
    "$3" "$work/keys/client.key" "$work/keys/coordinator.pub" >"$work/client.yaml"
}

# Starts worker wN (N = the worker's index over the islands) in namespace i<I>w<J>, in the background: its
# island fabric address, fabric identity "<FABRIC_PREFIX><I>" on fab0 (FABRIC_PREFIX "-": none given, the
# worker detects it: the IPv4 network of fab0), the demo shard worker-<N+1>.
testbed_start_worker() { # testbed_start_worker TB WORK BIN I J N FABRIC_PREFIX LOG
  local tb="$1" work="$2" bin="$3" i="$4" j="$5" n="$6" nics=""
  if [[ $7 != "-" ]]; then nics="--set \"worker.nics=['fab0:ethernet:10000:$7$i']\""; fi
  "$tb" exec "i${i}w$j" -- sh -c "exec '$bin' --set worker.threads=1 --set worker.island_address=\$TB_SELF_IP \
    $nics worker --coordinator tcp://\$TB_COORD_ADDR --name w$n \
    --key '$work/keys/w$n.key' --coordinator-key '$work/keys/coordinator.pub' \
    --data 'demo=$work/demo/data/worker-$((n + 1)).jsonl'" >>"$8" 2>&1 &
}

# Waits (up to 30 s) until LOG shows N worker registrations.
testbed_wait_registered() { # testbed_wait_registered LOG N
  local _
  for _ in $(seq 1 150); do
    [[ $(grep -c "registered" "$1" 2>/dev/null || true) -ge $2 ]] && return 0
    sleep 0.2
  done
  return 1
}
