// The coordinator's view of a job's model: the base model it starts from, the trainable state it
// rebuilds for any committed round (latest snapshot + replay of the logged aggregates), the catch-up
// plan for a lagging replica, held-out evaluation, and exports in HF formats.
//
// The trainable state is an arena (federation/replica_state.h): the model parameters, or the LoRA
// adapter parameters for methods that train adapters (the base model never changes then).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "checkpoint/store.h"
#include "engine/arena.h"
#include "engine/io/model_dir.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "federation/job_spec.h"
#include "peft/lora.h"

namespace tributary {

// How a lagging replica at committed round from_round reaches to_round.
struct CatchUpPlan {
  bool use_snapshot = false;  // load snapshot_round's snapshot first
  uint32_t snapshot_round = 0;
  std::vector<checkpoint::RoundRecord> rounds;  // then apply these, in order
};

// The logged rounds from_round+1..to_round, or, when the replica is more than snapshot_every rounds
// behind and a snapshot newer than from_round exists, that snapshot plus the rounds after it.
// `max_round_bytes` caps the aggregates returned (at least one round is returned): the caller asks
// again from where the plan ends.
Result<CatchUpPlan> PlanCatchUp(checkpoint::CheckpointStore* store, const std::string& job_id, int64_t snapshot_every,
                                uint32_t from_round, uint32_t to_round, uint64_t max_round_bytes = UINT64_MAX);

// Rebuilds the trainable state after `round` (0 = initial) from the store into `state` (an arena
// without a table gets the snapshot's): the latest snapshot at or before `round` plus the logged rounds
// after it, each checked against its logged weights hash (Corruption naming the round otherwise).
// `method` (optional) receives the job's method that replayed the rounds: a method whose Apply keeps
// state (cluster's outer momentum, federation/method.h) is then at `round` too, ready for the next one.
Status RebuildTrainableState(checkpoint::CheckpointStore* store, const std::string& job_id, const JobSpec& spec,
                             uint32_t round, Arena* state, std::unique_ptr<FederatedMethod>* method = nullptr);

class JobModel {
 public:
  // Whether the trainable state is LoRA adapters (exports as "peft" are possible).
  bool trains_adapters() const { return adapters_ != nullptr; }
  // Loads spec.base_model (config, weights, tokenizer dir) and builds the initial trainable state.
  static Result<std::unique_ptr<JobModel>> Load(const JobSpec& spec);

  const JobSpec& spec() const { return spec_; }
  const LlamaConfig& config() const { return base_.config; }
  // The trainable state before round 1 (base parameters, or the seeded initial adapters).
  const Arena& initial_state() const;
  // A fresh arena with the trainable state's layout (zeroed).
  Arena NewState() const;
  // A lower bound of the host memory a worker needs for one tasklet: the model's parameters and
  // gradients, the replica's copy of the round's starting state, and the optimizer's state
  // (activations come on top and depend on batch and sequence length).
  int64_t MinWorkerMemoryBytes() const;

  // Loads held-out rows (data.seq_len, the base model's tokenizer, no packing) for EvaluateLoss.
  Status LoadEvalRows(const std::string& path);
  bool has_eval_rows() const { return !eval_rows_.empty(); }
  // Mean held-out loss of the model with the given trainable state.
  Result<double> Evaluate(const Arena& state);

  // Writes the model with `state` to `dir` as "safetensors" (an HF model directory: config.json,
  // weights, tokenizer files of the base; adapters merged) or "peft" (adapter_config.json +
  // adapter_model.safetensors; jobs that train adapters only).
  Status Export(const Arena& state, const std::string& format, const std::string& dir) const;

 private:
  JobModel() = default;

  JobSpec spec_;
  LoadedModel base_;
  std::unique_ptr<LoraAdapters> adapters_;  // methods that train adapters: layout and initial adapters
  std::vector<SequenceRow> eval_rows_;
  std::unique_ptr<LlamaModel> eval_model_;       // built on first Evaluate
  std::unique_ptr<LoraAdapters> eval_adapters_;  // the evaluated adapters (methods that train adapters)
};

}  // namespace tributary
