#include "cli/daemon_support.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <thread>

namespace tributary::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_stall_requested{false};

extern "C" void OnStopSignal(int) {
  g_stop.store(true);
}

extern "C" void OnStallSignal(int) {
  g_stall_requested.store(true);
}

constexpr const char* kStallVariable = "TRIBUTARY_FAULT_STALL_LOOP_MS";

}  // namespace

const std::atomic<bool>* InstallStopSignalHandlers() {
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  return &g_stop;
}

Status ParseNamedPath(const std::string& text, const std::string& where, std::string* name, std::string* path) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    return Status::InvalidArgument(where + ": '" + text + "': expected NAME=PATH");
  *name = text.substr(0, eq);
  *path = text.substr(eq + 1);
  return Status::OK();
}

Result<SystemdNotifier> SystemdNotifier::Create() {
  SystemdNotifier notifier;
  uint64_t watchdog_us = 0;
  // > 0: WATCHDOG_USEC is set (and WATCHDOG_PID, when set, is this process).
  if (sd_watchdog_enabled(/*unset_environment=*/0, &watchdog_us) > 0 && watchdog_us > 0)
    notifier.watchdog_ping_us_ = static_cast<int64_t>(watchdog_us / 2);
  if (const char* stall = std::getenv(kStallVariable); stall != nullptr && *stall != '\0') {
    char* end = nullptr;
    const long long ms = std::strtoll(stall, &end, 10);
    if (*end != '\0' || ms <= 0)
      return Status::InvalidArgument(std::string(kStallVariable) + " '" + stall + "': expected milliseconds > 0");
    notifier.fault_stall_ms_ = ms;
    struct sigaction action = {};
    action.sa_handler = OnStallSignal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, nullptr);
    spdlog::warn("fault injection: {}={}: SIGUSR2 stalls the event loop once for that long (tests only)",
                 kStallVariable, ms);
  }
  return notifier;
}

LoopHooks SystemdNotifier::Hooks() {
  LoopHooks hooks;
  hooks.alive = [this] { Alive(); };
  hooks.ready = [this] { Ready(); };
  hooks.status = [this](const std::string& line) { SetStatus(line); };
  hooks.stopping = [this] { Stopping(); };
  return hooks;
}

void SystemdNotifier::Ready() {
  if (ready_sent_) return;
  ready_sent_ = true;
  sd_notify(0, "READY=1");
}

void SystemdNotifier::Stopping() {
  if (stopping_sent_) return;
  stopping_sent_ = true;
  sd_notify(0, "STOPPING=1");
}

void SystemdNotifier::SetStatus(const std::string& line) {
  if (line == status_) return;
  status_ = line;
  sd_notify(0, ("STATUS=" + line).c_str());
}

void SystemdNotifier::Alive() {
  if (fault_stall_ms_ > 0 && g_stall_requested.exchange(false)) {
    // Fault injection (see the header): the loop's thread blocks here, so no WATCHDOG=1 goes out.
    spdlog::warn("fault injection: stalling the event loop for {} ms", fault_stall_ms_);
    sd_notify(0, ("X_TRIBUTARY_FAULT=loop-stall " + std::to_string(fault_stall_ms_) + "ms").c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(fault_stall_ms_));
  }
  if (watchdog_ping_us_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ping_ < std::chrono::microseconds(watchdog_ping_us_)) return;
  last_ping_ = now;
  sd_notify(0, "WATCHDOG=1");
}

}  // namespace tributary::cli
