// The hand-off between the worker's two threads: the control loop (main thread) queues the pushed
// RoundStart / RoundCommitted messages, the compute loop takes them one at a time. The queue also
// remembers the newest RoundCommitted pushed per job, which the compute thread reads to stop retrying
// an upload of a round that was committed meanwhile.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "transport/message.h"

namespace tributary {

// "job J round R", the prefix of the worker's per-round log lines and errors.
std::string JobRound(const std::string& job_id, uint64_t round);

// A pushed message waiting for the compute thread.
struct WorkItem {
  bool is_start = false;
  v1::RoundStart start;          // when is_start
  v1::RoundCommitted committed;  // otherwise
};

class WorkQueue {
 public:
  // `name` prefixes the log lines ("worker 'w1'").
  explicit WorkQueue(std::string name) : name_(std::move(name)) {}

  // Queues a RoundStart, unless one for the same (job, round, island incarnation) is already queued or being worked on
  // (then it is dropped with a debug log: the coordinator repeats RoundStarts until it hears back).
  void PushStart(v1::RoundStart start);
  // Queues a RoundCommitted and records its round as the newest committed round seen for its job.
  void PushCommitted(v1::RoundCommitted committed);
  // Waits up to `wait` for an item and takes the oldest; nullopt when none came or Close() was called.
  // A RoundStart taken stays "being worked on" until Done().
  std::optional<WorkItem> Pop(std::chrono::milliseconds wait);
  // The item taken by the last Pop is finished.
  void Done();
  // Wakes a waiting Pop (the daemon is stopping); later Pops return at once.
  void Close();
  // The newest round a RoundCommitted was pushed for, for `job_id` (0: none).
  uint64_t CommittedSeen(const std::string& job_id);

 private:
  std::string name_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<WorkItem> queue_;
  bool closed_ = false;
  std::string busy_job_;  // RoundStart being worked on
  uint64_t busy_round_ = 0;
  uint64_t busy_incarnation_ = 0;  // cluster mode: the island incarnation of the RoundStart being worked on
  std::map<std::string, uint64_t> committed_seen_;  // job -> newest RoundCommitted pushed
};

}  // namespace tributary
