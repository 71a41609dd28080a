#include "worker/job_log_capture.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

namespace tributary {
namespace {

thread_local JobLogCapture* t_capture = nullptr;
thread_local const StatusBoard* t_board = nullptr;

// Hands each line logged on a marked thread to that thread's capture, formatted like the daemon's
// text log lines.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (t_capture == nullptr) return;
    const std::string message(msg.payload.data(), msg.payload.size());
    std::string job = JobNamedInLine(message);
    if (job.empty() && t_board != nullptr) job = t_board->Snapshot().job_id;
    if (job.empty()) return;
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::string line(formatted.data(), formatted.size());
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    t_capture->Append(job, std::move(line));
  }
  void flush_() override {}
};

}  // namespace

void JobLogCapture::InstallSink() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto sink = std::make_shared<CaptureSink>();
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %-5l %v"));
    spdlog::default_logger()->sinks().push_back(std::move(sink));
  });
}

std::string JobNamedInLine(const std::string& message) {
  const size_t at = message.find("job ");
  if (at == std::string::npos) return "";
  const size_t begin = at + 4;
  const size_t end = message.find(' ', begin);
  if (end == std::string::npos || end == begin || message.compare(end, 7, " round ") != 0) return "";
  return message.substr(begin, end - begin);
}

void JobLogCapture::Append(const std::string& job_id, std::string line) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (jobs_.count(job_id) == 0 && jobs_.size() >= kMaxJobs) {
    auto oldest = std::min_element(jobs_.begin(), jobs_.end(),
                                   [](const auto& a, const auto& b) { return a.second.touched < b.second.touched; });
    jobs_.erase(oldest);
  }
  Ring& ring = jobs_[job_id];
  ring.touched = ++clock_;
  ring.Push(std::move(line), {kMaxLinesPerJob, kMaxBytesPerJob, kMaxLineBytes});
}

JobLogBatch JobLogCapture::Unsent(size_t max_bytes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  JobLogBatch batch;
  const Ring* chosen = nullptr;
  for (const auto& [job, ring] : jobs_) {
    const uint64_t end = ring.first_line + ring.lines.size();
    if (std::max(ring.sent_end, ring.first_line) >= end) continue;
    if (chosen == nullptr || ring.touched < chosen->touched) {
      chosen = &ring;
      batch.job_id = job;
    }
  }
  if (chosen == nullptr) return batch;
  batch.first_line = std::max(chosen->sent_end, chosen->first_line);
  size_t bytes = 0;
  for (size_t i = batch.first_line - chosen->first_line; i < chosen->lines.size(); ++i) {
    const std::string& line = chosen->lines[i];
    if (!batch.lines.empty() && bytes + line.size() > max_bytes) break;
    bytes += line.size();
    batch.lines.push_back(line);
  }
  return batch;
}

void JobLogCapture::MarkSent(const std::string& job_id, uint64_t end) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) it->second.sent_end = std::max(it->second.sent_end, end);
}

std::vector<std::string> JobLogCapture::Lines(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return {};
  return {it->second.lines.begin(), it->second.lines.end()};
}

uint64_t JobLogCapture::Captured(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.first_line + it->second.lines.size();
}

JobLogThread::JobLogThread(JobLogCapture* capture, const StatusBoard* board)
    : previous_capture_(t_capture), previous_board_(t_board) {
  t_capture = capture;
  t_board = board;
}

JobLogThread::~JobLogThread() {
  t_capture = previous_capture_;
  t_board = previous_board_;
}

}  // namespace tributary
