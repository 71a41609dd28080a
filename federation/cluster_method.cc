// Cluster mode's outer sync (docs/cluster.md): an island uploads its pseudo-gradient
// Δ = θ_outer − θ_island, encoded tensor by tensor with the job's outer codec (federation/outer_codec.h);
// the coordinator decodes the islands' Δ, averages them through the aggregator seam (token-weighted by
// default), and commits the mean re-encoded with the same codec, so the broadcast is as small as an
// upload. Every replica decodes the committed mean ḡ and applies the outer optimizer:
//   sgd:      θ -= lr ḡ                                  (lr 1: plain averaging of the islands)
//   nesterov: m = μ m + ḡ;  θ -= lr (ḡ + μ m)             (torch.optim.SGD(nesterov=True), DiLoCo's outer step)
// With the ferret codec the method is Ferret's itself at server lr = outer lr (federation/ferret_method.h).
//
// The Nesterov momentum is replica state that outlives a round: every replica keeps it in its method
// object and advances it in Apply, so a replica must apply the rounds in order from round 0
// (MethodInfo::apply_keeps_state: no snapshot after round 0 is written or used). Applying a round again
// (a commit that failed after Apply) restarts from the momentum before it. Everything is fp32 storage
// with fp64 arithmetic per element and one rounding, so every replica lands on the same bits.
#include <cmath>
#include <cstring>

#include "federation/dense_payload.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/outer_codec.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

