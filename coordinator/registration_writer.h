// RegistrationWriter: writes the workers' registration records to the store off the coordinator's loop, many
// in one synced write (a group commit). A Register's acknowledgement waits for its record to be durable (the
// id's key binding must survive a crash), but the loop that reads every worker's heartbeats must not wait for
// the disk: with a synced write per registration, 200 registrations a second held the loop for most of it.
//
// While one batch is written the next registrations gather; when it is done they go as the next batch. So a
// registration waits for at most two writes, and a burst costs two synced writes rather than one each.
// Not thread-safe: the loop thread owns it (the writes run on its TaskQueue's thread).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/status.h"
#include "base/task_queue.h"
#include "checkpoint/store.h"

namespace tributary {

class RegistrationWriter {
 public:
  using Done = std::function<void(const Status& written)>;

  // `store` (not owned) outlives the writer.
  explicit RegistrationWriter(checkpoint::CheckpointStore* store);

  // Queues `record` for the next batch; `done` runs on the loop thread (from Poll) with the status of the
  // batch's write: OK when the record is durable.
  void Add(checkpoint::WorkerRecord record, Done done);
  // Runs the `done`s of a written batch and starts writing the next one. Call it every loop iteration.
  void Poll();
  // Records queued or being written.
  size_t pending() const { return waiting_batch_.records.size() + writing_; }

 private:
  struct Batch {
    std::vector<checkpoint::WorkerRecord> records;
    std::vector<Done> dones;
    Status written;
  };

  checkpoint::CheckpointStore* store_;
  Batch waiting_batch_;
  size_t writing_ = 0;  // records in the batch being written (0: none)
  TaskQueue queue_;     // last: destroyed first, so a running write finishes before the rest goes
};

}  // namespace tributary
