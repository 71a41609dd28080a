#include "worker/tasklet.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>

#include "engine/train/optimizer.h"
#include "engine/train/trainer.h"

namespace tributary {
namespace {

static_assert(std::endian::native == std::endian::little, "dense payloads are written as native little-endian floats");

uint64_t Fnv1a(const void* data, size_t bytes, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string WorkerContext(const TaskletInput& input) {
  return "worker '" + input.worker_id + "': round " + std::to_string(input.round) + ": ";
}

}  // namespace

const char* TaskletModeName(FederatedMode mode) {
  switch (mode) {
    case FederatedMode::kFerret: return "ferret";
    case FederatedMode::kFedAvg: return "fedavg";
    case FederatedMode::kLora: return "lora";
  }
  return "unknown";
}

Result<FerretOptions> FerretOptionsFromSpec(const JobSpec& spec) {
  FerretOptions options;
  if (spec.ferret_k < 1 || spec.ferret_k > 65535)
    return Status::InvalidArgument("field 'ferret.k': must be in [1, 65535], got " + std::to_string(spec.ferret_k));
  options.K = static_cast<int>(spec.ferret_k);
  TRIB_ASSIGN_OR_RETURN(options.distribution, ParseDistribution(spec.ferret_distribution));
  TRIB_ASSIGN_OR_RETURN(options.scaling, ParseScaling(spec.ferret_scaling));
  TRIB_ASSIGN_OR_RETURN(options.blocking, ParseBlockingRule(spec.ferret_blocking));
  TRIB_ASSIGN_OR_RETURN(options.allocation, ParseAllocation(spec.ferret_allocation));
  TRIB_ASSIGN_OR_RETURN(options.seed_mode, ParseSeedMode(spec.ferret_seed_mode));
  TRIB_ASSIGN_OR_RETURN(options.wire_dtype, ParseWireDtype(spec.ferret_wire_dtype));
  TRIB_ASSIGN_OR_RETURN(options.weights, ParseAggregationWeights(spec.aggregation_weights));
  options.job_seed = spec.seed;
  options.server_lr = spec.server_lr;
  TRIB_RETURN_IF_ERROR(ValidateFerretOptions(options));
  return options;
}

LoraOptions LoraOptionsFromSpec(const JobSpec& spec) {
  LoraOptions options;
  options.rank = spec.lora_rank;
  options.alpha = spec.lora_alpha;
  options.dropout = spec.lora_dropout;
  options.target_modules = spec.lora_targets;
  options.seed = spec.seed;
  return options;
}

uint64_t TaskletDataSeed(uint64_t job_seed, uint32_t round, std::string_view worker_id) {
  const uint64_t worker_hash = Fnv1a(worker_id.data(), worker_id.size());
  return SplitMix64(SplitMix64(job_seed ^ SplitMix64(round)) ^ worker_hash);
}

uint64_t WeightsHash(const Arena& arena) {
  return Fnv1a(arena.data(), static_cast<size_t>(arena.size()) * sizeof(float));
}

std::vector<uint8_t> FloatsToBytes(const float* values, int64_t count) {
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * sizeof(float));
  if (count > 0) std::memcpy(bytes.data(), values, bytes.size());
  return bytes;
}

Status BytesToFloats(std::span<const uint8_t> bytes, int64_t count, float* out, std::string_view what) {
  const size_t expected = static_cast<size_t>(count) * sizeof(float);
  if (bytes.size() != expected)
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                                   std::to_string(expected) + " (" + std::to_string(count) + " fp32 values)");
  if (count > 0) std::memcpy(out, bytes.data(), expected);
  return Status::OK();
}

