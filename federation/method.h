// A federated method: what a worker uploads after its local steps, how the coordinator checks and
// combines the uploads, and how every replica (the coordinator's and each worker's) applies a
// committed round. Both daemons meet the methods only through this interface; the job spec's
// federation.mode names one of the registered methods.
//
// The methods (one file each, registered in federation/methods.cc):
//   ferret : the Ferret coefficient payload of peft/payload.h (8 + 4 L + sum_l K_l b bytes); the
//            aggregate is the same format, applied as w -= slr * sum_{l,k} gamma_bar v (peft/ferret.h)
//   fedavg : the dense fp32 delta w_old - w_new of the parameter arena (padding included, arena order);
//            the aggregate is the weighted mean delta, applied as w -= slr * mean
//   lora   : the LoRA adapter arena (fp32, arena order); the aggregate replaces the adapters
//   cluster: an island's pseudo-gradient in the job's outer codec (federation/outer_codec.h); the aggregate
//            is the islands' mean in the same codec, applied by the outer optimizer (docs/cluster.md)
//   fedkseed: zeroth-order local steps along K shared seeds (its own local procedure, not first-order
//            steps); the payload is one fp32 scalar per seed (8 + 4 K bytes), the aggregate their weighted
//            mean, applied as w += slr * sum_k c_bar_k z_k (federation/fedkseed_method.h)
//
// The "trainable state" a round changes is one arena: the model parameters, or for methods that
// train adapters the LoRA adapter parameters on a frozen base (federation/replica_state.h).
//
// Adding a method: one file defining its MethodInfo, and its registration in federation/methods.cc (the
// MethodInfo's declaration and its entry in the list). A method that trains differently from the
// first-order steps overrides RunsLocalProcedure / RunLocalProcedure. Nothing else names the methods: the job spec's
// choices, the options sections it admits and the modes a worker reports all come from the registry.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/tensor_table.h"
#include "engine/arena.h"
#include "federation/aggregator.h"

namespace tributary {

struct JobSpec;
struct SequenceRow;
class LlamaModel;

// What a method with its own local procedure (FederatedMethod::RunsLocalProcedure) is given: the
// round's spec (train.local_steps and batch_size as this round runs them), the round, the worker and its
// rows in the round's data order (the order first-order steps would read them in).
struct LocalProcedureInput {
  const JobSpec* spec = nullptr;
  uint32_t round = 0;
  std::string_view worker_id;
  const std::vector<SequenceRow>* rows = nullptr;
};

struct LocalProcedureResult {
  std::vector<uint8_t> payload;  // the upload
  double train_loss = 0;         // mean loss over the local steps
};

// A round's aggregate and what the aggregation learned about its clients.
struct MethodAggregate {
  std::vector<uint8_t> bytes;  // the method's aggregate payload
  AggregationReport report;    // per client, in the order given
};

class FederatedMethod {
 public:
  virtual ~FederatedMethod() = default;

  // Worker: the upload of `round` from the trainable state before (w_old) and after (w_new) the
  // local steps. InvalidArgument when the update is not finite (nothing must be uploaded then).
  virtual Result<std::vector<uint8_t>> EncodeUpdate(const Arena& w_old, const Arena& w_new, uint32_t round) const = 0;

  // Worker, methods that train by their own procedure instead of the tasklet's first-order steps
  // (fedkseed's zeroth-order steps): RunTasklet calls RunLocalProcedure in place of the optimizer steps and
  // EncodeUpdate. It may change the model's parameters freely (the tasklet restores them afterwards) and
  // must give the same bytes for the same replica and input.
  virtual bool RunsLocalProcedure() const { return false; }
  virtual Result<LocalProcedureResult> RunLocalProcedure(const LocalProcedureInput& /*input*/,
                                                         LlamaModel& /*model*/) const {
    return Status::Unimplemented("this federated method has no local procedure of its own");
  }

  // Coordinator: full validation of one upload's payload for `round` (InvalidArgument naming what is
  // wrong: size, shape, round, a non-finite value).
  virtual Status ValidatePayload(std::span<const uint8_t> payload, uint32_t round) const = 0;
  // The largest payload a valid upload can have; for dense methods every payload has exactly this size.
  virtual uint64_t MaxPayloadBytes() const = 0;

