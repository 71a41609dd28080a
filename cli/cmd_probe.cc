// `tributary probe`: measure a link the way placement does (transport/link_probe.h), by hand — serve
// probes on an interface, or probe a peer that serves them with the same key file.
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/daemon_support.h"
#include "transport/link_probe.h"

namespace tributary::cli {
namespace {

struct ProbeFlags {
  std::string peer;   // HOST:PORT to probe
  std::string serve;  // ADDRESS:PORT to serve on
  std::string key_file;
  int64_t max_mb = 64;
  double seconds = 1.0;
  std::string format = "text";
};

Result<std::pair<std::string, int>> SplitHostPort(const std::string& text, const std::string& flag) {
  const size_t colon = text.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    try {
      port = std::stoi(text.substr(colon + 1));
    } catch (...) {
      port = -1;
    }
  }
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535)
    return Status::InvalidArgument(flag + " '" + text + "': expected IPV4:PORT");
  return std::make_pair(text.substr(0, colon), port);
}

Result<std::string> ReadProbeKey(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("--key-file: required (a file of exactly 32 bytes)");
  TRIB_ASSIGN_OR_RETURN(std::string key, ReadFileToString(path));
  if (key.size() != kProbeKeyBytes)
    return Status::InvalidArgument(path + ": a probe key is exactly 32 bytes, got " + std::to_string(key.size()) +
                                   " (e.g. head -c 32 /dev/urandom > FILE)");
  return key;
}

Status Serve(const ProbeFlags& f) {
  TRIB_ASSIGN_OR_RETURN(auto where, SplitHostPort(f.serve, "--serve"));
  ProbeServerOptions options;
  options.address = where.first;
  options.port = where.second;
  TRIB_ASSIGN_OR_RETURN(options.key, ReadProbeKey(f.key_file));
  options.max_bytes = static_cast<uint64_t>(f.max_mb) << 20;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<ProbeServer> server, ProbeServer::Start(options));
  const std::atomic<bool>* stop = InstallStopSignalHandlers();
  std::printf("probe server on %s:%d\n", where.first.c_str(), server->port());
  std::fflush(stdout);
  while (!stop->load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::printf("served %llu probe(s), refused %llu\n", static_cast<unsigned long long>(server->probes_served()),
              static_cast<unsigned long long>(server->probes_refused()));
  return Status::OK();
}

Status Probe(const ProbeFlags& f) {
  TRIB_ASSIGN_OR_RETURN(auto where, SplitHostPort(f.peer, "PEER"));
  ProbeOptions options;
  TRIB_ASSIGN_OR_RETURN(options.key, ReadProbeKey(f.key_file));
  options.max_bytes = static_cast<uint64_t>(f.max_mb) << 20;
  options.target_s = f.seconds;
  TRIB_ASSIGN_OR_RETURN(ProbeResult r, ProbeLink(where.first, where.second, options));
  if (f.format == "json") {
    PrintJsonOk("probe", {{"peer", f.peer}, {"mbps", r.mbps}, {"rtt_ms", r.rtt_ms}, {"bytes", r.bytes}});
  } else {
    std::printf("%s: %.1f Mbit/s, rtt %.3f ms (%llu bytes)\n", f.peer.c_str(), r.mbps, r.rtt_ms,
                static_cast<unsigned long long>(r.bytes));
  }
  return Status::OK();
}

}  // namespace

void RegisterProbeCommand(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<ProbeFlags>();
  CLI::App* probe = app.add_subcommand(
      "probe", "Measure TCP goodput and RTT to a peer as placement does (or --serve probes), authenticated by a key");
  probe->add_option("peer", f->peer, "HOST:PORT of a peer running `tributary probe --serve`");
  probe->add_option("--serve", f->serve, "Serve probes on IPV4:PORT (port 0: any) until SIGINT/SIGTERM");
  probe->add_option("--key-file", f->key_file, "File of exactly 32 bytes shared by both ends")->required();
  probe->add_option("--max-mb", f->max_mb, "Most MiB one probe sends (default 64)")->check(CLI::Range(1, 4096));
  probe->add_option("--seconds", f->seconds, "Target length of the measured transfer (default 1)")
      ->check(CLI::Range(0.01, 60.0));
  probe->add_option("--format", f->format, "text|json")->check(CLI::IsMember({"text", "json"}));
  registry.handlers["probe"] = [f](CommandContext&) -> Status {
    if (f->serve.empty() == f->peer.empty())
      return Status::InvalidArgument("probe: give either PEER or --serve ADDRESS:PORT");
    return f->serve.empty() ? Probe(*f) : Serve(*f);
  };
}

}  // namespace tributary::cli
