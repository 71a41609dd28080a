// LoRA (FedIT): clients train only the adapters on a frozen base and upload the adapter arena; the
// aggregate is the weighted mean of the adapter arenas and replaces every replica's adapters.
#include "federation/dense_payload.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

class LoraMethod final : public DenseMethod {
 public:
  explicit LoraMethod(int64_t count) : DenseMethod(count, /*payload_is_state=*/true) {}

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& /*w_old*/, const Arena& w_new,
                                            uint32_t /*round*/) const override {
    TRIB_CHECK(w_new.size() == count());
    return FloatsToBytes(w_new.data(), count());
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    return BytesToFloats(aggregate, state->size(), state->data(), "round " + std::to_string(round) + ": aggregate");
  }

  std::string RoundSeedMode() const override { return "lora"; }
};

Result<std::unique_ptr<FederatedMethod>> CreateLora(const JobSpec& /*spec*/,
                                                    std::shared_ptr<const TensorTable> state_table) {
  return std::unique_ptr<FederatedMethod>(new LoraMethod(state_table->total_elems()));
}

}  // namespace

extern const MethodInfo kLoraMethod;
const MethodInfo kLoraMethod = {"lora", "lora_delta", "lora", true, true, &CreateLora};

}  // namespace tributary
