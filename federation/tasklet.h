// A worker's side of one round, without networking: train the local replica for the job's local
// steps on the worker's own rows, then turn the change of the trainable state (federation/replica_state.h)
// into the upload payload of the job's method (federation/method.h). A method with its own local
// procedure (fedkseed's zeroth-order steps: FederatedMethod::RunsLocalProcedure) runs that instead.
//
// Determinism: a worker's data order is a shuffle seeded by (job seed, round, worker id) and the
// optimizer is fresh every round, so redoing a round's tasklet from the same replica yields the same
// bytes (what crash recovery relies on).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "engine/train/trainer.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "peft/lora.h"

namespace tributary {

// Seed of a worker's data order in a round: splitmix64 mixing of the job seed, the round and an
// FNV-1a hash of the worker id.
uint64_t TaskletDataSeed(uint64_t job_seed, uint32_t round, std::string_view worker_id);

struct TaskletInput {
  JobSpec spec;
  uint32_t round = 0;
  std::string worker_id;
  const std::vector<SequenceRow>* rows = nullptr;  // the worker's training rows (not owned)
  // Between backward and every optimizer step (engine/train/trainer.h); null: the worker trains alone.
  GradientReducer* reducer = nullptr;
};

struct TaskletResult {
  std::vector<uint8_t> payload;  // the upload (federation/method.h)
  uint64_t num_samples = 0;      // the worker's dataset size in rows (FedAvg "samples" weight)
  double train_loss = 0;         // mean loss over the local steps
  int64_t local_steps = 0;
  // Cluster mode: payload bytes the island's members sent each other in this round's collectives
  // (cluster/island.h bytes_sent, summed over the members); 0 for a lone worker.
  uint64_t island_bytes = 0;
};

// Runs one round's local training. `model` holds the committed global model of round - 1 on entry
// (the caller keeps its replica synced); `adapters` (attached by this call for the duration of
// training) holds the global adapters when the method trains adapters, else it is null. On return the
// replica is back at its entry state bit for bit, ready for the method's Apply. Errors name the worker.
// With privacy.mechanism local the payload is LocalPrivacy's.
Result<TaskletResult> RunTasklet(const TaskletInput& input, const FederatedMethod& method, LlamaModel& model,
                                 LoraAdapters* adapters = nullptr);

// Local differential privacy (federation/privacy.h): the result's payload clipped to
// aggregation.clip_norm against the method's reference (`global`: the state the round started from)
// plus N(0, (z C)^2) per coordinate from a fresh key, in the payload's own format.
Result<std::vector<uint8_t>> LocalPrivacy(const JobSpec& spec, const FederatedMethod& method, const TaskletInput& input,
                                          const TaskletResult& result, const Arena& global);

}  // namespace tributary
