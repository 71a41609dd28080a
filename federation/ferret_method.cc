// Ferret: clients upload K_l projection coefficients per block (peft/ferret.h); the coordinator
// combines them in coefficient space (federation/ferret_method.h) and every replica regenerates the
// bases and applies the aggregate.
#include "federation/ferret_method.h"

#include <algorithm>
#include <string>

#include "federation/job_spec.h"
#include "federation/method.h"
#include "peft/ferret.h"

namespace tributary {
namespace {

// Parsed client payloads (all with the same block count) as zero-padded vectors over the supports.
class CoefficientVectors final : public ClientVectors {
 public:
  CoefficientVectors(std::vector<const Payload*> payloads, size_t blocks) : payloads_(std::move(payloads)) {
    support_.assign(blocks, 0);
    for (const Payload* p : payloads_)
      for (size_t l = 0; l < blocks; ++l) support_[l] = std::max(support_[l], static_cast<int64_t>(p->gamma[l].size()));
    offset_.assign(blocks + 1, 0);
    for (size_t l = 0; l < blocks; ++l) offset_[l + 1] = offset_[l] + support_[l];
  }
  size_t count() const override { return payloads_.size(); }
  int64_t dim() const override { return offset_.back(); }
  const std::vector<int64_t>& support() const { return support_; }
  const std::vector<int64_t>& offset() const { return offset_; }

  void AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const override {
    const int64_t end = begin + n;
    for (size_t l = BlockAt(begin); l + 1 < offset_.size() && offset_[l] < end; ++l) {
      const std::vector<float>& g = payloads_[client]->gamma[l];
      // Only the client's own prefix of the block: the padding is zeros.
      const int64_t lo = std::max(begin, offset_[l]);
      const int64_t hi = std::min(end, offset_[l] + static_cast<int64_t>(g.size()));
      for (int64_t j = lo; j < hi; ++j)
        sum[j - begin] += weight * static_cast<double>(g[static_cast<size_t>(j - offset_[l])]);
    }
  }

  // The padding of a client's block is zeros: its share of the distance is the center's squares there,
  // read from prefix sums, so a client costs its own coefficients plus one term per block.
  void AddSquaredDistance(size_t client, int64_t begin, int64_t n, const double* center,
                          double* squared) const override {
    const int64_t end = begin + n;
    if (center != squares_of_ || begin != squares_begin_ || n != squares_n_) {
      prefix_squares_.assign(static_cast<size_t>(n) + 1, 0.0);
      for (int64_t j = 0; j < n; ++j)
        prefix_squares_[static_cast<size_t>(j) + 1] = prefix_squares_[static_cast<size_t>(j)] + center[j] * center[j];
      squares_of_ = center, squares_begin_ = begin, squares_n_ = n;
    }
    double acc = 0.0;
    for (size_t l = BlockAt(begin); l + 1 < offset_.size() && offset_[l] < end; ++l) {
      const std::vector<float>& g = payloads_[client]->gamma[l];
      const int64_t lo = std::max(begin, offset_[l]);
      const int64_t own = std::min(end, std::max(lo, offset_[l] + static_cast<int64_t>(g.size())));
      for (int64_t j = lo; j < own; ++j) {
        const double d = static_cast<double>(g[static_cast<size_t>(j - offset_[l])]) - center[j - begin];
        acc += d * d;
      }
      const int64_t hi = std::min(end, offset_[l + 1]);
      acc += prefix_squares_[static_cast<size_t>(hi - begin)] - prefix_squares_[static_cast<size_t>(own - begin)];
    }
    *squared += acc;
  }

  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    const int64_t end = begin + n;
    size_t l = BlockAt(begin);
    for (int64_t j = begin; j < end; ++l) {
      const std::vector<float>& g = payloads_[client]->gamma[l];
      const int64_t block_end = std::min(end, offset_[l + 1]);
      for (; j < block_end; ++j) {
        const int64_t k = j - offset_[l];
        out[j - begin] = k < static_cast<int64_t>(g.size()) ? g[static_cast<size_t>(k)] : 0.0f;
      }
    }
  }

 private:
  // The block holding coordinate `j`: the last block whose offset is <= j.
  size_t BlockAt(int64_t j) const {
    return static_cast<size_t>(std::upper_bound(offset_.begin(), offset_.end(), j) - offset_.begin()) - 1;
  }

