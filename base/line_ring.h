// A bounded ring of text lines numbered from 0 since it began: it keeps the latest lines within a line
// and a byte budget (the oldest go first, first_line counts them), and cuts a line longer than
// max_line_bytes, marking it "...". The worker's capture of a job's log lines and the coordinator's
// copy of them (worker/job_log_capture.h, coordinator/worker_logs.h) are each one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

namespace tributary {

struct LineRingLimits {
  size_t max_lines = 0;
  size_t max_bytes = 0;
  size_t max_line_bytes = 0;  // >= 4
};

struct LineRing {
  std::deque<std::string> lines;
  uint64_t first_line = 0;  // the number of lines.front()
  size_t bytes = 0;         // of the lines kept

  void Push(std::string line, const LineRingLimits& limits) {
    if (line.size() > limits.max_line_bytes) line = line.substr(0, limits.max_line_bytes - 3) + "...";
    bytes += line.size();
    lines.push_back(std::move(line));
    while (lines.size() > limits.max_lines || bytes > limits.max_bytes) {
      bytes -= lines.front().size();
      lines.pop_front();
      ++first_line;
    }
  }
  uint64_t end_line() const { return first_line + lines.size(); }  // the number the next line gets
};

}  // namespace tributary
