// A job's human-readable log on the coordinator (`tributary logs JOB`): one append-only text file per
// job under <data_dir>/logs/, so it survives a restart with the rest of the job's state.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

struct LogPage {
  std::vector<std::string> lines;
  uint64_t next_line = 0;  // pass as from_line to continue
};

class JobLog {
 public:
  // Opens (creating) the file for appending.
  static Result<std::unique_ptr<JobLog>> Open(const std::string& path);
  ~JobLog();
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;

  // Appends "<UTC time> <line>" and flushes (a line a reader was told about is in the file).
  void Append(const std::string& line);
  // Lines from_line.. (0-based), at most max_lines (0: all).
  Result<LogPage> Read(uint64_t from_line, uint32_t max_lines) const;

 private:
  JobLog(std::string path, FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  FILE* file_;
};

}  // namespace tributary
