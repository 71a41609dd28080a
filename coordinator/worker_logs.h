// WorkerLogs: the log lines workers shipped for the jobs they work on (WorkerLogLines, docs/protocol.md
// "Worker log lines"), served to `tributary logs JOB --worker W` through FetchLogs.
//
// In memory only: the lines are diagnostics of the live system (every worker's own log keeps them all),
// so they are not worth store writes on the coordinator's loop; a restarted coordinator serves the lines
// shipped since it started. Bounded: per (job, worker) a ring of the latest kMaxLines lines and
// kMaxBytes bytes, at most kMaxStreams (job, worker) pairs (the least recently appended goes first).
// Lines are numbered per (job, worker) in arrival order, from 0, so a reader continues with next_line;
// a line that fell out of the ring is skipped. Not thread-safe: the coordinator's loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>
#include "base/line_ring.h"

#include "transport/message.h"

namespace tributary {

class WorkerLogs {
 public:
  static constexpr size_t kMaxLines = 2000;
  static constexpr size_t kMaxBytes = 1 << 20;
  static constexpr size_t kMaxStreams = 1024;
  static constexpr size_t kMaxLineBytes = 4096;  // longer lines are cut
  static constexpr size_t kMaxLinesPerMessage = 8192;

  // Keeps a WorkerLogLines message's lines. Lines the worker numbered below what it sent before (a
  // message sent again after a lost reply) are skipped; lines it numbered past that (its ring dropped
  // some) are preceded by one line saying how many were lost. Returns how many lines were kept.
  size_t Append(const std::string& job_id, const std::string& worker_id, uint64_t first_line,
                const std::vector<std::string>& lines);

  struct Page {
    std::vector<std::string> lines;
    uint64_t next_line = 0;  // pass as from_line to continue
  };
  // At most max_lines lines from line number from_line on (the oldest kept one when from_line is older).
  Page Read(const std::string& job_id, const std::string& worker_id, uint64_t from_line, uint32_t max_lines) const;
  // Whether any line of the worker for the job was kept.
  bool Has(const std::string& job_id, const std::string& worker_id) const;

 private:
  struct Stream : LineRing {
    uint64_t worker_end = 0;  // the worker's numbering: the line it sends next
    uint64_t touched = 0;
  };
  static constexpr LineRingLimits kLimits = {kMaxLines, kMaxBytes, kMaxLineBytes};

  std::map<std::pair<std::string, std::string>, Stream> streams_;  // (job, worker)
  uint64_t clock_ = 0;
};

// The workers a job involved: the open round's participants and island members, every committed
// round's clients and the workers holding a replica of it (GetJobReply from JobRunner::Detail).
std::set<std::string> WorkersOfJob(const v1::GetJobReply& detail);

}  // namespace tributary
