// TaskQueue: one thread of its own that runs long steps in the order they were posted, so an event loop
// never waits for them. Each step's `done` runs later on the loop's thread, when the loop calls Poll:
// the loop's state is touched only by the loop.
//
// The coordinator gives each job one (its aggregation, evaluation, snapshots and exports run there, in
// order, while the loop keeps answering heartbeats: coordinator/job_runner.h).
//
// Typical use:
//   TaskQueue queue("job-a");
//   auto result = std::make_shared<Result<double>>(0.0);
//   queue.Post([result] { *result = SlowEvaluation(); },       // on the queue's thread
//              [this, result] { OnEvaluated(*result); });      // on the loop, from Poll
//   ...  // every loop iteration:
//   queue.Poll();
//
// What a step reads must not change until its `done` ran (share it by shared_ptr, or only change it
// from a later `done`). Destruction waits for the running step, drops the steps that have not started
// and never calls a pending `done`.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace tributary {

class TaskQueue {
 public:
  explicit TaskQueue(std::string name);
  ~TaskQueue();
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  // Queues `work` (run on the queue's thread after the steps posted before it) and its `done` (run by the
  // Poll after `work` returned). Either may be empty. The thread starts at the first Post.
  void Post(std::function<void()> work, std::function<void()> done);
  // Runs the `done` of every step whose work finished, in posting order; returns how many ran. Call it
  // from the loop's thread only.
  size_t Poll();
  // Steps posted and not yet through Poll (queued, running, or finished and waiting for Poll).
  size_t pending() const;

 private:
  struct Step {
    std::function<void()> work;
    std::function<void()> done;
  };
  void RunSteps();

  std::string name_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Step> queued_;    // not started
  std::deque<Step> finished_;  // work returned, done not run
  bool running_ = false;       // a step's work is running
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tributary
