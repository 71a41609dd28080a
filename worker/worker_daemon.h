// The worker daemon (`tributary worker`): the worker side of docs/protocol.md.
//
// Two threads, each owning one Client to the coordinator's endpoint (a ZeroMQ socket is used by one
// thread only):
//   main (Run)  control connection: ControlLoop (worker/control_loop.h): Register, a Heartbeat every
//               interval, and the pushed RoundStart / RoundCommitted, queued in the WorkQueue
//               (worker/work_queue.h). It never waits for model work.
//   compute     work connection, driven through a transport::WorkClient (retries, BulkRequests served
//               from the upload objects): ComputeLoop (worker/compute_loop.h) takes the queued pushes
//               and handles them with ReplicaSync (worker/replica_sync.h: replicas, catch-up, snapshot
//               and aggregate fetches) and the Uploader (worker/uploader.h).
// The compute thread publishes what it is doing and its replicas on the StatusBoard
// (worker/status_board.h), which the heartbeats report. Lines both threads log about a job are kept
// (worker/job_log_capture.h) and shipped to the coordinator by a LogShipper on a third connection.
// This class only validates the options and wires the parts together.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "base/status.h"
#include "transport/bulk.h"
#include "transport/channel.h"
#include "transport/work_client.h"
#include "worker/compute_loop.h"
#include "worker/control_loop.h"
#include "worker/island_session.h"
#include "worker/job_log_capture.h"
#include "worker/link_prober.h"
#include "worker/log_shipper.h"
#include "worker/replica_sync.h"
#include "worker/secagg_session.h"
#include "worker/status_board.h"
#include "worker/uploader.h"
#include "worker/work_queue.h"
#include "worker/worker_options.h"

namespace tributary {

class WorkerDaemon {
 public:
  static constexpr size_t kFinishedReplicasKept = ReplicaSync::kFinishedReplicasKept;

  // Validates the options (InvalidArgument naming the setting) and opens both Clients (connections are
  // made in the background).
  static Result<std::unique_ptr<WorkerDaemon>> Create(WorkerOptions options);
  // Stops and joins the compute thread if Run did not.
  ~WorkerDaemon();
  WorkerDaemon(const WorkerDaemon&) = delete;
  WorkerDaemon& operator=(const WorkerDaemon&) = delete;

  // Runs until *stop becomes true (SIGTERM/SIGINT handler sets it), then drains: no new tasklet is
  // taken, the item in progress (a tasklet and its upload) may finish within options.drain_timeout_ms
  // while heartbeats go on, and a last "leaving" heartbeat tells the coordinator to plan without this
  // worker. Returns OK on a clean stop; an error when the coordinator refuses the registration (the
  // worker id is held by another key, a bad field); Timeout when the drain timed out and the
  // compute thread is still inside a tasklet that cannot be interrupted. In that last case destroying
  // the daemon waits for the tasklet (its thread still uses the daemon): a caller that must stop now
  // ends the process instead (`tributary worker` does). Call once.
  Status Run(const std::atomic<bool>* stop);

 private:
  explicit WorkerDaemon(WorkerOptions options) : options_(std::move(options)) {}
  // Work-connection requests give up (a hard stop: after the drain).
  bool Stopping() const { return stopping_.load(); }
  bool DrainRequested() const { return stop_ != nullptr && stop_->load(); }
  // The control loop's end: not before a stop request, then once the compute thread is idle or the
  // drain timed out (which makes the stop hard).
  bool ControlLoopDone();
  // Waits up to `ms` for the compute thread to return.
  bool WaitComputeDone(int ms) const;
  // Builds the components on the opened Clients.
  void Wire();

  WorkerOptions options_;
  const std::atomic<bool>* stop_ = nullptr;  // set by Run before the compute thread starts
  std::atomic<bool> stopping_{false};
  std::atomic<bool> compute_done_{false};
  std::chrono::steady_clock::time_point drain_deadline_{};  // set at the stop request
  bool drain_timed_out_ = false;

  std::unique_ptr<transport::Client> control_;
  std::unique_ptr<transport::Client> work_;
  // Payloads of uploads sent as bulk objects, served to the coordinator on the work connection.
  std::unique_ptr<transport::BulkSender> upload_objects_;
  std::unique_ptr<transport::WorkClient> work_client_;
  std::unique_ptr<WorkQueue> queue_;
  std::unique_ptr<StatusBoard> board_;
  std::unique_ptr<ReplicaSync> sync_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<SecAggSession> secagg_;
  std::unique_ptr<IslandSession> island_;
  std::unique_ptr<ComputeLoop> compute_;
  std::unique_ptr<ControlLoop> control_loop_;
  std::unique_ptr<LinkProber> prober_;  // cluster mode's link probes (worker/link_prober.h)
  std::thread compute_thread_;
  // Job log lines for `tributary logs JOB --worker W`, shipped on a third connection of their own.
  std::unique_ptr<transport::Client> logs_;
  std::unique_ptr<JobLogCapture> log_capture_;
  std::unique_ptr<LogShipper> log_shipper_;
};

}  // namespace tributary
