// LogShipper: sends the lines a JobLogCapture holds to the coordinator (WorkerLogLines, docs/protocol.md
// "Worker log lines") on its own thread and connection, so neither heartbeats nor training wait for it.
// Every kShipIntervalMs it sends each job's unsent lines, at most kMaxMessageBytes of lines per message.
// Lines the coordinator refused (a job the worker is not in, an unknown job) are dropped and the refusal
// logged at most once a minute; unanswered ones are sent again later. Best effort: the lines are
// diagnostics, the worker's own log (journal) keeps them all.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "transport/channel.h"
#include "worker/job_log_capture.h"

namespace tributary {

class LogShipper {
 public:
  static constexpr int kShipIntervalMs = 1000;
  static constexpr size_t kMaxMessageBytes = 256 * 1024;

  // Not owned: `client` (used by the shipper's thread only) and `capture` outlive the shipper.
  LogShipper(std::string worker_id, transport::Client* client, JobLogCapture* capture, int request_timeout_ms);
  ~LogShipper();  // stops and joins the thread
  LogShipper(const LogShipper&) = delete;
  LogShipper& operator=(const LogShipper&) = delete;

  void Start();
  void Stop();

  // Sends what is unsent now (one pass, on the calling thread); false when a request went unanswered.
  bool ShipOnce();

 private:
  void Run();
  void NoteRefusal(const std::string& job_id, const std::string& reason);

  std::string worker_id_;
  transport::Client* client_;
  JobLogCapture* capture_;
  int request_timeout_ms_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::chrono::steady_clock::time_point last_refusal_log_{};
};

}  // namespace tributary