  std::vector<const Payload*> payloads_;
  // AddSquaredDistance's prefix sums of center^2 for the last center it saw.
  mutable std::vector<double> prefix_squares_;
  mutable const double* squares_of_ = nullptr;
  mutable int64_t squares_begin_ = -1, squares_n_ = -1;
  std::vector<int64_t> support_;  // S_l
  std::vector<int64_t> offset_;   // where block l starts in a client vector; back() = dim
};

class FerretMethod final : public FederatedMethod {
 public:
  FerretMethod(const FerretOptions& options, std::vector<Block> blocks)
      : options_(options), blocks_(std::move(blocks)) {}

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& w_old, const Arena& w_new, uint32_t round) const override {
    TRIB_ASSIGN_OR_RETURN(ClientProjection projection, ProjectUpdate(options_, blocks_, w_old, w_new, round));
    return SerializePayload(projection.payload);
  }

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t round) const override {
    TRIB_ASSIGN_OR_RETURN(Payload parsed, Parse(payload, "payload"));
    if (parsed.round != round) return Status::InvalidArgument("payload carries round " + std::to_string(parsed.round));
    return Status::OK();
  }

  uint64_t MaxPayloadBytes() const override {
    return PayloadBytes(options_.wire_dtype, std::vector<int>(blocks_.size(), options_.K));
  }

  Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                    Aggregation& aggregation, const Arena& /*global*/, uint32_t round) const override {
    std::vector<Payload> payloads;
    payloads.reserve(clients.size());
    for (const ClientPayload& c : clients) {
      TRIB_ASSIGN_OR_RETURN(Payload parsed, Parse(c.payload, "worker '" + c.worker_id + "': logged payload"));
      payloads.push_back(std::move(parsed));
    }
    std::vector<ClientCoefficients> coefficients;
    for (size_t i = 0; i < clients.size(); ++i) coefficients.push_back({i, clients[i].num_samples, &payloads[i]});
    MethodAggregate out;
    TRIB_ASSIGN_OR_RETURN(Payload aggregate,
                          AggregateCoefficients(coefficients, weights, aggregation, round,
                                                static_cast<int>(blocks_.size()), options_.wire_dtype, &out.report));
    TRIB_ASSIGN_OR_RETURN(out.bytes, SerializePayload(aggregate));
    return out;
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    const std::string context = "round " + std::to_string(round) + ": aggregate";
    TRIB_ASSIGN_OR_RETURN(Payload payload, Parse(aggregate, context));
    if (payload.round != round)
      return Status::InvalidArgument(context + ": carries round " + std::to_string(payload.round));
    return ApplyAggregate(options_, blocks_, payload, options_.server_lr, *state).WithContext(context);
  }

  // Block l's coefficients at [l K, l K + K_l), zeros after its prefix.
  int64_t SecAggDim() const override { return static_cast<int64_t>(blocks_.size()) * options_.K; }

  Status SecAggVector(std::span<const uint8_t> payload, const Arena& /*reference*/, uint32_t round,
                      std::span<float> out) const override {
    TRIB_ASSIGN_OR_RETURN(Payload parsed, Parse(payload, "secure aggregation: payload"));
    if (parsed.round != round || out.size() != static_cast<size_t>(SecAggDim()))
      return Status::InvalidArgument("secure aggregation: payload of round " + std::to_string(parsed.round) +
                                     " for a vector of " + std::to_string(out.size()) + " values");
    std::fill(out.begin(), out.end(), 0.0f);
    for (size_t l = 0; l < parsed.gamma.size(); ++l)
      std::copy(parsed.gamma[l].begin(), parsed.gamma[l].end(), out.begin() + static_cast<int64_t>(l) * options_.K);
    return Status::OK();
  }

  // Every block keeps all K coefficients: the coordinator does not learn the clients' supports.
  Result<std::vector<uint8_t>> SecAggAggregate(std::span<const double> mean, const Arena& /*global*/,
                                               uint32_t round) const override {
    if (mean.size() != static_cast<size_t>(SecAggDim()))
      return Status::InvalidArgument("secure aggregation: mean of " + std::to_string(mean.size()) +
                                     " values, expected " + std::to_string(SecAggDim()));
    Payload out;
    out.round = round;
    out.dtype = options_.wire_dtype;
    out.gamma.resize(blocks_.size());
    for (size_t l = 0; l < blocks_.size(); ++l) {
      for (int k = 0; k < options_.K; ++k) {
        const double v = mean[l * static_cast<size_t>(options_.K) + static_cast<size_t>(k)];
        out.gamma[l].push_back(options_.wire_dtype == WireDtype::kFp32 ? static_cast<float>(v)
                                                                       : FloatFromBf16(Bf16FromDouble(v)));
      }
    }
    return SerializePayload(out);
  }

  std::string RoundSeedMode() const override { return SeedModeName(options_.seed_mode); }
  uint32_t CoefficientsPerBlock() const override { return static_cast<uint32_t>(options_.K); }

 private:
  // ParsePayload against this job's L and K; errors as InvalidArgument prefixed with `what`.
  Result<Payload> Parse(std::span<const uint8_t> bytes, const std::string& what) const {
    auto parsed = ParsePayload(bytes, {static_cast<int>(blocks_.size()), options_.K});
    if (!parsed.ok()) return Status::InvalidArgument(what + ": " + parsed.status().message());
    return std::move(*parsed);
  }

  FerretOptions options_;
  std::vector<Block> blocks_;
};

