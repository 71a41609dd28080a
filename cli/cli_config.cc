#include "cli/cli_config.h"

#include "transport/bulk.h"

namespace tributary::cli {
const ConfigSchema& GlobalConfigSchema() {
  static const ConfigSchema* schema = [] {
    auto* s = new ConfigSchema();
    using T = ConfigType;
    s->Add(
        ConfigChoice("log.level", "info", "log level", {"trace", "debug", "info", "warn", "error", "critical", "off"}));
    s->Add(ConfigChoice("log.format", "text", "log line format", {"text", "json"}));

    s->Add(
        ConfigKey("coordinator.listen", T::kString, "tcp://0.0.0.0:7400", "ZeroMQ endpoint for workers and clients"));
    s->Add(ConfigKey("coordinator.http_listen", T::kString, "127.0.0.1:7401",
                     "host:port for /healthz, /readyz, /metrics, /api"));
    s->Add(ConfigKey("coordinator.http_token_file", T::kString, "''",
                     "file holding the bearer token /metrics, /api and the dashboard's data need ('': none)"));
    s->Add(ConfigKey("coordinator.data_dir", T::kString, "/var/lib/tributary", "RocksDB checkpoint store directory"));
    s->Add(ConfigRanged("coordinator.store_reserve_mb", T::kInt, "64",
                        "free space (MiB) the store leaves on its file system; writes that would leave less wait", 0,
                        1048576));
    s->Add(ConfigKey("coordinator.secret_key", T::kString, "''", "CURVE secret key file of the coordinator"));
    s->Add(ConfigKey("coordinator.allowed_keys", T::kString, "''", "file of admitted worker and client public keys"));
    s->Add(ConfigKey("coordinator.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(ConfigRanged("coordinator.heartbeat_interval_s", T::kFloat, "5", "expected worker heartbeat period", 0.1,
                        3600));
    s->Add(ConfigRanged("coordinator.heartbeat_misses", T::kInt, "3", "missed heartbeats before a worker is dead", 1,
                        1000));
    s->Add(ConfigRanged("coordinator.forget_workers_after_s", T::kFloat, "3600",
                        "a worker without a heartbeat this long leaves the registry and the views (0: never)", 0,
                        31536000));
    s->Add(ConfigRanged("coordinator.peer_messages_per_s", T::kFloat, "200",
                        "messages a peer may send per second on average (bulk chunks excepted); more are dropped", 1,
                        1e6));
    s->Add(
        ConfigRanged("coordinator.peer_message_burst", T::kFloat, "2000", "messages a peer may send at once", 1, 1e7));
    s->Add(ConfigKey("coordinator.eval_data", T::kStringList, "[]",
                     "held-out datasets as NAME=PATH (job specs name one in eval.dataset)"));
    s->Add(ConfigRanged("coordinator.restart_grace_s", T::kFloat, "-1",
                        "wait this long after a start before planning rounds (-1: 1.5 heartbeat intervals)", -1, 3600));
    s->Add(ConfigRanged("coordinator.inline_payload_bytes", T::kInt,
                        std::to_string(transport::kDefaultInlinePayloadBytes),
                        "aggregates above this many bytes are served as bulk objects instead of inline",
                        static_cast<double>(transport::kMinInlinePayloadBytes),
                        static_cast<double>(transport::kMaxInlinePayloadBytes)));
    s->Add(ConfigRanged("coordinator.probe_bytes", T::kInt, "67108864",
                        "cluster mode: bulk bytes one link probe sends at most", 1 << 20, 4294967296.0));
    s->Add(ConfigRanged("coordinator.probe_timeout_ms", T::kInt, "10000",
                        "cluster mode: a link probe (or a worker's probe responder start) fails after this long", 100,
                        600000));
    s->Add(
        ConfigRanged("coordinator.probe_port", T::kInt, "0",
                     "cluster mode: TCP port of the uplink probe responder, on the host of coordinator.listen (0: any "
                     "free port)",
                     0, 65535));
    s->Add(ConfigRanged("coordinator.multistream_min_bytes", T::kInt, "8388608",
                        "aggregates and snapshots of at least this many bytes may be sent over parallel TCP streams "
                        "(0: never)",
                        0, 1099511627776.0));
    s->Add(ConfigKey("coordinator.multistream_ports", T::kString, "''",
                     "TCP port or LOW-HIGH range of the multistream listeners, on the host of coordinator.listen "
                     "('': any free port)"));
    s->Add(ConfigRanged("coordinator.multistream_streams", T::kInt, "0",
                        "streams per multistream transfer (0: from the worker's measured uplink)", 0, 16));
    s->Add(ConfigRanged("coordinator.multistream_max_transfers", T::kInt, "8",
                        "multistream transfers in flight at most (more fetch on the bulk path)", 1, 1024));
    s->Add(ConfigRanged("coordinator.multistream_window_bytes", T::kInt, "1048576",
                        "one TCP stream's window for the stream count ceil(bandwidth x RTT / window)", 4096,
                        1073741824));

    s->Add(ConfigKey("worker.coordinator", T::kString, "''", "coordinator endpoint, e.g. tcp://10.0.0.1:7400"));
    s->Add(ConfigKey("worker.name", T::kString, "''", "worker id (default: hostname)"));
    s->Add(ConfigKey("worker.data", T::kStringList, "[]", "datasets as NAME=PATH"));
    s->Add(ConfigKey("worker.secret_key", T::kString, "''", "CURVE secret key file of this worker"));
    s->Add(ConfigKey("worker.coordinator_key", T::kString, "''", "CURVE public key file of the coordinator"));
    s->Add(ConfigKey("worker.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(ConfigRanged("worker.threads", T::kInt, "0", "compute threads (0 = all cores)", 0, 4096));
    s->Add(ConfigKey(
        "worker.nics", T::kStringList, "[]",
        "NIC override as NAME:FABRIC:MBPS[:FABRIC_ID] (FABRIC = ethernet|roce|infiniband|other; NICs with the "
        "same FABRIC_ID share one network); empty = detect from /sys"));
    s->Add(ConfigKey("worker.island_address", T::kString, "'127.0.0.1'",
                     "cluster mode: IP of this worker's island fabric interface (island all-reduce binds there)"));
    s->Add(ConfigRanged("worker.drain_timeout_s", T::kFloat, "60",
                        "after SIGTERM: seconds the tasklet in progress may take to finish and upload", 0, 86400));
    s->Add(ConfigKey("worker.calibrate", T::kBool, "true",
                     "time a forward+backward of each job's model once, when its replica is first built, and report "
                     "the tokens/s (the cluster planner's batch shares); false: report none"));
    s->Add(ConfigRanged("worker.tokens_per_s", T::kFloat, "0",
                        "compute rate to report for every job instead of calibrating (0: calibrate)", 0, 1e9));
    s->Add(ConfigRanged("worker.inline_payload_bytes", T::kInt, std::to_string(transport::kDefaultInlinePayloadBytes),
                        "uploads above this many bytes are pulled by the coordinator as bulk objects",
                        static_cast<double>(transport::kMinInlinePayloadBytes),
                        static_cast<double>(transport::kMaxInlinePayloadBytes)));
    s->Add(ConfigRanged("worker.multistream_min_bytes", T::kInt, "8388608",
                        "aggregates and snapshots of at least this many bytes are asked for over parallel TCP streams "
                        "first (0: never)",
                        0, 1099511627776.0));

    s->Add(ConfigKey("client.coordinator", T::kString, "''", "coordinator endpoint for CLI commands"));
    s->Add(ConfigKey("client.secret_key", T::kString, "''", "CURVE secret key file of this CLI user"));
    s->Add(ConfigKey("client.coordinator_key", T::kString, "''", "CURVE public key file of the coordinator"));
    s->Add(ConfigKey("client.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(ConfigRanged("client.request_timeout_s", T::kFloat, "10",
                        "seconds a CLI command waits for each coordinator reply before giving up (exit 2)", 0.05,
                        3600));
    return s;
  }();
  return *schema;
}

}  // namespace tributary::cli
