// LoRA (FedIT): clients train only the adapters on a frozen base and upload the adapter arena; the
// aggregate is the weighted mean of the adapter arenas and replaces every replica's adapters.
#include "federation/dense_payload.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

class LoraMethod final : public FederatedMethod {
 public:
  explicit LoraMethod(int64_t count) : count_(count) {}

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& /*w_old*/, const Arena& w_new,
                                            uint32_t /*round*/) const override {
    TRIB_CHECK(w_new.size() == count_);
    return FloatsToBytes(w_new.data(), count_);
  }

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t /*round*/) const override {
    return ValidateDensePayload(payload, count_);
  }
  uint64_t MaxPayloadBytes() const override { return static_cast<uint64_t>(count_) * sizeof(float); }

  Result<std::vector<uint8_t>> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                         Aggregator& aggregator, uint32_t /*round*/) const override {
    return AggregateDense(clients, weights, aggregator, count_);
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    return BytesToFloats(aggregate, state->size(), state->data(), "round " + std::to_string(round) + ": aggregate");
  }

  std::string RoundSeedMode() const override { return "lora"; }

 private:
  int64_t count_;  // fp32 values of the adapter arena, padding included
};

Result<std::unique_ptr<FederatedMethod>> CreateLora(const JobSpec& /*spec*/,
                                                    std::shared_ptr<const TensorTable> state_table) {
  return std::unique_ptr<FederatedMethod>(new LoraMethod(state_table->total_elems()));
}

}  // namespace

extern const MethodInfo kLoraMethod;
const MethodInfo kLoraMethod = {"lora", "lora_delta", "lora", true, true, &CreateLora};

}  // namespace tributary