Result<std::unique_ptr<FederatedMethod>> CreateFerret(const JobSpec& spec,
                                                      std::shared_ptr<const TensorTable> state_table) {
  TRIB_ASSIGN_OR_RETURN(std::vector<Block> blocks, MakeFerretBlocks(FerretOptionsOf(spec), *state_table));
  return std::unique_ptr<FederatedMethod>(new FerretMethod(FerretOptionsOf(spec), std::move(blocks)));
}

}  // namespace

FerretOptions FerretOptionsOf(const JobSpec& spec) {
  FerretOptions options = spec.ferret;
  options.job_seed = spec.seed;
  options.server_lr = spec.server_lr;
  return options;
}

Result<Payload> AggregateCoefficients(const std::vector<ClientCoefficients>& clients, AggregationWeights weights,
                                      Aggregation& aggregation, uint32_t round, int num_blocks, WireDtype out_dtype,
                                      AggregationReport* report) {
  if (clients.empty())
    return Status::InvalidArgument("ferret aggregation of round " + std::to_string(round) + ": no clients");
  std::vector<const ClientCoefficients*> order;
  for (const ClientCoefficients& c : clients) order.push_back(&c);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->client_id < b->client_id; });
  std::vector<const Payload*> payloads;
  std::vector<uint64_t> samples;
  for (size_t i = 0; i < order.size(); ++i) {
    const ClientCoefficients& c = *order[i];
    const std::string who = "ferret aggregation: client " + std::to_string(c.client_id);
    if (i > 0 && order[i - 1]->client_id == c.client_id) return Status::InvalidArgument(who + ": duplicate client id");
    if (c.payload == nullptr) return Status::InvalidArgument(who + ": no payload");
    if (c.payload->round != round)
      return Status::InvalidArgument(who + ": payload of round " + std::to_string(c.payload->round) + ", expected " +
                                     std::to_string(round));
    if (c.payload->gamma.size() != static_cast<size_t>(num_blocks))
      return Status::InvalidArgument(who + ": " + std::to_string(c.payload->gamma.size()) + " blocks, expected " +
                                     std::to_string(num_blocks));
    if (weights == AggregationWeights::kSamples && c.num_samples == 0)
      return Status::InvalidArgument(who + ": num_samples 0 must be > 0");
    payloads.push_back(c.payload);
    samples.push_back(c.num_samples);
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<double> client_weights, ClientWeights(samples, weights));
  const CoefficientVectors vectors(std::move(payloads), static_cast<size_t>(num_blocks));
  Payload out;
  out.round = round;
  out.dtype = out_dtype;
  out.gamma.resize(static_cast<size_t>(num_blocks));
  for (size_t l = 0; l < out.gamma.size(); ++l) out.gamma[l].resize(static_cast<size_t>(vectors.support()[l]));
  TRIB_ASSIGN_OR_RETURN(AggregationReport learned,
                        aggregation.Run(vectors, client_weights, [&](int64_t begin, const double* values, int64_t n) {
                          size_t l = 0;
                          for (int64_t j = begin; j < begin + n; ++j) {
                            while (vectors.offset()[l + 1] <= j) ++l;
                            const double v = values[j - begin];
                            out.gamma[l][static_cast<size_t>(j - vectors.offset()[l])] =
                                out_dtype == WireDtype::kFp32 ? static_cast<float>(v)
                                                              : FloatFromBf16(Bf16FromDouble(v));
                          }
                        }));
  if (report != nullptr) *report = std::move(learned);
  return out;
}

extern const MethodInfo kFerretMethod;
const MethodInfo kFerretMethod = {"ferret", "ferret_coefficients", "ferret", false, false, &CreateFerret};

}  // namespace tributary
