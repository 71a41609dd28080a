#include "worker/work_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tributary {

std::string JobRound(const std::string& job_id, uint64_t round) {
  return "job " + job_id + " round " + std::to_string(round);
}

void WorkQueue::PushStart(v1::RoundStart start) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string& job = start.job_id();
  const uint64_t round = start.round();
  // A re-formed island's RoundStart (same round, new incarnation) is new work, not a repeat.
  const uint64_t incarnation = start.island().incarnation();
  bool duplicate = busy_job_ == job && busy_round_ == round && busy_incarnation_ == incarnation;
  for (const WorkItem& queued : queue_)
    duplicate = duplicate || (queued.is_start && queued.start.job_id() == job && queued.start.round() == round &&
                              queued.start.island().incarnation() == incarnation);
  if (duplicate) {
    spdlog::debug("{}: {}: already being worked on; repeated RoundStart ignored", name_, JobRound(job, round));
    return;
  }
  WorkItem item;
  item.is_start = true;
  item.start = std::move(start);
  queue_.push_back(std::move(item));
  cv_.notify_one();
}

void WorkQueue::PushCommitted(v1::RoundCommitted committed) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t& seen = committed_seen_[committed.job_id()];
  seen = std::max<uint64_t>(seen, committed.round());
  WorkItem item;
  item.committed = std::move(committed);
  queue_.push_back(std::move(item));
  cv_.notify_one();
}

std::optional<WorkItem> WorkQueue::Pop(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, wait, [this] { return !queue_.empty() || closed_; });
  if (queue_.empty() || closed_) return std::nullopt;
  WorkItem item = std::move(queue_.front());
  queue_.pop_front();
  if (item.is_start) {
    busy_job_ = item.start.job_id();
    busy_round_ = item.start.round();
    busy_incarnation_ = item.start.island().incarnation();
  }
  return item;
}

void WorkQueue::Done() {
  std::lock_guard<std::mutex> lock(mutex_);
  busy_job_.clear();
  busy_round_ = 0;
}

void WorkQueue::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  cv_.notify_all();
}

uint64_t WorkQueue::CommittedSeen(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = committed_seen_.find(job_id);
  return it == committed_seen_.end() ? 0 : it->second;
}

}  // namespace tributary
