#include "coordinator/job_model.h"

#include <filesystem>

#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "federation/method.h"
#include "federation/replica_state.h"

namespace tributary {

Result<CatchUpPlan> PlanCatchUp(checkpoint::CheckpointStore* store, const std::string& job_id, int64_t snapshot_every,
                                uint32_t from_round, uint32_t to_round, uint64_t max_round_bytes) {
  CatchUpPlan plan;
  if (from_round >= to_round) return plan;
  uint32_t replay_from = from_round + 1;
  if (to_round - from_round > static_cast<uint64_t>(snapshot_every)) {
    auto snapshot = store->LatestSnapshotAtOrBefore(job_id, to_round);
    if (snapshot.ok() && snapshot->round > from_round) {
      plan.use_snapshot = true;
      plan.snapshot_round = snapshot->round;
      replay_from = snapshot->round + 1;
    } else if (!snapshot.ok() && snapshot.status().code() != StatusCode::kNotFound) {
      return snapshot.status();
    }
  }
  // One round at a time so a size cap never loads more than one aggregate past it.
  uint64_t bytes = 0;
  for (uint32_t round = replay_from; round <= to_round; ++round) {
    TRIB_ASSIGN_OR_RETURN(checkpoint::RoundRecord record, store->GetRound(job_id, round));
    bytes += record.aggregate.size();
    if (!plan.rounds.empty() && bytes > max_round_bytes) break;
    plan.rounds.push_back(std::move(record));
  }
  return plan;
}

Status RebuildTrainableState(checkpoint::CheckpointStore* store, const std::string& job_id, const JobSpec& spec,
                             uint32_t round, Arena* state, std::unique_ptr<FederatedMethod>* method_out) {
  // A method whose Apply keeps state (cluster's outer momentum) replays from the initial model.
  const uint32_t snapshot_limit = ApplyKeepsState(spec) ? 0 : round;
  TRIB_ASSIGN_OR_RETURN(checkpoint::SnapshotRecord snapshot, store->LatestSnapshotAtOrBefore(job_id, snapshot_limit));
  if (state->table_ptr() == nullptr) {
    TRIB_ASSIGN_OR_RETURN(std::shared_ptr<TensorTable> table, store->SnapshotTable(job_id, snapshot.round));
    *state = Arena(std::move(table));
  }
  TRIB_RETURN_IF_ERROR(store->LoadSnapshot(job_id, snapshot.round, state->table(), state->data()));
  if (WeightsHash(*state) != snapshot.weights_hash)
    return Status::Corruption("job '" + job_id + "': snapshot of round " + std::to_string(snapshot.round) +
                              ": weights hash does not match its manifest");
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<FederatedMethod> method, CreateMethod(spec, state->table_ptr()));
  if (method_out != nullptr) *method_out = std::move(method);
  FederatedMethod& replay = method_out != nullptr ? **method_out : *method;
  if (snapshot.round >= round) return Status::OK();
  for (uint32_t r = snapshot.round + 1; r <= round; ++r) {
    TRIB_ASSIGN_OR_RETURN(checkpoint::RoundRecord record, store->GetRound(job_id, r));
    const auto* bytes = reinterpret_cast<const uint8_t*>(record.aggregate.data());
    TRIB_RETURN_IF_ERROR(
        replay.Apply({bytes, record.aggregate.size()}, r, state).WithContext("job '" + job_id + "': replaying"));
    if (WeightsHash(*state) != record.weights_hash)
      return Status::Corruption("job '" + job_id + "': replaying round " + std::to_string(r) +
                                ": weights hash does not match the committed round");
  }
  return Status::OK();
}

