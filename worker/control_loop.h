// The worker's main thread on the control connection (docs/protocol.md, "Worker ↔ coordinator"):
// Register (again after a NotFound answer or heartbeat_miss_limit intervals without a HeartbeatAck),
// a Heartbeat every interval carrying what the StatusBoard holds, and the pushed RoundStart /
// RoundCommitted handed to the compute thread through the WorkQueue. It never waits for model work,
// so heartbeats keep flowing while a round trains, catches up or uploads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "transport/channel.h"
#include "transport/message.h"
#include "worker/link_prober.h"
#include "worker/status_board.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class ControlLoop {
 public:
  // None of the pointers is owned; all must outlive the loop. `stopping` and `draining` are polled at
  // least every 100 ms.
  ControlLoop(const WorkerOptions& options, transport::Client* control, WorkQueue* queue, const StatusBoard* board,
              std::function<bool()> stopping, std::function<bool()> draining);

  // Runs on the calling thread until `stopping` returns true (then OK), or until the coordinator
  // refuses the registration (PermissionDenied with its reason). Send failures and errors answered
  // to heartbeats are logged and do not end the loop. While `draining`, heartbeats go on but pushed
  // RoundStarts are not queued (the item in progress finishes; RoundCommitted still tells it when its
  // upload is no longer needed). Calls options.hooks (worker_options.h) from this thread.
  Status Run();
  // After Run: a last Heartbeat with state "leaving" (when a Register was ever sent), so the
  // coordinator stops counting on this worker at once rather than after heartbeat_miss_limit
  // intervals; waits up to `wait_ms` for its ack (a closing socket drops what it has not sent).
  void SendLeaving(int wait_ms);
  // Pushed ProbeAssignments go to `prober` (not owned; null: they are ignored), and the control loop
  // sends the ProbeReports it hands back (docs/protocol.md, "Link probes").
  void SetLinkProber(LinkProber* prober) { prober_ = prober; }

 private:
  using Clock = std::chrono::steady_clock;

  // Handles one message received on the control connection; an error ends the loop.
  Status Handle(const transport::Envelope& envelope);
  // Handles a RegisterAck answering the latest Register (a refusal is the loop's error).
  Status HandleRegisterAck(const v1::RegisterAck& ack);
  // An Error envelope: a failed registration is retried, NotFound registers again.
  void HandleError(const transport::Envelope& envelope);
  void SendRegister();
  // A ProbeAssignment: the answer to a report (logged when refused) or new work for the prober.
  void HandleProbeAssignment(const transport::Envelope& envelope);
  void SendProbeReport(const v1::ProbeReport& report);
  // Sends a Heartbeat with the board's state, or `state` when not empty; returns its sequence.
  uint64_t SendHeartbeat(const std::string& state = "");
  // The line hooks.status shows: "registering as w1 with coordinator tcp://..." or "registered as w1;
  // training job J round 3", prefixed by "draining: " after a stop request.
  std::string StatusLine() const;
  // One iteration's reports to options.hooks: alive, the status line when it changed, stopping once.
  void Report();

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  std::string peer_;  // "coordinator tcp://..."
  transport::Client* control_;
  WorkQueue* queue_;
  const StatusBoard* board_;
  LinkProber* prober_ = nullptr;
  std::function<bool()> stopping_;
  std::function<bool()> draining_;
  bool drain_reported_ = false;
  std::string status_line_;  // the last one given to hooks.status

  bool registered_ = false;
  uint64_t register_message_id_ = 0;
  uint64_t heartbeat_sequence_ = 0;
  int64_t heartbeat_interval_ms_;
  int64_t heartbeat_miss_limit_ = 3;
  Clock::time_point next_register_;
  Clock::time_point next_heartbeat_;
  Clock::time_point last_ack_;
};

}  // namespace tributary
