#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace tributary {
namespace {

// Workers sleep on a condition variable; each job is a task counter they drain. A task that throws
// (std::bad_alloc in a kernel) ends the job early: the first exception is rethrown on the calling
// thread once every worker left it, rather than std::terminate on a pool thread.
class ThreadPool {
 public:
  explicit ThreadPool(int n) { Start(n); }
  ~ThreadPool() { Stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // + the calling thread

  void Resize(int n) {
    Stop();
    Start(n);
  }

  void Run(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
    if (num_tasks <= 0) return;
    if (num_tasks == 1 || workers_.empty() || in_job_) {
      for (int64_t t = 0; t < num_tasks; ++t) fn(t);
      return;
    }
    std::unique_lock<std::mutex> run_lock(run_mutex_);
    in_job_ = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      num_tasks_ = num_tasks;
      next_task_.store(0);
      pending_ = num_tasks;
      ++generation_;
    }
    cv_.notify_all();
    Drain();
    std::exception_ptr failure;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [&] { return pending_ == 0 && active_ == 0; });
      fn_ = nullptr;
      failure = std::exchange(failure_, nullptr);
    }
    in_job_ = false;
    if (failure) std::rethrow_exception(failure);
  }

 private:
  void Start(int n) {
    stop_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void Drain() {
    const std::function<void(int64_t)>* fn;
    int64_t total;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn = fn_;
      total = num_tasks_;
      if (!fn) return;
      ++active_;  // Run() waits for this thread to leave before reusing the job slots
    }
    int64_t done = 0;
    const bool was_in_job = in_job_;
    in_job_ = true;  // nested parallel calls from inside a task run serially
    std::exception_ptr failure;
    for (;;) {
      int64_t t = next_task_.fetch_add(1);
      if (t >= total) break;
      ++done;
      try {
        (*fn)(t);
      } catch (...) {
        failure = std::current_exception();
        // The tasks nobody took yet are skipped: they count as done.
        const int64_t next = next_task_.exchange(total);
        if (next < total) done += total - next;
        break;
      }
    }
    in_job_ = was_in_job;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failure && !failure_) failure_ = failure;
      pending_ -= done;
      --active_;
      if (pending_ == 0 && active_ == 0) done_cv_.notify_all();
    }
  }

  void WorkerLoop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      Drain();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex run_mutex_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  int64_t pending_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr failure_;  // the job's first exception (under mutex_)
  static thread_local bool in_job_;
};

thread_local bool ThreadPool::in_job_ = false;

int DefaultThreads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

std::mutex g_pool_mutex;
ThreadPool* g_pool = nullptr;

ThreadPool& Pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = new ThreadPool(DefaultThreads());  // lives for the process
  return *g_pool;
}

}  // namespace

int NumThreads() {
  return Pool().size();
}

void SetNumThreads(int n) {
  Pool().Resize(n > 0 ? n : DefaultThreads());
}

void ParallelTasks(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
  Pool().Run(num_tasks, fn);
}

void ParallelFor(int64_t begin, int64_t end, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  int64_t chunks = std::min<int64_t>(NumThreads(), (n + min_chunk - 1) / min_chunk);
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t base = n / chunks, extra = n % chunks;
  ParallelTasks(chunks, [&](int64_t c) {
    const int64_t lo = begin + c * base + std::min(c, extra);
    const int64_t hi = lo + base + (c < extra ? 1 : 0);
    fn(lo, hi);
  });
}

}  // namespace tributary
