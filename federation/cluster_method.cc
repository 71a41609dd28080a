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
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "federation/dense_payload.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/outer_codec.h"
#include "federation/replica_state.h"

namespace tributary {
namespace {

class ClusterMethod final : public FederatedMethod {
 public:
  // `codecs`: the job's codec, or with cluster.codec auto the candidates (a round's is set per round and
  // an aggregate's is known by its size, so replicas and rebuilds apply any round without being told).
  ClusterMethod(const ClusterOptions& options, std::vector<OuterCodec> codecs, bool chosen_per_round,
                std::shared_ptr<const TensorTable> table)
      : nesterov_(options.outer_optimizer == "nesterov"),
        lr_(options.outer_lr),
        momentum_factor_(options.outer_momentum),
        codecs_(std::move(codecs)),
        per_round_(chosen_per_round),
        table_(std::move(table)) {
    for (OuterCodec codec : codecs_) {
      uint64_t bytes = 0;
      for (const TensorEntry& entry : table_->entries()) bytes += OuterCodecBytes(codec, entry.numel);
      bytes_.push_back(bytes);
    }
  }

  // Codec auto needs every candidate's payload to have its own size.
  Status CheckSizesDiffer() const {
    for (size_t i = 0; i < codecs_.size(); ++i)
      for (size_t j = i + 1; j < codecs_.size(); ++j)
        if (bytes_[i] == bytes_[j])
          return Status::InvalidArgument(std::string("cluster.codec auto: the ") + OuterCodecName(codecs_[i]) +
                                         " and " + OuterCodecName(codecs_[j]) + " payloads of this model are both " +
                                         std::to_string(bytes_[i]) + " bytes; set one codec");
    return Status::OK();
  }

  Status SetRoundCodec(uint32_t round, const std::string& name) override {
    TRIB_ASSIGN_OR_RETURN(OuterCodec codec, ParseOuterCodec(name));
    if (std::find(codecs_.begin(), codecs_.end(), codec) == codecs_.end())
      return Status::InvalidArgument("codec '" + name + "' is not one this job may use");
    if (!per_round_) return Status::OK();  // the job's own codec
    round_codecs_.erase(round_codecs_.begin(), round_codecs_.lower_bound(round > 8 ? round - 8 : 0));
    round_codecs_[round] = codec;
    return Status::OK();
  }

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& w_old, const Arena& w_new, uint32_t round) const override {
    TRIB_CHECK(w_old.size() == table_->total_elems() && w_new.size() == table_->total_elems());
    TRIB_ASSIGN_OR_RETURN(OuterCodec codec, RoundCodec(round));
    std::vector<float> delta(static_cast<size_t>(table_->total_elems()), 0.0f);
    for (int64_t i = 0; i < table_->total_elems(); ++i) delta[i] = w_old.data()[i] - w_new.data()[i];
    return Encode(codec, delta);
  }

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t round) const override {
    TRIB_ASSIGN_OR_RETURN(OuterCodec codec, CheckRoundCodec(payload.size(), round, "payload"));
    std::vector<float> scratch;
    return Decode(codec, payload, "payload", &scratch);
  }

