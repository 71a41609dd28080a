// A worker's side of one federated round, without networking: train the local replica for the job's
// local steps on the worker's own rows, then turn the change into the upload payload of the job's mode;
// and the one function every replica (worker and coordinator) uses to apply a committed aggregate.
//
// The "trainable state" a round changes is an arena: the model parameters (ferret, fedavg) or the LoRA
// adapter parameters (lora; the base model never changes). Payloads and aggregates of the modes:
//   ferret : ferret-spec 8 coefficient payload (SerializePayload of ProjectUpdate / the aggregate)
//   fedavg : the dense fp32 delta w_old - w_new of the parameter arena, little-endian, arena order
//            (padding included); the aggregate is the weighted mean delta, applied as w -= slr * mean
//   lora   : the adapter parameter arena (fp32, arena order); the aggregate replaces the adapters
//
// Determinism: a worker's data order is a shuffle seeded by (job seed, round, worker id) and the
// optimizer is fresh every round, so redoing a round's tasklet from the same replica yields the same
// bytes (what crash recovery relies on).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// NOTE: JobSpec lives in coordinator/ (above worker/ in the dependency order); only the header-only
// struct is used here, nothing that needs linking against tributary_coordinator.
#include "base/status.h"
#include "engine/arena.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "peft/ferret.h"
#include "peft/lora.h"
#include "scheduler/job_spec.h"

namespace tributary {

// "ferret" | "fedavg" | "lora" (a local copy so the worker does not link the spec parser).
const char* TaskletModeName(FederatedMode mode);

// The job spec's ferret section as peft options (InvalidArgument naming the field for a bad value).
Result<FerretOptions> FerretOptionsFromSpec(const JobSpec& spec);
// The job spec's lora section as peft options (the adapters' init seed is the job seed).
LoraOptions LoraOptionsFromSpec(const JobSpec& spec);

// Seed of a worker's data order in a round: splitmix64 mixing of the job seed, the round and an
// FNV-1a hash of the worker id.
uint64_t TaskletDataSeed(uint64_t job_seed, uint32_t round, std::string_view worker_id);

// FNV-1a 64 of the arena's bytes (padding included): the replicas' weights hash (ferret-spec 11).
uint64_t WeightsHash(const Arena& arena);

struct TaskletInput {
  JobSpec spec;
  uint32_t round = 0;
  std::string worker_id;
  const std::vector<SequenceRow>* rows = nullptr;  // the worker's training rows (not owned)
};

struct TaskletResult {
  std::vector<uint8_t> payload;  // the upload (see the file comment)
  uint64_t num_samples = 0;      // the worker's dataset size in rows (FedAvg "samples" weight)
  double train_loss = 0;         // mean loss over the local steps
  int64_t local_steps = 0;
};

// Runs one round's local training. `model` holds the committed global model of round - 1 on entry
// (the caller keeps its replica synced); for lora, `adapters` (attached by this call for the duration
// of training) holds the global adapters. On return the replica is back at its entry state bit for
// bit, ready for ApplyCommittedRound. Errors name the worker.
Result<TaskletResult> RunTasklet(const TaskletInput& input, LlamaModel& model, LoraAdapters* adapters = nullptr);

// Applies the committed aggregate of `round` to the trainable state `target` (model parameters for
// ferret / fedavg, adapter parameters for lora). InvalidArgument when the aggregate does not fit.
Status ApplyCommittedRound(const JobSpec& spec, uint32_t round, std::span<const uint8_t> aggregate, Arena* target);

// Dense fp32 vectors <-> little-endian bytes (fedavg and lora payloads).
std::vector<uint8_t> FloatsToBytes(const float* values, int64_t count);
// InvalidArgument naming `what` when the size is not count * 4 bytes.
Status BytesToFloats(std::span<const uint8_t> bytes, int64_t count, float* out, std::string_view what);

}  // namespace tributary
