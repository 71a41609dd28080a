#include "cli/daemon_coordinator.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <atomic>
#include <cmath>
#include <map>

#include "base/file_util.h"
#include "cli/daemon_support.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"
#include "transport/security.h"

namespace tributary::cli {
namespace {

Status ParseNamedPaths(const std::vector<std::string>& items, const std::string& what,
                       std::map<std::string, std::string>* out) {
  for (const std::string& item : items) {
    std::string name, path;
    TRIB_RETURN_IF_ERROR(ParseNamedPath(item, what, &name, &path));
    (*out)[name] = path;
  }
  return Status::OK();
}

// Every connected worker holds one descriptor of the coordinator (its TCP connection): the usual soft limit of
// 1024 would refuse connections past about a thousand workers. Raises the soft limit to the hard one and says how
// many workers the result admits.
void RaiseDescriptorLimit() {
  constexpr rlim_t kReserved = 512;     // the store, HTTP, multistream and probe sockets, logs
  constexpr rlim_t kWanted = 10240;     // 10,000 workers (issue 15 item 7) and the reserve
  constexpr rlim_t kCeiling = 1 << 20;  // an unlimited hard limit: a soft limit the kernel (nr_open) accepts
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t target = limit.rlim_max == RLIM_INFINITY ? kCeiling : limit.rlim_max;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < target) {
    rlimit raised = limit;
    raised.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  const rlim_t workers = limit.rlim_cur > kReserved ? limit.rlim_cur - kReserved : 0;
  if (limit.rlim_cur < kWanted) {
    spdlog::warn(
        "coordinator: open-file limit is {} (hard limit {}): room for about {} connected workers; raise it "
        "(LimitNOFILE= in the systemd unit, ulimit -Hn) for more",
        limit.rlim_cur, limit.rlim_max, workers);
  } else {
    spdlog::info("coordinator: open-file limit {}: room for about {} connected workers", limit.rlim_cur, workers);
  }
}

}  // namespace

Status RunCoordinatorDaemon(const Config& config, const CoordinatorFlags& flags) {
  CoordinatorOptions options;
  options.listen = flags.listen.empty() ? config.GetString("coordinator.listen") : flags.listen;
  options.http_listen = flags.http_listen.empty() ? config.GetString("coordinator.http_listen") : flags.http_listen;
  TRIB_ASSIGN_OR_RETURN(options.http_token, LoadHttpToken(config.GetString("coordinator.http_token_file")));
  options.data_dir = flags.data_dir.empty() ? config.GetString("coordinator.data_dir") : flags.data_dir;
  options.store_reserve_bytes = static_cast<uint64_t>(config.GetInt("coordinator.store_reserve_mb")) << 20;
  options.insecure = flags.insecure || config.GetBool("coordinator.insecure");
  options.heartbeat_interval_ms = std::llround(config.GetFloat("coordinator.heartbeat_interval_s") * 1000.0);
  options.heartbeat_misses = static_cast<int>(config.GetInt("coordinator.heartbeat_misses"));
  options.rate_limit.per_second = config.GetFloat("coordinator.peer_messages_per_s");
  options.rate_limit.burst = config.GetFloat("coordinator.peer_message_burst");
  options.forget_workers_after_ms = std::llround(config.GetFloat("coordinator.forget_workers_after_s") * 1000.0);
  options.inline_payload_bytes = static_cast<uint64_t>(config.GetInt("coordinator.inline_payload_bytes"));
  options.probe_bytes = static_cast<uint64_t>(config.GetInt("coordinator.probe_bytes"));
  options.probe_timeout_ms = config.GetInt("coordinator.probe_timeout_ms");
  options.probe_port = static_cast<int>(config.GetInt("coordinator.probe_port"));
  options.multistream_min_bytes = static_cast<uint64_t>(config.GetInt("coordinator.multistream_min_bytes"));
  options.multistream_ports = config.GetString("coordinator.multistream_ports");
  options.multistream_streams = static_cast<int>(config.GetInt("coordinator.multistream_streams"));
  options.multistream_max_transfers = static_cast<int>(config.GetInt("coordinator.multistream_max_transfers"));
  options.multistream_window_bytes = static_cast<uint64_t>(config.GetInt("coordinator.multistream_window_bytes"));
  const double grace_s = config.GetFloat("coordinator.restart_grace_s");
  options.restart_grace_ms = grace_s < 0 ? -1 : std::llround(grace_s * 1000.0);
  std::vector<std::string> eval = config.GetStringList("coordinator.eval_data");
  eval.insert(eval.end(), flags.eval_data.begin(), flags.eval_data.end());
  TRIB_RETURN_IF_ERROR(ParseNamedPaths(eval, "coordinator.eval_data", &options.eval_data));

  if (options.insecure) {
    spdlog::warn(
        "coordinator: --insecure: CURVE encryption and authentication are OFF; any peer that reaches {} "
        "can register workers and submit jobs. Use only for local experiments.",
        options.listen);
  } else {
    const std::string key_file = flags.key.empty() ? config.GetString("coordinator.secret_key") : flags.key;
    const std::string allow_file =
        flags.allowed_keys.empty() ? config.GetString("coordinator.allowed_keys") : flags.allowed_keys;
    if (key_file.empty())
      return Status::InvalidArgument(
          "coordinator.secret_key: not set (create one with `tributary keygen -o FILE`, or pass --insecure for local "
          "experiments)");
    if (allow_file.empty())
      return Status::InvalidArgument("coordinator.allowed_keys: not set (a file listing admitted public keys)");
    TRIB_ASSIGN_OR_RETURN(options.keys, transport::LoadKeyPair(key_file));
    TRIB_ASSIGN_OR_RETURN(std::string allow_text, ReadFileToString(allow_file));
    TRIB_ASSIGN_OR_RETURN(options.allow_list, transport::AllowList::Parse(allow_text, allow_file));
  }

  // systemd: READY=1 once the store is open and the listeners are bound (Create), then STATUS= and
  // WATCHDOG=1 from the loop, STOPPING=1 when it ends (docs/deploy.md).
  RaiseDescriptorLimit();
  TRIB_ASSIGN_OR_RETURN(SystemdNotifier notifier, SystemdNotifier::Create());
  options.hooks = notifier.Hooks();
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator, Coordinator::Create(options));
  const std::atomic<bool>* stop = InstallStopSignalHandlers();
  // Machine-readable line for scripts and tests that start the daemon with port 0.
  std::printf("coordinator listening on %s http %d\n", coordinator->endpoint().c_str(), coordinator->http_port());
  std::fflush(stdout);
  notifier.Ready();
  Status run = coordinator->Run(stop);
  notifier.Stopping();
  // Closes the store: every acknowledged write is already in its synced WAL, so this only releases it.
  coordinator.reset();
  spdlog::info("coordinator: stopped, store closed");
  return run;
}

}  // namespace tributary::cli
