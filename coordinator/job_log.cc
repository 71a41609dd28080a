#include "coordinator/job_log.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "base/file_util.h"

namespace tributary {

Result<std::unique_ptr<JobLog>> JobLog::Open(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) return Status::IOError(path + ": cannot open job log: " + std::strerror(errno));
  return std::unique_ptr<JobLog>(new JobLog(path, file));
}

JobLog::~JobLog() {
  std::fclose(file_);
}

void JobLog::Append(const std::string& line) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string clean = line;
  for (char& c : clean) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(file_, "%s %s\n", stamp, clean.c_str());
  std::fflush(file_);
}

Result<LogPage> JobLog::Read(uint64_t from_line, uint32_t max_lines) const {
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path_));
  LogPage page;
  uint64_t index = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // a line being written: not yet
    if (index >= from_line && (max_lines == 0 || page.lines.size() < max_lines))
      page.lines.push_back(text.substr(begin, end - begin));
    ++index;
    begin = end + 1;
  }
  page.next_line = from_line + page.lines.size();
  return page;
}

}  // namespace tributary
