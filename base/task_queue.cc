#include "base/task_queue.h"

#include <pthread.h>

#include <utility>

namespace tributary {

TaskQueue::TaskQueue(std::string name) : name_(std::move(name)) {}

TaskQueue::~TaskQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    queued_.clear();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TaskQueue::Post(std::function<void()> work, std::function<void()> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_.push_back({std::move(work), std::move(done)});
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { RunSteps(); });
      // Named for top/gdb; Linux keeps 15 characters.
      pthread_setname_np(thread_.native_handle(), ("tq-" + name_).substr(0, 15).c_str());
    }
  }
  wake_.notify_one();
}

size_t TaskQueue::Poll() {
  std::deque<Step> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready.swap(finished_);
  }
  for (Step& step : ready) {
    if (step.done) step.done();
  }
  return ready.size();
}

size_t TaskQueue::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_.size() + finished_.size() + (running_ ? 1 : 0);
}

void TaskQueue::RunSteps() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queued_.empty(); });
    if (stopping_) return;
    Step step = std::move(queued_.front());
    queued_.pop_front();
    running_ = true;
    lock.unlock();
    if (step.work) step.work();
    lock.lock();
    running_ = false;
    finished_.push_back(std::move(step));
  }
}

}  // namespace tributary