Result<TaskletResult> RunTasklet(const TaskletInput& input, LlamaModel& model, LoraAdapters* adapters) {
  const JobSpec& spec = input.spec;
  const std::string context = WorkerContext(input);
  if (input.rows == nullptr || input.rows->empty())
    return Status::InvalidArgument(context + "no training rows for dataset '" + spec.dataset + "'");
  const bool lora = spec.mode == FederatedMode::kLora;
  if (lora && adapters == nullptr) return Status::InvalidArgument(context + "lora job without adapters");

  // The round's data order: a shuffle of the worker's rows seeded by (job seed, round, worker).
  const std::vector<size_t> order =
      ShuffledIndices(input.rows->size(), TaskletDataSeed(spec.seed, input.round, input.worker_id));
  std::vector<SequenceRow> rows;
  rows.reserve(order.size());
  for (size_t i : order) rows.push_back((*input.rows)[i]);

  OptimizerOptions opt;
  opt.type = spec.optimizer;
  opt.weight_decay = spec.weight_decay;
  opt.momentum = spec.momentum;
  TrainLoopOptions loop;
  loop.steps = spec.local_steps;
  loop.batch_size = spec.batch_size;
  loop.grad_accum = spec.grad_accum;
  loop.max_grad_norm = spec.max_grad_norm;
  loop.schedule.lr = spec.lr;

  Arena& state = lora ? adapters->params() : model.params();
  Arena w_old(state.table_ptr());
  w_old.CopyFrom(state);

  auto optimizer = CreateOptimizer(opt, state.table_ptr());
  if (!optimizer.ok()) return optimizer.status().WithContext(context);
  TaskletResult result;
  result.local_steps = spec.local_steps;
  result.num_samples = input.rows->size();
  double loss_sum = 0;
  std::function<void(const StepStats&)> on_step = [&loss_sum](const StepStats& stats) { loss_sum += stats.loss; };
  if (lora) {
    // The adapters carry their own params/grads; the base is frozen while they are attached. The
    // dropout step advances after every optimizer step, continuing across rounds.
    loop.target = {&adapters->params(), &adapters->grads()};
    on_step = [&loss_sum, adapters](const StepStats& stats) {
      loss_sum += stats.loss;
      adapters->NextDropoutStep();
    };
    adapters->Attach(model);
    adapters->SetTraining(spec.lora_dropout > 0);
  }
  int64_t next_row = 0;
  Status trained = TrainSteps(model, **optimizer, rows, loop, &next_row, on_step);
  if (lora) {
    adapters->SetTraining(false);
    LoraAdapters::Detach(model);
    model.SetBaseTrainable(true);
  }
  if (!trained.ok()) {
    state.CopyFrom(w_old);
    return trained.WithContext(context);
  }
  result.train_loss = spec.local_steps > 0 ? loss_sum / static_cast<double>(spec.local_steps) : 0.0;

  Status produced = Status::OK();
  switch (spec.mode) {
    case FederatedMode::kFerret: {
      auto options = FerretOptionsFromSpec(spec);
      if (!options.ok()) {
        produced = options.status();
        break;
      }
      auto blocks = MakeFerretBlocks(*options, state.table());
      if (!blocks.ok()) {
        produced = blocks.status();
        break;
      }
      auto projection = ProjectUpdate(*options, *blocks, w_old, state, input.round);
      if (!projection.ok()) {
        produced = projection.status();
        break;
      }
      auto bytes = SerializePayload(projection->payload);
      if (!bytes.ok()) {
        produced = bytes.status();
        break;
      }
      result.payload = std::move(*bytes);
      break;
    }
    case FederatedMode::kFedAvg: {
      std::vector<float> delta(static_cast<size_t>(state.size()));
      for (int64_t i = 0; i < state.size(); ++i) delta[i] = w_old.data()[i] - state.data()[i];
      for (float d : delta) {
        if (!std::isfinite(d)) {
          produced = Status::InvalidArgument("update is not finite");
          break;
        }
      }
      result.payload = FloatsToBytes(delta.data(), state.size());
      break;
    }
    case FederatedMode::kLora: result.payload = FloatsToBytes(state.data(), state.size()); break;
  }
  state.CopyFrom(w_old);  // back to the committed global state for ApplyCommittedRound
  if (!produced.ok()) return produced.WithContext(context);
  return result;
}

Status ApplyCommittedRound(const JobSpec& spec, uint32_t round, std::span<const uint8_t> aggregate, Arena* target) {
  const std::string context = "round " + std::to_string(round) + ": aggregate";
  switch (spec.mode) {
    case FederatedMode::kFerret: {
      TRIB_ASSIGN_OR_RETURN(FerretOptions options, FerretOptionsFromSpec(spec));
      TRIB_ASSIGN_OR_RETURN(std::vector<Block> blocks, MakeFerretBlocks(options, target->table()));
      auto payload = ParsePayload(aggregate, {static_cast<int>(blocks.size()), options.K});
      if (!payload.ok()) return payload.status().WithContext(context);
      if (payload->round != round)
        return Status::InvalidArgument(context + ": carries round " + std::to_string(payload->round));
      return ApplyAggregate(options, blocks, *payload, spec.server_lr, *target).WithContext(context);
    }
    case FederatedMode::kFedAvg: {
      const size_t expected = static_cast<size_t>(target->size()) * sizeof(float);
      if (aggregate.size() != expected)
        return Status::InvalidArgument(context + ": " + std::to_string(aggregate.size()) + " bytes, expected " +
                                       std::to_string(expected));
      float* w = target->data();
      for (int64_t i = 0; i < target->size(); ++i) {
        float mean;
        std::memcpy(&mean, aggregate.data() + i * sizeof(float), sizeof(float));
        w[i] = static_cast<float>(static_cast<double>(w[i]) - spec.server_lr * static_cast<double>(mean));
      }
      return Status::OK();
    }
    case FederatedMode::kLora: return BytesToFloats(aggregate, target->size(), target->data(), context);
  }
  return Status::InvalidArgument(context + ": unknown mode");
}

}  // namespace tributary
