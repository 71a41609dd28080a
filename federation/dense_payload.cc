#include "federation/dense_payload.h"

#include <cmath>
#include <cstring>
#include <string>

#include "federation/replica_state.h"

namespace tributary {
namespace {

// One client vector per dense payload, read from its bytes (no copy of the payloads).
class DenseClientVectors final : public ClientVectors {
 public:
  DenseClientVectors(const std::vector<ClientPayload>& clients, const float* reference, int64_t dim)
      : clients_(clients), reference_(reference), dim_(dim) {}
  size_t count() const override { return clients_.size(); }
  int64_t dim() const override { return dim_; }
  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    std::memcpy(out, clients_[client].payload.data() + begin * static_cast<int64_t>(sizeof(float)),
                static_cast<size_t>(n) * sizeof(float));
  }
  void ReadReference(int64_t begin, int64_t n, float* out) const override {
    if (reference_ == nullptr) return ClientVectors::ReadReference(begin, n, out);
    std::memcpy(out, reference_ + begin, static_cast<size_t>(n) * sizeof(float));
  }

 private:
  const std::vector<ClientPayload>& clients_;
  const float* reference_;  // null: zero
  int64_t dim_;
};

}  // namespace

Status ValidateDensePayload(std::span<const uint8_t> payload, int64_t count) {
  const size_t expected = static_cast<size_t>(count) * sizeof(float);
  if (payload.size() != expected)
    return Status::InvalidArgument("payload: " + std::to_string(payload.size()) + " bytes, expected " +
                                   std::to_string(expected) + " (" + std::to_string(count) + " fp32 values)");
  for (int64_t i = 0; i < count; ++i) {
    float value;
    std::memcpy(&value, payload.data() + i * static_cast<int64_t>(sizeof(float)), sizeof(float));
    if (!std::isfinite(value))
      return Status::InvalidArgument("payload: element " + std::to_string(i) + " is not finite");
  }
  return Status::OK();
}

Result<MethodAggregate> AggregateDense(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                       Aggregation& aggregation, const float* reference, int64_t count) {
  for (const ClientPayload& c : clients) {
    if (c.payload.size() != static_cast<size_t>(count) * sizeof(float))
      return Status::InvalidArgument("worker '" + c.worker_id + "': logged payload has " +
                                     std::to_string(c.payload.size()) + " bytes");
  }
  std::vector<uint64_t> samples;
  samples.reserve(clients.size());
  for (const ClientPayload& c : clients) samples.push_back(c.num_samples);
  TRIB_ASSIGN_OR_RETURN(std::vector<double> client_weights, ClientWeights(samples, weights));
  const DenseClientVectors vectors(clients, reference, count);
  std::vector<float> combined(static_cast<size_t>(count));
  MethodAggregate out;
  TRIB_ASSIGN_OR_RETURN(
      out.report, aggregation.Run(vectors, client_weights, [&combined](int64_t begin, const double* values, int64_t n) {
        for (int64_t j = 0; j < n; ++j) combined[static_cast<size_t>(begin + j)] = static_cast<float>(values[j]);
      }));
  out.bytes = FloatsToBytes(combined.data(), count);
  return out;
}

Status DenseMethod::ValidatePayload(std::span<const uint8_t> payload, uint32_t /*round*/) const {
  return ValidateDensePayload(payload, count_);
}

uint64_t DenseMethod::MaxPayloadBytes() const {
  return static_cast<uint64_t>(count_) * sizeof(float);
}

Result<MethodAggregate> DenseMethod::Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                               Aggregation& aggregation, const Arena& global,
                                               uint32_t /*round*/) const {
  TRIB_CHECK(global.size() == count_ && global.is_host());
  return AggregateDense(clients, weights, aggregation, payload_is_state_ ? global.data() : nullptr, count_);
}

Status DenseMethod::SecAggVector(std::span<const uint8_t> payload, const Arena& reference, uint32_t /*round*/,
                                 std::span<float> out) const {
  if (payload.size() != static_cast<size_t>(count_) * sizeof(float) || out.size() != static_cast<size_t>(count_))
    return Status::InvalidArgument("secure aggregation: payload of " + std::to_string(payload.size()) +
                                   " bytes for a vector of " + std::to_string(out.size()) + " values, expected " +
                                   std::to_string(count_));
  std::memcpy(out.data(), payload.data(), payload.size());
  if (!payload_is_state_) return Status::OK();
  TRIB_CHECK(reference.size() == count_ && reference.is_host());
  // A state payload is sent as its change from the round's state, so the quantization range bounds an update.
  for (int64_t i = 0; i < count_; ++i)
    out[static_cast<size_t>(i)] =
        static_cast<float>(static_cast<double>(out[static_cast<size_t>(i)]) - reference.data()[i]);
  return Status::OK();
}

Result<std::vector<uint8_t>> DenseMethod::SecAggAggregate(std::span<const double> mean, const Arena& global,
                                                          uint32_t /*round*/) const {
  if (mean.size() != static_cast<size_t>(count_))
    return Status::InvalidArgument("secure aggregation: mean of " + std::to_string(mean.size()) + " values, expected " +
                                   std::to_string(count_));
  std::vector<float> combined(static_cast<size_t>(count_));
  for (int64_t i = 0; i < count_; ++i) {
    const double ref = payload_is_state_ ? static_cast<double>(global.data()[i]) : 0.0;
    combined[static_cast<size_t>(i)] = static_cast<float>(ref + mean[static_cast<size_t>(i)]);
  }
  return FloatsToBytes(combined.data(), count_);
}

}  // namespace tributary
