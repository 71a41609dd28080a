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
#include "worker/status_board.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class ControlLoop {
 public:
  // None of the pointers is owned; all must outlive the loop. `stopping` is polled at least every
  // 100 ms.
  ControlLoop(const WorkerOptions& options, transport::Client* control, WorkQueue* queue, const StatusBoard* board,
              std::function<bool()> stopping);

  // Runs on the calling thread until `stopping` returns true (then OK), or until the coordinator
  // refuses the registration (PermissionDenied with its reason). Send failures and errors answered
  // to heartbeats are logged and do not end the loop.
  Status Run();

 private:
  using Clock = std::chrono::steady_clock;

  // Handles one message received on the control connection; an error ends the loop.
  Status Handle(const transport::Envelope& envelope);
  // Handles a RegisterAck answering the latest Register (a refusal is the loop's error).
  Status HandleRegisterAck(const v1::RegisterAck& ack);
  // An Error envelope: a failed registration is retried, NotFound registers again.
  void HandleError(const transport::Envelope& envelope);
  void SendRegister();
  void SendHeartbeat();

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  std::string peer_;  // "coordinator tcp://..."
  transport::Client* control_;
  WorkQueue* queue_;
  const StatusBoard* board_;
  std::function<bool()> stopping_;

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