  uint64_t MaxPayloadBytes() const override { return *std::max_element(bytes_.begin(), bytes_.end()); }

  Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                    Aggregation& aggregation, const Arena& /*global*/, uint32_t round) const override {
    // The islands' Δ as fp32 vectors over the whole arena (padding zero), combined like dense deltas.
    std::vector<std::vector<uint8_t>> decoded(clients.size());
    std::vector<ClientPayload> dense;
    dense.reserve(clients.size());
    OuterCodec codec = codecs_.front();
    for (size_t i = 0; i < clients.size(); ++i) {
      const std::string what = "island '" + clients[i].worker_id + "'";
      TRIB_ASSIGN_OR_RETURN(codec, CheckRoundCodec(clients[i].payload.size(), round, what));
      std::vector<float> delta;
      TRIB_RETURN_IF_ERROR(Decode(codec, clients[i].payload, what, &delta));
      decoded[i] = FloatsToBytes(delta.data(), static_cast<int64_t>(delta.size()));
      dense.push_back({clients[i].worker_id, clients[i].num_samples, decoded[i]});
    }
    TRIB_ASSIGN_OR_RETURN(MethodAggregate mean,
                          AggregateDense(dense, weights, aggregation, nullptr, table_->total_elems()));
    std::vector<float> values(static_cast<size_t>(table_->total_elems()));
    std::memcpy(values.data(), mean.bytes.data(), values.size() * sizeof(float));
    TRIB_ASSIGN_OR_RETURN(mean.bytes, Encode(codec, values));  // the uploads' codec, so it is as small
    return mean;
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    const std::string what = "round " + std::to_string(round) + ": aggregate";
    TRIB_ASSIGN_OR_RETURN(OuterCodec codec, CodecOfSize(aggregate.size(), what));
    std::vector<float> mean;
    Status decoded = Decode(codec, aggregate, what, &mean);
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

  // Codec auto: "cluster_auto"; the round driver records each round's own codec instead.
  std::string RoundSeedMode() const override {
    return std::string("cluster_") + (per_round_ ? "auto" : OuterCodecName(codecs_.front()));
  }

 private:
  // The codec `round` is encoded in: the job's, or the one set for the round (codec auto).
  Result<OuterCodec> RoundCodec(uint32_t round) const {
    if (!per_round_) return codecs_.front();
    auto it = round_codecs_.find(round);
    if (it == round_codecs_.end())
      return Status::FailedPrecondition("round " + std::to_string(round) +
                                        ": no codec chosen for it (cluster.codec auto: RoundStart names it)");
    return it->second;
  }

  // The codec whose payloads have `size` bytes; `what` names the bytes in errors.
  Result<OuterCodec> CodecOfSize(size_t size, const std::string& what) const {
    std::string sizes;
    for (size_t i = 0; i < codecs_.size(); ++i) {
      if (bytes_[i] == size) return codecs_[i];
      sizes += (sizes.empty() ? "" : ", ") + std::to_string(bytes_[i]) + " (" + OuterCodecName(codecs_[i]) + " codec)";
    }
    return Status::InvalidArgument(what + ": " + std::to_string(size) + " bytes, expected " + sizes);
  }

  // CodecOfSize, and with codec auto the round's codec when one is set (an upload in another is refused).
  Result<OuterCodec> CheckRoundCodec(size_t size, uint32_t round, const std::string& what) const {
    TRIB_ASSIGN_OR_RETURN(OuterCodec codec, CodecOfSize(size, what));
    auto chosen = per_round_ ? round_codecs_.find(round) : round_codecs_.end();
    if (chosen != round_codecs_.end() && chosen->second != codec)
      return Status::InvalidArgument(what + " is in codec " + OuterCodecName(codec) + ", but round " +
                                     std::to_string(round) + "'s codec is " + OuterCodecName(chosen->second));
    return codec;
  }

  Result<std::vector<uint8_t>> Encode(OuterCodec codec, const std::vector<float>& values) const {
    std::vector<uint8_t> out;
    for (const TensorEntry& entry : table_->entries()) {
      Status encoded = EncodeOuter(codec, {values.data() + entry.offset, static_cast<size_t>(entry.numel)}, &out);
      if (!encoded.ok()) return encoded.WithContext("pseudo-gradient of '" + entry.name + "'");
    }
    return out;
  }

  // Decodes a payload or aggregate of `codec` (its size checked) into the whole arena's values (padding zero).
  Status Decode(OuterCodec codec, std::span<const uint8_t> bytes, const std::string& what,
                std::vector<float>* values) const {
    values->assign(static_cast<size_t>(table_->total_elems()), 0.0f);
    size_t at = 0;
    for (const TensorEntry& entry : table_->entries()) {
      const uint64_t n = OuterCodecBytes(codec, entry.numel);
      Status decoded =
          DecodeOuter(codec, bytes.subspan(at, n), {values->data() + entry.offset, static_cast<size_t>(entry.numel)});
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
  std::vector<OuterCodec> codecs_;  // the job's, or codec auto's candidates
  bool per_round_;
  std::shared_ptr<const TensorTable> table_;
  std::vector<uint64_t> bytes_;                  // a whole payload's size per codec
  std::map<uint32_t, OuterCodec> round_codecs_;  // codec auto: the recent rounds' codecs
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
  if (spec.cluster.codec == "auto") {
    auto method = std::make_unique<ClusterMethod>(spec.cluster, AutoOuterCodecs(), true, std::move(state_table));
    TRIB_RETURN_IF_ERROR(method->CheckSizesDiffer());
    return std::unique_ptr<FederatedMethod>(std::move(method));
  }
  TRIB_ASSIGN_OR_RETURN(OuterCodec codec, ParseOuterCodec(spec.cluster.codec));
  return std::unique_ptr<FederatedMethod>(
      new ClusterMethod(spec.cluster, std::vector<OuterCodec>{codec}, false, std::move(state_table)));
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
