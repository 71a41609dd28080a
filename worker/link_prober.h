// The worker's side of link probes (docs/placement.md, "Measured links"; docs/protocol.md). The
// coordinator pushes ProbeAssignments on the control connection: keys to serve (this worker is the
// target of a pair) and probes to run (this worker sends). The prober keeps a responder
// (transport/link_probe.h ProbeServer) on worker.island_address, started on the first key, and runs
// assigned probes on its own thread, one at a time and only while the worker is idle (never inside an
// island's collective); the control loop sends the reports it hands back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transport/link_probe.h"
#include "transport/message.h"
#include "worker/status_board.h"

namespace tributary {

class LinkProber {
 public:
  // `coordinator` is the worker's coordinator endpoint ("tcp://HOST:PORT"): uplink probes go to HOST.
  // The board must outlive the prober.
  LinkProber(std::string worker_id, std::string island_address, std::string coordinator, const StatusBoard* board);
  ~LinkProber();
  LinkProber(const LinkProber&) = delete;
  LinkProber& operator=(const LinkProber&) = delete;

  // An assignment from the coordinator (not an answer to a report). With keys to serve: the report that
  // says where the responder listens (or, when it cannot listen, nothing: the coordinator's deadline
  // fails the pairs and the job log says so); probes are queued for the prober's thread.
  std::optional<v1::ProbeReport> OnAssignment(const v1::ProbeAssignment& assignment);
  // Reports of the probes finished since the last call (one per probe), for the control loop to send.
  std::vector<v1::ProbeReport> TakeReports();

 private:
  struct Queued {
    std::string job_id;
    uint64_t campaign = 0;
    v1::ProbeTask task;
  };
  void Run();
  // One probe, once the worker is idle (or an error outcome when it stays busy past the task's deadline).
  v1::ProbeOutcome Probe(const v1::ProbeTask& task);

  const std::string worker_id_;
  const std::string island_address_;
  const std::string coordinator_host_;
  const StatusBoard* board_;
  std::unique_ptr<ProbeServer> responder_;  // control loop thread only
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;              // guarded by mu_
  std::vector<v1::ProbeReport> reports_;  // guarded by mu_
  std::atomic<bool> stop_{false};         // set under mu_ (the thread's wait), read anywhere
  std::thread thread_;
};

}  // namespace tributary
