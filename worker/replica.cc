#include "worker/replica.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/file_util.h"
#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "federation/job_spec.h"
#include "federation/replica_state.h"

namespace tributary {

Result<std::unique_ptr<JobReplica>> JobReplica::Create(const std::string& job_id, const JobSpec& spec,
                                                       const std::string& dataset_path) {
  const std::string context = "job '" + job_id + "'";
  std::unique_ptr<JobReplica> replica(new JobReplica());
  replica->job_id_ = job_id;
  replica->spec_ = spec;

  // The base model, read straight into the model's own arena.
  auto config = ReadLlamaConfig(JoinPath(spec.base_model, "config.json"));
  if (!config.ok()) return config.status().WithContext(context + ": field 'model.base'");
  TRIB_RETURN_IF_ERROR(CheckJobSizesForModel(spec, *config, context));
  if (spec.seq_len > config->max_position_embeddings)
    return Status::InvalidArgument(context + ": field 'data.seq_len': " + std::to_string(spec.seq_len) +
                                   " exceeds the base model's max_position_embeddings " +
                                   std::to_string(config->max_position_embeddings));
  auto model = LlamaModel::Create(*config);
  if (!model.ok()) return model.status().WithContext(context + ": field 'model.base'");
  replica->model_ = std::move(*model);
  TRIB_RETURN_IF_ERROR(LoadModelWeights(spec.base_model, *config, &replica->model_->params()).WithContext(context));
  auto adapters = CreateJobAdapters(spec, *config);
  if (!adapters.ok()) return adapters.status().WithContext(context);
  replica->adapters_ = std::move(*adapters);
  auto method = CreateMethod(spec, replica->state().table_ptr());
  if (!method.ok()) return method.status().WithContext(context);
  replica->method_ = std::move(*method);

  // Every local example trains (the coordinator holds the evaluation set).
  auto tokenizer = LoadTokenizer(spec.base_model);
  if (!tokenizer.ok()) return tokenizer.status().WithContext(context);
  auto examples = LoadExamples(dataset_path);
  if (!examples.ok()) return examples.status().WithContext(context);
  if (examples->empty()) return Status::InvalidArgument(context + ": " + dataset_path + ": no examples");
  auto tokenized = TokenizeExamples(*examples, **tokenizer, TokenizeOptions{});
  if (!tokenized.ok()) return tokenized.status().WithContext(context + ": " + dataset_path);
  int32_t pad_id = (*tokenizer)->pad_id();
  if (pad_id < 0) pad_id = (*tokenizer)->eos_id();
  if (pad_id < 0) pad_id = 0;
  replica->rows_ = BuildRows(*tokenized, spec.seq_len, /*pack=*/true, pad_id);
  if (replica->rows_.empty())
    return Status::InvalidArgument(context + ": " + dataset_path + ": no training rows after tokenization");

  replica->hash_ = WeightsHash(replica->state());
  return replica;
}

uint64_t JobReplica::state_bytes() const {
  return static_cast<uint64_t>(state().size()) * sizeof(float);
}

Status JobReplica::CheckHash(uint64_t round, const std::string& expected_hash) const {
  if (expected_hash.empty() || expected_hash == HashHex(hash_)) return Status::OK();
  return Status::Corruption("job '" + job_id_ + "' round " + std::to_string(round) + ": weights hash " +
                            HashHex(hash_) + " does not match the coordinator's " + expected_hash);
}

Status JobReplica::ApplyRound(uint64_t round, std::span<const uint8_t> aggregate, const std::string& expected_hash) {
  if (round != round_ + 1)
    return Status::FailedPrecondition("job '" + job_id_ + "': cannot apply round " + std::to_string(round) +
                                      " to a replica at round " + std::to_string(round_));
  Status applied = method_->Apply(aggregate, static_cast<uint32_t>(round), &state());
  hash_ = WeightsHash(state());
  round_ = round;
  if (!applied.ok()) return applied.WithContext("job '" + job_id_ + "'");
  return CheckHash(round, expected_hash);
}

Status JobReplica::LoadSnapshot(uint64_t round, const std::string& bytes, const std::string& expected_hash) {
  Arena& target = state();
  if (bytes.size() != state_bytes())
    return Status::InvalidArgument("job '" + job_id_ + "': snapshot of round " + std::to_string(round) + ": " +
                                   std::to_string(bytes.size()) + " bytes, expected " + std::to_string(state_bytes()));
  std::memcpy(target.data(), bytes.data(), bytes.size());
  hash_ = WeightsHash(target);
  round_ = round;
  return CheckHash(round, expected_hash);
}

Result<TaskletResult> JobReplica::RunRound(uint64_t round, const std::string& worker_id, GradientReducer* reducer,
                                           const RoundShape& shape) {
  if (round != round_ + 1)
    return Status::FailedPrecondition("job '" + job_id_ + "': round " + std::to_string(round) +
                                      " needs the replica at round " + std::to_string(round - 1) + ", it is at " +
                                      std::to_string(round_));
  TaskletInput input{spec_, static_cast<uint32_t>(round), worker_id, &rows_, reducer};
  if (shape.batch_size > 0) input.spec.batch_size = shape.batch_size;
  if (shape.local_steps > 0) input.spec.local_steps = shape.local_steps;
  if (input.spec.local_steps < 1)
    return Status::InvalidArgument("job '" + job_id_ + "': round " + std::to_string(round) +
                                   ": train.local_steps is auto and the round names no H");
  return RunTasklet(input, *method_, *model_, adapters_.get());
}

Result<ComputeRate> JobReplica::MeasureCompute(const CalibrationOptions& options) {
  auto rate = MeasureComputeRate(*model_, adapters_.get(), rows_, spec_.batch_size, options);
  if (!rate.ok()) return rate.status().WithContext("job '" + job_id_ + "'");
  return rate;
}

}  // namespace tributary