Result<std::unique_ptr<JobModel>> JobModel::Load(const JobSpec& spec) {
  std::unique_ptr<JobModel> model(new JobModel());
  model->spec_ = spec;
  auto loaded = LoadModelDir(spec.base_model);
  if (!loaded.ok()) return loaded.status().WithContext("field 'model.base'");
  model->base_ = std::move(*loaded);
  if (spec.seq_len > model->base_.config.max_position_embeddings)
    return Status::InvalidArgument("field 'data.seq_len': " + std::to_string(spec.seq_len) +
                                   " exceeds the base model's max_position_embeddings " +
                                   std::to_string(model->base_.config.max_position_embeddings));
  TRIB_ASSIGN_OR_RETURN(model->adapters_, CreateJobAdapters(spec, model->base_.config));
  return model;
}

const Arena& JobModel::initial_state() const {
  return adapters_ ? adapters_->params() : base_.params;
}

Arena JobModel::NewState() const {
  Arena arena(initial_state().table_ptr());
  arena.Zero();
  return arena;
}

int64_t JobModel::MinWorkerMemoryBytes() const {
  const int64_t model_bytes = base_.params.size() * static_cast<int64_t>(sizeof(float));
  const int64_t state_bytes = initial_state().size() * static_cast<int64_t>(sizeof(float));
  const int64_t optimizer_states = spec_.optimizer == "adamw" ? 2 : (spec_.momentum > 0 ? 1 : 0);
  // params + grads of the model; the trainable state's copy, its grads (lora) and optimizer state.
  return 2 * model_bytes + state_bytes * (1 + optimizer_states + (adapters_ ? 1 : 0));
}

Status JobModel::LoadEvalRows(const std::string& path) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(spec_.base_model));
  TRIB_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(path));
  if (examples.empty()) return Status::InvalidArgument(path + ": no examples");
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> tokenized, TokenizeExamples(examples, *tokenizer, {}));
  eval_rows_ = BuildRows(tokenized, spec_.seq_len, /*pack=*/false, tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : 0);
  if (eval_rows_.empty()) return Status::InvalidArgument(path + ": no evaluation rows after tokenization");
  return Status::OK();
}

Result<double> JobModel::Evaluate(const Arena& state) {
  if (eval_rows_.empty()) return Status::FailedPrecondition("no held-out rows loaded");
  if (!eval_model_) {
    TRIB_ASSIGN_OR_RETURN(eval_model_, LlamaModel::Create(base_.config));
    eval_model_->params().CopyFrom(base_.params);
  }
  if (adapters_) {
    if (!eval_adapters_) {
      TRIB_ASSIGN_OR_RETURN(eval_adapters_, LoraAdapters::Create(base_.config, adapters_->options()));
    }
    eval_adapters_->params().CopyFrom(state);
    eval_adapters_->Attach(*eval_model_);
  } else {
    eval_model_->params().CopyFrom(state);
  }
  auto eval = EvaluateLoss(*eval_model_, eval_rows_, spec_.batch_size);
  if (adapters_) LoraAdapters::Detach(*eval_model_);
  if (!eval.ok()) return eval.status();
  return eval->mean_loss;
}

Status JobModel::Export(const Arena& state, const std::string& format, const std::string& dir) const {
  if (format == "peft") {
    if (!adapters_)
      return Status::FailedPrecondition("--format peft needs a job that trains adapters; this job's mode is " +
                                        spec_.mode + " (use --format safetensors)");
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapters> out, LoraAdapters::Create(base_.config, adapters_->options()));
    out->params().CopyFrom(state);
    return out->Save(dir, spec_.base_model);
  }
  if (format != "safetensors")
    return Status::InvalidArgument("export format '" + format + "': expected safetensors or peft");
  SaveModelOptions options;
  options.copy_tokenizer_from = spec_.base_model;
  options.dtype = base_.stored_dtype;  // the base's storage dtype, as HF saves a tuned model
  if (!adapters_) return SaveModelDir(dir, base_.config, state, options);
  // lora: the base with the adapters merged in (W += scaling * B A).
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapters> merged, LoraAdapters::Create(base_.config, adapters_->options()));
  merged->params().CopyFrom(state);
  Arena params(base_.params.table_ptr());
  params.CopyFrom(base_.params);
  merged->MergeInto(params);
  return SaveModelDir(dir, base_.config, params, options);
}

}  // namespace tributary