  // Coordinator: the aggregate of `round` from validated payloads (ascending worker id) through the
  // aggregator seam (federation/aggregator.h: weights, clip, prepare, combine, then this method's
  // encoding, then scores). `global` is the trainable state the round started from: the reference
  // point of methods whose payloads are states rather than deltas.
  virtual Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                            Aggregation& aggregation, const Arena& global, uint32_t round) const = 0;

  // Every replica: applies the committed aggregate of `round` to the trainable state. InvalidArgument
  // when the aggregate does not fit. Bit-identical on every replica.
  virtual Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const = 0;

  // Secure aggregation (federation/secagg_job.h): a client's payload as SecAggDim() fp32 values whose
  // weighted mean the coordinator turns back into this method's aggregate without seeing any payload.
  // The vector is a delta (zero is "no change"): ferret's coefficients zero-padded to K per block,
  // fedavg's delta, lora's adapters minus `reference` (the trainable state the round started from).
  virtual int64_t SecAggDim() const = 0;
  // Worker: InvalidArgument when the payload does not parse or out.size() != SecAggDim().
  virtual Status SecAggVector(std::span<const uint8_t> payload, const Arena& reference, uint32_t round,
                              std::span<float> out) const = 0;
  // Coordinator: the aggregate of `round` whose client vectors' weighted mean is `mean` (SecAggDim()
  // values), rounded once to the wire dtype; `global` is the state the round started from.
  virtual Result<std::vector<uint8_t>> SecAggAggregate(std::span<const double> mean, const Arena& global,
                                                       uint32_t round) const = 0;

  // What a committed round records as its seed mode (ferret: "per_round" / "fixed_pool"; dense
  // methods: their name), so a rebuild knows which bases a round used.
  virtual std::string RoundSeedMode() const = 0;
  // Coefficients per block announced in RoundStart (ferret: K; 0 for dense methods).
  virtual uint32_t CoefficientsPerBlock() const { return 0; }
  // Cluster mode with cluster.codec auto: the codec `round`'s uploads are encoded in (the plan's, sent in
  // RoundStart); EncodeUpdate, ValidatePayload and Aggregate of that round use and require it. Other methods
  // and fixed codecs: InvalidArgument unless it is the job's own codec.
  virtual Status SetRoundCodec(uint32_t /*round*/, const std::string& codec) {
    return Status::InvalidArgument("codec '" + codec + "': this job does not choose its codec per round");
  }
};

struct MethodInfo {
  const char* name;             // federation.mode
  const char* payload_kind;     // UploadUpdate.payload_kind
  const char* options_section;  // job spec section holding its options ("" when it has none)
  bool trains_adapters;         // the trainable state is the LoRA adapter arena (else the model's parameters)
  bool dense_payload;           // the payload grows with the trainable state (bulk transfer, memory limits)
  // Builds the method for a job whose trainable state has `state_table` (validated options).
  Result<std::unique_ptr<FederatedMethod>> (*create)(const JobSpec& spec,
                                                     std::shared_ptr<const TensorTable> state_table);
  // Whether the method's Apply keeps state across rounds for this job (cluster's outer momentum): its
  // replicas must apply every round in order from round 0, so no snapshot after round 0 is written or
  // used. Null: never.
  bool (*apply_keeps_state)(const JobSpec& spec) = nullptr;
};

// Every registered method, in registration order.
const std::vector<const MethodInfo*>& RegisteredMethods();
// nullptr when no method has this name.
const MethodInfo* FindMethod(std::string_view name);
// The method of spec.mode for a trainable state with `state_table`; InvalidArgument naming
// federation.mode for an unknown method.
Result<std::unique_ptr<FederatedMethod>> CreateMethod(const JobSpec& spec,
                                                      std::shared_ptr<const TensorTable> state_table);
// The info of spec.mode (checked: a parsed spec always names a registered method).
const MethodInfo& MethodOf(const JobSpec& spec);
// MethodOf(spec).apply_keeps_state(spec), false without one.
bool ApplyKeepsState(const JobSpec& spec);

}  // namespace tributary
