#include "coordinator/registration_writer.h"

#include <utility>

namespace tributary {

RegistrationWriter::RegistrationWriter(checkpoint::CheckpointStore* store) : store_(store), queue_("registrations") {}

void RegistrationWriter::Add(checkpoint::WorkerRecord record, Done done) {
  waiting_batch_.records.push_back(std::move(record));
  waiting_batch_.dones.push_back(std::move(done));
}

void RegistrationWriter::Poll() {
  queue_.Poll();
  if (writing_ > 0 || waiting_batch_.records.empty()) return;
  auto batch = std::make_shared<Batch>(std::move(waiting_batch_));
  waiting_batch_ = Batch();
  writing_ = batch->records.size();
  checkpoint::CheckpointStore* store = store_;
  queue_.Post([store, batch] { batch->written = store->PutWorkers(batch->records); },
              [this, batch] {
                writing_ = 0;
                for (const Done& done : batch->dones) done(batch->written);
              });
}

}  // namespace tributary
