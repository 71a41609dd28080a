#include "federation/tasklet.h"

#include <functional>

#include "base/hash.h"
#include "engine/train/optimizer.h"

namespace tributary {
namespace {

std::string WorkerContext(const TaskletInput& input) {
  return "worker '" + input.worker_id + "': round " + std::to_string(input.round) + ": ";
}

// The round's data order: a shuffle of the worker's rows seeded by (job seed, round, worker).
std::vector<SequenceRow> RoundRows(const TaskletInput& input) {
  const std::vector<size_t> order =
      ShuffledIndices(input.rows->size(), TaskletDataSeed(input.spec.seed, input.round, input.worker_id));
  std::vector<SequenceRow> rows;
  rows.reserve(order.size());
  for (size_t i : order) rows.push_back((*input.rows)[i]);
  return rows;
}

TrainLoopOptions LoopOptions(const TaskletInput& input) {
  const JobSpec& spec = input.spec;
  TrainLoopOptions loop;
  loop.steps = spec.local_steps;
  loop.batch_size = spec.batch_size;
  loop.grad_accum = spec.grad_accum;
  loop.max_grad_norm = spec.max_grad_norm;
  loop.schedule.lr = spec.lr;
  loop.reducer = input.reducer;
  return loop;
}

// Adds the local-privacy noise to a result's payload when the job asks for it.
Status MaybeLocalPrivacy(const TaskletInput& input, const FederatedMethod& method, const Arena& global,
                         TaskletResult* result) {
  if (input.spec.privacy.mechanism != DpMechanism::kLocal) return Status::OK();
  TRIB_ASSIGN_OR_RETURN(result->payload, LocalPrivacy(input.spec, method, input, *result, global));
  return Status::OK();
}

// A method's own local procedure (FederatedMethod::RunsLocalProcedure) in place of the first-order steps.
Result<TaskletResult> RunMethodProcedure(const TaskletInput& input, const FederatedMethod& method,
                                         const std::vector<SequenceRow>& rows, LlamaModel& model) {
  const std::string context = WorkerContext(input);
  if (input.reducer != nullptr)
    return Status::InvalidArgument(context + input.spec.mode + " runs its own local steps: no gradient reducer");
  Arena& state = model.params();
  Arena w_old(state.table_ptr());
  w_old.CopyFrom(state);
  const LocalProcedureInput local{&input.spec, input.round, input.worker_id, &rows};
  auto ran = method.RunLocalProcedure(local, model);
  state.CopyFrom(w_old);  // back to the committed global state for the method's Apply
  if (!ran.ok()) return ran.status().WithContext(context);
  TaskletResult result;
  result.payload = std::move(ran->payload);
  result.train_loss = ran->train_loss;
  result.local_steps = input.spec.local_steps;
  result.num_samples = input.rows->size();
  Status noised = MaybeLocalPrivacy(input, method, w_old, &result);
  if (!noised.ok()) return noised.WithContext(context);
  return result;
}

}  // namespace

uint64_t TaskletDataSeed(uint64_t job_seed, uint32_t round, std::string_view worker_id) {
  const uint64_t worker_hash = Fnv1a64(worker_id.data(), worker_id.size());
  return SplitMix64(SplitMix64(job_seed ^ SplitMix64(round)) ^ worker_hash);
}

Result<TaskletResult> RunTasklet(const TaskletInput& input, const FederatedMethod& method, LlamaModel& model,
                                 LoraAdapters* adapters) {
  const JobSpec& spec = input.spec;
  const std::string context = WorkerContext(input);
  if (input.rows == nullptr || input.rows->empty())
    return Status::InvalidArgument(context + "no training rows for dataset '" + spec.dataset + "'");
  const bool lora = adapters != nullptr;
  if (lora != MethodOf(spec).trains_adapters)
    return Status::InvalidArgument(context + spec.mode + " job " + (lora ? "with" : "without") + " adapters");
  const std::vector<SequenceRow> rows = RoundRows(input);
  if (method.RunsLocalProcedure()) return RunMethodProcedure(input, method, rows, model);
  TrainLoopOptions loop = LoopOptions(input);
  OptimizerOptions opt;
  opt.type = spec.optimizer;
  opt.weight_decay = spec.weight_decay;
  opt.momentum = spec.momentum;

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
    adapters->SetTraining(spec.lora.dropout > 0);
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

  auto payload = method.EncodeUpdate(w_old, state, input.round);
  state.CopyFrom(w_old);  // back to the committed global state for the method's Apply
  if (!payload.ok()) return payload.status().WithContext(context);
  result.payload = std::move(*payload);
  if (spec.privacy.mechanism == DpMechanism::kLocal) {
    auto noised = LocalPrivacy(spec, method, input, result, w_old);
    if (!noised.ok()) return noised.status().WithContext(context);
    result.payload = std::move(*noised);
  }
  return result;
}

Result<std::vector<uint8_t>> LocalPrivacy(const JobSpec& spec, const FederatedMethod& method, const TaskletInput& input,
                                          const TaskletResult& result, const Arena& global) {
  // The payload as the aggregate of one client with weight 1: clipped against the method's reference
  // and noised by the same steps the coordinator runs, then encoded in the upload's own format.
  AggregationOptions options;
  options.clip_norm = spec.aggregation.clip_norm;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Aggregation> aggregation, Aggregation::Create(options));
  aggregation->SetNoise(NoiseStddev(spec.privacy, spec.aggregation.clip_norm), FreshNoiseKey());
  const std::vector<ClientPayload> own = {{input.worker_id, result.num_samples, result.payload}};
  TRIB_ASSIGN_OR_RETURN(MethodAggregate noised,
                        method.Aggregate(own, AggregationWeights::kEqual, *aggregation, global, input.round));
  return std::move(noised.bytes);
}

}  // namespace tributary
