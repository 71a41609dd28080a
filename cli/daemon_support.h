// Pieces both daemon commands (`tributary coordinator`, `tributary worker`) share.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "base/loop_hooks.h"
#include "base/status.h"

namespace tributary::cli {

// Installs SIGTERM / SIGINT handlers that set the returned flag (the daemons' Run polls it).
const std::atomic<bool>* InstallStopSignalHandlers();

// Splits "NAME=PATH" (datasets on the command line and in configs); InvalidArgument naming `where`.
Status ParseNamedPath(const std::string& text, const std::string& where, std::string* name, std::string* path);

// The daemons' side of systemd's notify protocol (sd_notify(3), docs/deploy.md): READY=1, STATUS=
// when the loop's summary changed, WATCHDOG=1 at half of WatchdogSec (sd_watchdog_enabled) from the
// loop's own alive hook, STOPPING=1. Without NOTIFY_SOCKET every call does nothing.
//
// Fault injection, for tests only: with TRIBUTARY_FAULT_STALL_LOOP_MS=N in the environment (read
// once, by Create), each SIGUSR2 makes the loop's next alive call send X_TRIBUTARY_FAULT=loop-stall
// and then sleep N ms on the loop's thread, as a stuck loop would.
class SystemdNotifier {
 public:
  // InvalidArgument naming the variable when TRIBUTARY_FAULT_STALL_LOOP_MS is not a positive integer.
  static Result<SystemdNotifier> Create();

  // Hooks for CoordinatorOptions / WorkerOptions; they point at this notifier, which must outlive the loop.
  LoopHooks Hooks();
  void Ready();
  void Stopping();

 private:
  SystemdNotifier() = default;
  void Alive();
  void SetStatus(const std::string& line);

  bool ready_sent_ = false;
  bool stopping_sent_ = false;
  int64_t watchdog_ping_us_ = 0;  // half of WATCHDOG_USEC; 0: no watchdog
  std::chrono::steady_clock::time_point last_ping_{};
  std::string status_;
  int64_t fault_stall_ms_ = 0;
};

}  // namespace tributary::cli