class ClusterMethod final : public FederatedMethod {
 public:
  ClusterMethod(const ClusterOptions& options, OuterCodec codec, std::shared_ptr<const TensorTable> table)
      : nesterov_(options.outer_optimizer == "nesterov"),
        lr_(options.outer_lr),
        momentum_factor_(options.outer_momentum),
        codec_(codec),
        table_(std::move(table)) {
    for (const TensorEntry& entry : table_->entries()) payload_bytes_ += OuterCodecBytes(codec_, entry.numel);
  }

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& w_old, const Arena& w_new, uint32_t /*round*/) const override {
    TRIB_CHECK(w_old.size() == table_->total_elems() && w_new.size() == table_->total_elems());
    std::vector<float> delta(static_cast<size_t>(table_->total_elems()), 0.0f);
    for (int64_t i = 0; i < table_->total_elems(); ++i) delta[i] = w_old.data()[i] - w_new.data()[i];
    return Encode(delta);
  }

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t /*round*/) const override {
    std::vector<float> scratch;
    return Decode(payload, "payload", &scratch);
  }

  uint64_t MaxPayloadBytes() const override { return payload_bytes_; }

  Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                    Aggregation& aggregation, const Arena& /*global*/,
                                    uint32_t /*round*/) const override {
    // The islands' Δ as fp32 vectors over the whole arena (padding zero), combined like dense deltas.
    std::vector<std::vector<uint8_t>> decoded(clients.size());
    std::vector<ClientPayload> dense;
    dense.reserve(clients.size());
    for (size_t i = 0; i < clients.size(); ++i) {
      std::vector<float> delta;
      TRIB_RETURN_IF_ERROR(Decode(clients[i].payload, "island '" + clients[i].worker_id + "'", &delta));
      decoded[i] = FloatsToBytes(delta.data(), static_cast<int64_t>(delta.size()));
      dense.push_back({clients[i].worker_id, clients[i].num_samples, decoded[i]});
    }
    TRIB_ASSIGN_OR_RETURN(MethodAggregate mean,
                          AggregateDense(dense, weights, aggregation, nullptr, table_->total_elems()));
    std::vector<float> values(static_cast<size_t>(table_->total_elems()));
    std::memcpy(values.data(), mean.bytes.data(), values.size() * sizeof(float));
    TRIB_ASSIGN_OR_RETURN(mean.bytes, Encode(values));
    return mean;
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    std::vector<float> mean;
    Status decoded = Decode(aggregate, "round " + std::to_string(round) + ": aggregate", &mean);
    if (!decoded.ok()) return decoded;
    TRIB_CHECK(state->size() == table_->total_elems());
    if (!nesterov_) {
      float* w = state->data();
      for (int64_t i = 0; i < state->size(); ++i)
        w[i] = static_cast<float>(static_cast<double>(w[i]) - lr_ * static_cast<double>(mean[i]));
      return Status::OK();
    }
    TRIB_RETURN_IF_ERROR(MomentumBefore(round));
    ApplyNesterov(mean, state);
    momentum_round_ = round;
    return Status::OK();
  }

  int64_t SecAggDim() const override { return table_->total_elems(); }
  Status SecAggVector(std::span<const uint8_t>, const Arena&, uint32_t, std::span<float>) const override {
    return Status::FailedPrecondition("cluster mode does not run under secure aggregation");
  }
  Result<std::vector<uint8_t>> SecAggAggregate(std::span<const double>, const Arena&, uint32_t) const override {
    return Status::FailedPrecondition("cluster mode does not run under secure aggregation");
  }

  std::string RoundSeedMode() const override { return std::string("cluster_") + OuterCodecName(codec_); }

 private:
  Result<std::vector<uint8_t>> Encode(const std::vector<float>& values) const {
    std::vector<uint8_t> out;
    out.reserve(payload_bytes_);
    for (const TensorEntry& entry : table_->entries()) {
      Status encoded = EncodeOuter(codec_, {values.data() + entry.offset, static_cast<size_t>(entry.numel)}, &out);
      if (!encoded.ok()) return encoded.WithContext("pseudo-gradient of '" + entry.name + "'");
    }
    return out;
  }

  // Decodes a payload or aggregate into the whole arena's values (padding zero); `what` names it in errors.
  Status Decode(std::span<const uint8_t> bytes, const std::string& what, std::vector<float>* values) const {
    if (bytes.size() != payload_bytes_)
      return Status::InvalidArgument(what + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                                     std::to_string(payload_bytes_) + " (" + OuterCodecName(codec_) + " codec)");
    values->assign(static_cast<size_t>(table_->total_elems()), 0.0f);
    size_t at = 0;
    for (const TensorEntry& entry : table_->entries()) {
      const uint64_t n = OuterCodecBytes(codec_, entry.numel);
      Status decoded =
          DecodeOuter(codec_, bytes.subspan(at, n), {values->data() + entry.offset, static_cast<size_t>(entry.numel)});
      if (!decoded.ok()) return Status::InvalidArgument(what + ": tensor '" + entry.name + "': " + decoded.message());
      at += n;
    }
    return Status::OK();
  }

  // Sets momentum_ to the state after round - 1: kept, or restored when `round` is applied again.
  Status MomentumBefore(uint32_t round) const {
    if (momentum_.empty()) momentum_.assign(static_cast<size_t>(table_->total_elems()), 0.0f);
    if (round == momentum_round_ + 1) {
      momentum_before_ = momentum_;
      return Status::OK();
    }
    if (round == momentum_round_ && round > 0) {
      momentum_ = momentum_before_;
      return Status::OK();
    }
    return Status::FailedPrecondition("round " + std::to_string(round) + ": the outer momentum is at round " +
                                      std::to_string(momentum_round_) +
                                      " (cluster rounds are applied in order from round 0)");
  }

  void ApplyNesterov(const std::vector<float>& mean, Arena* state) const {
    float* w = state->data();
    const double mu = momentum_factor_;
    for (int64_t i = 0; i < state->size(); ++i) {
      const double g = mean[i];
      const float m = static_cast<float>(mu * static_cast<double>(momentum_[i]) + g);
      momentum_[i] = m;
      w[i] = static_cast<float>(static_cast<double>(w[i]) - lr_ * (g + mu * static_cast<double>(m)));
    }
  }

  bool nesterov_;
  double lr_;
  double momentum_factor_;
  OuterCodec codec_;
  std::shared_ptr<const TensorTable> table_;
  uint64_t payload_bytes_ = 0;
  // The outer optimizer's state (see the file comment): after momentum_round_, and before it.
  mutable std::vector<float> momentum_;
  mutable std::vector<float> momentum_before_;
  mutable uint32_t momentum_round_ = 0;
};

Result<std::unique_ptr<FederatedMethod>> CreateCluster(const JobSpec& spec,
                                                       std::shared_ptr<const TensorTable> state_table) {
  if (spec.cluster.codec == "ferret") {
    // Ferret's projection of Δ at server lr = outer lr (validated: outer optimizer sgd).
    JobSpec ferret = spec;
    ferret.mode = "ferret";
    ferret.server_lr = spec.cluster.outer_lr;
    return CreateMethod(ferret, std::move(state_table));
  }
  TRIB_ASSIGN_OR_RETURN(OuterCodec codec, ParseOuterCodec(spec.cluster.codec));
  return std::unique_ptr<FederatedMethod>(new ClusterMethod(spec.cluster, codec, std::move(state_table)));
}

// The outer momentum is the only state an Apply carries into the next round.
bool NesterovOuterOptimizer(const JobSpec& spec) {
  return spec.cluster.codec != "ferret" && spec.cluster.outer_optimizer == "nesterov";
}

}  // namespace

extern const MethodInfo kClusterMethod;
const MethodInfo kClusterMethod = {"cluster",      "pseudo_gradient",      "cluster", false, false,
                                   &CreateCluster, &NesterovOuterOptimizer};

}  // namespace tributary
