// FedAvg: clients upload the dense delta w_old - w_new of the parameter arena; the aggregate is the
// weighted mean delta, applied as w -= slr * mean (fp64 product, one rounding per element).
#include <cmath>
#include <cstring>

#include "federation/dense_payload.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

class FedAvgMethod final : public DenseMethod {
 public:
  FedAvgMethod(double server_lr, int64_t count)
      : DenseMethod(count, /*payload_is_state=*/false), server_lr_(server_lr) {}

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& w_old, const Arena& w_new, uint32_t /*round*/) const override {
    TRIB_CHECK(w_old.size() == count() && w_new.size() == count());
    std::vector<float> delta(static_cast<size_t>(count()));
    for (int64_t i = 0; i < count(); ++i) {
      delta[static_cast<size_t>(i)] = w_old.data()[i] - w_new.data()[i];
      if (!std::isfinite(delta[static_cast<size_t>(i)])) return Status::InvalidArgument("update is not finite");
    }
    return FloatsToBytes(delta.data(), count());
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    const size_t expected = static_cast<size_t>(state->size()) * sizeof(float);
    if (aggregate.size() != expected)
      return Status::InvalidArgument("round " + std::to_string(round) + ": aggregate: " +
                                     std::to_string(aggregate.size()) + " bytes, expected " + std::to_string(expected));
    float* w = state->data();
    for (int64_t i = 0; i < state->size(); ++i) {
      float mean;
      std::memcpy(&mean, aggregate.data() + i * static_cast<int64_t>(sizeof(float)), sizeof(float));
      w[i] = static_cast<float>(static_cast<double>(w[i]) - server_lr_ * static_cast<double>(mean));
    }
    return Status::OK();
  }

  std::string RoundSeedMode() const override { return "fedavg"; }

 private:
  double server_lr_;
};

Result<std::unique_ptr<FederatedMethod>> CreateFedAvg(const JobSpec& spec,
                                                      std::shared_ptr<const TensorTable> state_table) {
  return std::unique_ptr<FederatedMethod>(new FedAvgMethod(spec.server_lr, state_table->total_elems()));
}

}  // namespace

extern const MethodInfo kFedAvgMethod;
const MethodInfo kFedAvgMethod = {"fedavg", "dense_delta", "", false, true, &CreateFedAvg};

}  // namespace tributary
