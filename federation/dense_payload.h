// What the dense methods (fedavg, lora) share: a payload is the trainable state's size in fp32
// (padding included, arena order), validated element by element, and aggregated as one client vector
// per upload read straight from the payload bytes (the aggregation's combination rounded once to fp32).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "federation/aggregator.h"
#include "federation/method.h"

namespace tributary {

// InvalidArgument "payload: ..." when the size is not count fp32 values or an element is not finite.
Status ValidateDensePayload(std::span<const uint8_t> payload, int64_t count);

// The aggregate of dense payloads of `count` values each: the aggregation's fp64 combination rounded
// once to fp32, as little-endian bytes. `reference` (count values, or null for zero) is the point the
// payloads are updates of: clipping and scores are relative to it.
Result<MethodAggregate> AggregateDense(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                       Aggregation& aggregation, const float* reference, int64_t count);

// The validation and aggregation of a dense method; a subclass says what it uploads and how the
// aggregate changes a replica.
class DenseMethod : public FederatedMethod {
 public:
  // `count`: fp32 values of the trainable state, padding included. `payload_is_state`: the payload is the
  // trained state itself (its reference is the round's global state), not a delta.
  DenseMethod(int64_t count, bool payload_is_state) : count_(count), payload_is_state_(payload_is_state) {}

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t round) const override;
  uint64_t MaxPayloadBytes() const override;
  Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                    Aggregation& aggregation, const Arena& global, uint32_t round) const override;
  int64_t SecAggDim() const override { return count_; }
  Status SecAggVector(std::span<const uint8_t> payload, const Arena& reference, uint32_t round,
                      std::span<float> out) const override;
  Result<std::vector<uint8_t>> SecAggAggregate(std::span<const double> mean, const Arena& global,
                                               uint32_t round) const override;

 protected:
  int64_t count() const { return count_; }

 private:
  int64_t count_;
  bool payload_is_state_;
};

}  // namespace tributary
