#include "cli/cli_config.h"

#include "transport/bulk.h"

namespace tributary::cli {
namespace {

ConfigKeySpec Key(std::string key, ConfigType type, std::string default_yaml, std::string help) {
  ConfigKeySpec spec;
  spec.key = std::move(key);
  spec.type = type;
  spec.default_yaml = std::move(default_yaml);
  spec.help = std::move(help);
  return spec;
}

ConfigKeySpec Choice(std::string key, std::string default_yaml, std::string help, std::vector<std::string> choices) {
  ConfigKeySpec spec = Key(std::move(key), ConfigType::kString, std::move(default_yaml), std::move(help));
  spec.choices = std::move(choices);
  return spec;
}

ConfigKeySpec Ranged(std::string key, ConfigType type, std::string default_yaml, std::string help, double min,
                     double max) {
  ConfigKeySpec spec = Key(std::move(key), type, std::move(default_yaml), std::move(help));
  spec.min = min;
  spec.max = max;
  return spec;
}

}  // namespace

const ConfigSchema& GlobalConfigSchema() {
  static const ConfigSchema* schema = [] {
    auto* s = new ConfigSchema();
    using T = ConfigType;
    s->Add(Choice("log.level", "info", "log level", {"trace", "debug", "info", "warn", "error", "critical", "off"}));
    s->Add(Choice("log.format", "text", "log line format", {"text", "json"}));

    s->Add(Key("coordinator.listen", T::kString, "tcp://0.0.0.0:7400", "ZeroMQ endpoint for workers and clients"));
    s->Add(Key("coordinator.http_listen", T::kString, "127.0.0.1:7401",
               "host:port for /healthz, /readyz, /metrics, /api"));
    s->Add(Key("coordinator.data_dir", T::kString, "/var/lib/tributary", "RocksDB checkpoint store directory"));
    s->Add(Key("coordinator.secret_key", T::kString, "''", "CURVE secret key file of the coordinator"));
    s->Add(Key("coordinator.allowed_keys", T::kString, "''", "file of admitted worker and client public keys"));
    s->Add(Key("coordinator.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(Ranged("coordinator.heartbeat_interval_s", T::kFloat, "5", "expected worker heartbeat period", 0.1, 3600));
    s->Add(Ranged("coordinator.heartbeat_misses", T::kInt, "3", "missed heartbeats before a worker is dead", 1, 1000));
    s->Add(Key("coordinator.eval_data", T::kStringList, "[]",
               "held-out datasets as NAME=PATH (job specs name one in eval.dataset)"));
    s->Add(Ranged("coordinator.restart_grace_s", T::kFloat, "-1",
                  "wait this long after a start before planning rounds (-1: 1.5 heartbeat intervals)", -1, 3600));
    s->Add(Ranged("coordinator.inline_payload_bytes", T::kInt, std::to_string(transport::kDefaultInlinePayloadBytes),
                  "aggregates above this many bytes are served as bulk objects instead of inline",
                  static_cast<double>(transport::kMinInlinePayloadBytes),
                  static_cast<double>(transport::kMaxInlinePayloadBytes)));

    s->Add(Key("worker.coordinator", T::kString, "''", "coordinator endpoint, e.g. tcp://10.0.0.1:7400"));
    s->Add(Key("worker.name", T::kString, "''", "worker id (default: hostname)"));
    s->Add(Key("worker.data", T::kStringList, "[]", "datasets as NAME=PATH"));
    s->Add(Key("worker.secret_key", T::kString, "''", "CURVE secret key file of this worker"));
    s->Add(Key("worker.coordinator_key", T::kString, "''", "CURVE public key file of the coordinator"));
    s->Add(Key("worker.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(Ranged("worker.threads", T::kInt, "0", "compute threads (0 = all cores)", 0, 4096));
    s->Add(Key("worker.nics", T::kStringList, "[]",
               "NIC override as NAME:FABRIC:MBPS[:FABRIC_ID] (FABRIC = ethernet|roce|infiniband|other; NICs with the "
               "same FABRIC_ID share one network); empty = detect from /sys"));
    s->Add(Ranged("worker.inline_payload_bytes", T::kInt, std::to_string(transport::kDefaultInlinePayloadBytes),
                  "uploads above this many bytes are pulled by the coordinator as bulk objects",
                  static_cast<double>(transport::kMinInlinePayloadBytes),
                  static_cast<double>(transport::kMaxInlinePayloadBytes)));

    s->Add(Key("client.coordinator", T::kString, "''", "coordinator endpoint for CLI commands"));
    s->Add(Key("client.secret_key", T::kString, "''", "CURVE secret key file of this CLI user"));
    s->Add(Key("client.coordinator_key", T::kString, "''", "CURVE public key file of the coordinator"));
    s->Add(Key("client.insecure", T::kBool, "false", "disable CURVE (local experiments only)"));
    s->Add(Ranged("client.request_timeout_s", T::kFloat, "10",
                  "seconds a CLI command waits for each coordinator reply before giving up (exit 2)", 0.05, 3600));
    return s;
  }();
  return *schema;
}

}  // namespace tributary::cli
