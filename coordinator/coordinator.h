// The coordinator daemon (`tributary coordinator`): the worker registry, the job table and the round
// loop of every running job, behind one ZeroMQ ROUTER endpoint (workers and CLI clients, CURVE by
// default; docs/protocol.md) and an optional HTTP endpoint (health, metrics, JSON job and worker view,
// the dashboard page: docs/dashboard.md).
//
// One thread owns the socket, the store and every job (Run); HTTP callbacks read a view the loop
// publishes. Inside, the loop dispatches to components that own their state (coordinator_internal.h):
// WorkerRegistry (worker_registry.h), UploadIntake (upload_intake.h), BulkObjects (bulk_objects.h),
// one JobRunner per job (job_runner.h), rendered by JobView (job_view.h).
//
// Durability comes from the checkpoint store: every accepted upload and every committed round is
// written (synced) before anything is broadcast, so a coordinator killed at any moment is restarted
// with Create on the same data_dir and resumes every running job from its last committed round
// (RoundDriver::Resume), keeping the accepted uploads of the open round.
//
// After a start the coordinator waits `restart_grace_ms` before it plans rounds, so that workers that
// were connected before a restart re-register first and a resumed round sees the same inventory.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/loop_hooks.h"
#include "base/status.h"
#include "coordinator/rate_limit.h"
#include "transport/bulk.h"
#include "transport/security.h"

namespace tributary {

struct CoordinatorOptions {
  std::string listen = "tcp://0.0.0.0:7400";      // ZeroMQ endpoint ("tcp://127.0.0.1:*": any free port)
  std::string http_listen;                        // "host:port" (port 0: any free port); empty: no HTTP
  std::string http_token;                         // bearer token for /metrics and /api (http_server.h); "": none
  std::string data_dir;                           // RocksDB store, job logs and exports live here
  bool insecure = false;                          // no CURVE (logs a warning at every start)
  transport::KeyPair keys;                        // required unless insecure
  transport::AllowList allow_list;                // admitted worker and client keys (required unless insecure)
  int64_t heartbeat_interval_ms = 5000;           // told to workers at registration
  int heartbeat_misses = 3;                       // dead after this many missed heartbeats
  int64_t forget_workers_after_ms = 3600 * 1000;  // a dead worker leaves the registry (0: never)
  RateLimitOptions rate_limit;                    // messages per peer (its key; its connection when insecure)
  int64_t restart_grace_ms = -1;                  // -1: 1.5 heartbeat intervals
  std::map<std::string, std::string> eval_data;   // held-out datasets: name -> path (job spec eval.dataset)
  bool sync_writes = true;                        // synced RocksDB writes (off only for benchmarks)
  uint64_t store_reserve_bytes = 64ull << 20;     // free space the store keeps (checkpoint::StoreOptions)
  uint64_t inline_payload_bytes = transport::kDefaultInlinePayloadBytes;  // larger aggregates go as bulk objects
  // Cluster mode's link probes (docs/placement.md, "Measured links"): bulk bytes per probe at most, and
  // how long a probe (or a worker's responder start) may take before it counts as failed.
  uint64_t probe_bytes = 64 << 20;
  int64_t probe_timeout_ms = 10000;
  int probe_port = 0;  // where uplink probes listen, on the host of `listen`; 0: any free port
  // Multistream transfers of served aggregates and snapshots (docs/multistream.md, "In the daemons").
  uint64_t multistream_min_bytes = 8 << 20;     // smaller objects are refused (bulk path); 0: multistream off
  std::string multistream_ports;                // listeners' ports: "" any free, "PORT" or "LOW-HIGH"
  int multistream_streams = 0;                  // 0: from the worker's measured uplink; 1..16: always this many
  int multistream_max_transfers = 8;            // offers in flight; more are refused (bulk path)
  uint64_t multistream_window_bytes = 1 << 20;  // one stream's TCP window, for N = ceil(BDP / window)
  // Tests: each held-out evaluation takes at least this much longer (a slow evaluation, off the loop).
  int64_t evaluation_delay_ms = 0;
  // Run calls hooks.alive every loop iteration, hooks.status with a summary line when it changed
  // ("1 job running; job J round 3/10; 4 workers alive") and hooks.stopping when it stops.
  LoopHooks hooks;
};

class Coordinator {
 public:
  // Opens the store (resuming running jobs), binds the endpoints. Errors name the option or file.
  static Result<std::unique_ptr<Coordinator>> Create(CoordinatorOptions options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The bound ZeroMQ endpoint (with the actual port) and HTTP port (0 when off).
  const std::string& endpoint() const;
  int http_port() const;

  // Serves until *stop becomes true. Returns OK on a clean stop; an error only when the store fails.
  Status Run(const std::atomic<bool>* stop);

  struct Impl;

 private:
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary
