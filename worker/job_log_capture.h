// JobLogCapture: the worker's log lines per job, kept so the coordinator can serve them
// (`tributary logs JOB --worker W`; docs/protocol.md, "Worker log lines").
//
// A line belongs to a job when it is logged on one of the worker's own threads (the daemon marks its
// control and compute threads with a JobLogThread) and either names the job ("job J round R", as the
// worker's lines do) or is logged while the StatusBoard shows the worker working on J (syncing,
// training, uploading). Each job keeps a bounded ring of its latest lines (kMaxLinesPerJob lines,
// kMaxBytesPerJob bytes) and a count of the lines ever captured, so the LogShipper sends each line once;
// lines that fell out of the ring before they were sent are lost (the numbering shows the gap).
// At most kMaxJobs jobs are kept (the one captured into least recently goes first). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>
#include "base/line_ring.h"

#include "worker/status_board.h"

namespace tributary {

// New lines of one job: lines[0] is line number first_line of that job's capture.
struct JobLogBatch {
  std::string job_id;
  uint64_t first_line = 0;
  std::vector<std::string> lines;
};

class JobLogCapture {
 public:
  static constexpr size_t kMaxLinesPerJob = 2000;
  static constexpr size_t kMaxBytesPerJob = 1 << 20;
  static constexpr size_t kMaxJobs = 16;
  static constexpr size_t kMaxLineBytes = 4096;  // longer lines are cut (marked "...")

  // Installs the spdlog sink (once per process, on the default logger; the first call must come before
  // other threads log: the CLI's logging setup makes it) that hands the lines of marked threads to their
  // capture. Without it nothing is captured.
  static void InstallSink();

  void Append(const std::string& job_id, std::string line);
  // The next unsent lines of one job (the job with the oldest unsent line first), at most max_bytes of
  // lines (always at least one line); empty job_id when nothing is unsent.
  JobLogBatch Unsent(size_t max_bytes) const;
  // The job's lines up to (excluding) line number `end` were delivered (or refused): not sent again.
  void MarkSent(const std::string& job_id, uint64_t end);

  // The lines of a job still in its ring (tests, diagnostics).
  std::vector<std::string> Lines(const std::string& job_id) const;
  // Line numbers ever captured for the job.
  uint64_t Captured(const std::string& job_id) const;

 private:
  struct Ring : LineRing {
    uint64_t sent_end = 0;  // lines below this number were sent
    uint64_t touched = 0;   // capture order, for eviction
  };
  mutable std::mutex mutex_;
  std::map<std::string, Ring> jobs_;
  uint64_t clock_ = 0;
};

// Marks the current thread as one of a worker's threads for its lifetime: lines logged on it go to
// `capture` (the job named by the line, else the job `board` shows; neither: not captured).
class JobLogThread {
 public:
  JobLogThread(JobLogCapture* capture, const StatusBoard* board);
  ~JobLogThread();
  JobLogThread(const JobLogThread&) = delete;
  JobLogThread& operator=(const JobLogThread&) = delete;

 private:
  JobLogCapture* previous_capture_;
  const StatusBoard* previous_board_;
};

// The job a worker line names: the J of "job J round " (JobRound's form), else "".
std::string JobNamedInLine(const std::string& message);

}  // namespace tributary
