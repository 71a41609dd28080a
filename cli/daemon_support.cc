#include "cli/daemon_support.h"

#include <signal.h>

namespace tributary::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) {
  g_stop.store(true);
}

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

}  // namespace tributary::cli
