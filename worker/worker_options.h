// The worker daemon's settings (`tributary worker` builds them from the config and flags), shared by
// the daemon's components (worker/worker_daemon.h draws how they fit together).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/loop_hooks.h"
#include "transport/bulk.h"
#include "transport/security.h"
#include "worker/calibration.h"
#include "worker/capabilities.h"
#include "worker/replica.h"

namespace tributary {

struct WorkerOptions {
  std::string worker_id;                         // required
  std::string coordinator;                       // tcp://HOST:PORT
  bool insecure = false;                         // no CURVE (logs a warning at every start)
  transport::KeyPair keys;                       // worker key pair (required unless insecure)
  std::string coordinator_public_key;            // Z85 (required unless insecure)
  std::vector<DatasetInfo> datasets;             // name, path, samples (already counted by the caller)
  WorkerCapabilities capabilities;               // as detected (an empty datasets field is filled from `datasets`)
  int threads = 0;                               // compute threads (0 = all cores) -> SetNumThreads
  int64_t default_heartbeat_interval_ms = 5000;  // until the RegisterAck says otherwise
  std::string software_version;                  // reported in the capabilities
  int request_timeout_ms = 10000;  // one work-connection request; Timeout/Unavailable are retried until stop
  // Dense (fedavg, lora) payloads above this are refused (a memory sanity limit).
  uint64_t max_dense_payload_bytes = kMaxDensePayloadBytes;
  // Cluster mode: the address of this worker's island fabric interface; the island's gloo connections
  // bind there only (docs/cluster.md: an island is a trusted fabric).
  std::string island_address = "127.0.0.1";
  // Uploads above this go as a bulk object the coordinator pulls (transport/bulk.h bounds it).
  uint64_t inline_payload_bytes = transport::kDefaultInlinePayloadBytes;
  // Aggregates and snapshots of at least this many bytes are asked for over parallel TCP streams first
  // (transport/multistream_serve.h; the bulk path when that fails). 0: always the bulk path.
  uint64_t multistream_min_bytes = uint64_t{8} << 20;
  // Compute calibration once per job when its replica is first built (worker/calibration.h); the rate
  // (or the override) is reported in heartbeats. `tributary worker`: worker.calibrate, worker.tokens_per_s.
  CalibrationOptions calibration;
  // After a stop request: how long the worker may go on with the item in progress (its tasklet and
  // upload) before it gives up on it (WorkerDaemon::Run). 0: at once. `tributary worker` sets it from
  // worker.drain_timeout_s (default 60 s).
  int64_t drain_timeout_ms = 0;
  // The control loop calls hooks.alive every iteration, hooks.ready once registered, hooks.status
  // with "registered as w1; training job J round 3" when that changed, hooks.stopping when it drains.
  LoopHooks hooks;
  // Called on the compute thread just before each tasklet (job id, round); empty in `tributary worker`.
  // Tests make it throw, as a tasklet that runs out of memory does (std::bad_alloc).
  std::function<void(const std::string& job_id, uint64_t round)> before_tasklet;
};

}  // namespace tributary
