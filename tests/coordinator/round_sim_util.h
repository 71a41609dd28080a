// In-process federated simulation for the round driver tests: a tiny LLaMA, four workers with
// non-IID data (each sees one letter pattern), a real RocksDB store in a temp dir, no sockets.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/store.h"
#include "coordinator/round_driver.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "peft/lora.h"
#include "scheduler/scheduler.h"
#include "tests/common/temp_dir.h"

namespace tributary::round_sim {

inline constexpr char kDataset[] = "letters";
inline constexpr int kNumWorkers = 4;

using testutil::TempDir;

LlamaConfig TinyConfig();
// Worker w's rows (non-IID: one pattern per worker); held-out rows of all four patterns.
std::vector<SequenceRow> WorkerRows(int worker);
std::vector<SequenceRow> HeldOutRows();

// A ferret job over the tiny model (tests change the mode and fields they need).
JobSpec TinyJobSpec(const std::string& mode, uint64_t seed, int64_t rounds);

struct SimWorker {
  std::string id;
  std::unique_ptr<LlamaModel> model;       // the worker's replica (base model for lora)
  std::unique_ptr<LoraAdapters> adapters;  // lora only: the replica of the global adapters
  std::unique_ptr<FederatedMethod> method;
  std::vector<SequenceRow> rows;
  uint32_t at_round = 0;  // last committed round its replica reflects
  Arena& state() { return adapters ? adapters->params() : model->params(); }
};

// Workers w0..w{count-1}, each with a replica of the initial model (InitRandom(7)) and, for lora, adapters
// initialised from the job's LoRA options; worker w holds WorkerRows(w % kNumWorkers).
std::vector<SimWorker> MakeWorkers(const JobSpec& spec, int count = kNumWorkers);
std::vector<WorkerInventory> Inventory(const std::vector<SimWorker>& workers);

// Held-out loss of a model with `params` (and adapters `adapter_params` for lora, else null).
double HeldOutLoss(const JobSpec& spec, const Arena& state);

// One round: start, every participant not in `absent` runs its tasklet and uploads, close (at the
// deadline when someone is absent), then every worker not in `absent` applies the aggregate and must
// match the committed weights hash. Returns the committed round (fails the test on error).
CommittedRound RunRound(RoundDriver& driver, std::vector<SimWorker>& workers, int64_t now_ms,
                        const std::set<std::string>& absent = {});

// Runs a whole job from scratch in `dir`; returns the final global weights hash.
uint64_t RunJob(const JobSpec& spec, const std::string& dir);

}  // namespace tributary::round_sim
