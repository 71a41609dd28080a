// How a daemon's event loop reports to whatever supervises the process, without knowing what that
// is: the `tributary coordinator` / `tributary worker` commands map these hooks to systemd's
// sd_notify (cli/daemon_support.h: READY=1, WATCHDOG=1, STATUS=, STOPPING=1). Any hook may be
// empty. The loop calls them from its own thread only.
#pragma once

#include <functional>
#include <string>

namespace tributary {

struct LoopHooks {
  // Every iteration of the event loop (at least every 100 ms while it is healthy). A loop stuck in
  // one step stops calling it, which is what a watchdog must notice; so it is never called from
  // another thread on the loop's behalf.
  std::function<void()> alive;
  // The daemon serves (the worker: registered with its coordinator). May come more than once.
  std::function<void()> ready;
  // A one-line summary for people ("2 jobs running; ..."), each time it changed.
  std::function<void(const std::string&)> status;
  // The loop begins its shutdown (the worker: its drain).
  std::function<void()> stopping;

  void Alive() const {
    if (alive) alive();
  }
  void Ready() const {
    if (ready) ready();
  }
  void ReportStatus(const std::string& line) const {
    if (status) status(line);
  }
  void Stopping() const {
    if (stopping) stopping();
  }
};

}  // namespace tributary
