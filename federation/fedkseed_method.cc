// FedKSeed: zeroth-order local steps along K shared seeds; one fp32 scalar per seed goes up, every
// replica rebuilds the update from the seeds (federation/fedkseed_method.h).
#include "federation/fedkseed_method.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "base/hash.h"
#include "base/parallel.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/tasklet.h"

namespace tributary {
namespace {

// Separates the pool's Philox keys from Ferret's bases of the same job seed ("fedkseed" in ASCII).
constexpr uint64_t kPoolDomain = 0x6665646b73656564ull;
// Separates the step-seed draws from the data order of the same (job, round, worker).
constexpr uint64_t kStepDomain = 0x6b2d737465707321ull;
// Elements per generated slice of z: small enough for the stack-friendly buffers of a task, large
// enough to amortise a task.
constexpr int64_t kChunkElems = int64_t{1} << 15;

// The token-weighted mean loss of one step's micro-batches (what first-order steps would average).
Result<double> WindowLoss(LlamaModel& model, const std::vector<Batch>& batches) {
  double sum = 0;
  int64_t counted_total = 0;
  for (const Batch& batch : batches) {
    float loss = 0;
    TRIB_RETURN_IF_ERROR(model.Forward(batch.tokens.data(), batch.loss_mask.data(), batch.targets.data(),
                                       batch.batch_size, batch.seq_len, &loss));
    const int64_t counted = batch.NumTargets();
    if (counted == 0) continue;
    sum += static_cast<double>(loss) * static_cast<double>(counted);
    counted_total += counted;
  }
  return counted_total > 0 ? sum / static_cast<double>(counted_total) : 0.0;
}

// One client vector per parsed payload: its K scalars.
class ScalarVectors final : public ClientVectors {
 public:
  ScalarVectors(const std::vector<FedKSeedPayload>& payloads, int K) : payloads_(payloads), K_(K) {}
  size_t count() const override { return payloads_.size(); }
  int64_t dim() const override { return K_; }
  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    std::memcpy(out, payloads_[client].scalars.data() + begin, static_cast<size_t>(n) * sizeof(float));
  }

 private:
  const std::vector<FedKSeedPayload>& payloads_;
  int K_;
};

class FedKSeedMethod final : public FederatedMethod {
 public:
  FedKSeedMethod(const FedKSeedOptions& options, uint64_t job_seed, double server_lr,
                 std::shared_ptr<const TensorTable> table)
      : options_(options), job_seed_(job_seed), server_lr_(server_lr), table_(std::move(table)) {}

  Result<std::vector<uint8_t>> EncodeUpdate(const Arena& /*w_old*/, const Arena& /*w_new*/,
                                            uint32_t /*round*/) const override {
    return Status::InvalidArgument(
        "fedkseed uploads the scalars of its own zeroth-order steps, not an encoded state change");
  }

  bool RunsLocalProcedure() const override { return true; }
  Result<LocalProcedureResult> RunLocalProcedure(const LocalProcedureInput& input, LlamaModel& model) const override;

  Status ValidatePayload(std::span<const uint8_t> payload, uint32_t round) const override {
    TRIB_ASSIGN_OR_RETURN(FedKSeedPayload parsed, Parse(payload, "payload"));
    if (parsed.round != round) return Status::InvalidArgument("payload carries round " + std::to_string(parsed.round));
    return Status::OK();
  }

  uint64_t MaxPayloadBytes() const override {
    return kFedKSeedHeaderBytes + static_cast<uint64_t>(options_.K) * sizeof(float);
  }

  Result<MethodAggregate> Aggregate(const std::vector<ClientPayload>& clients, AggregationWeights weights,
                                    Aggregation& aggregation, const Arena& /*global*/, uint32_t round) const override {
    if (clients.empty())
      return Status::InvalidArgument("fedkseed aggregation of round " + std::to_string(round) + ": no clients");
    std::vector<FedKSeedPayload> payloads;
    std::vector<uint64_t> samples;
    for (const ClientPayload& c : clients) {
      const std::string who = "worker '" + c.worker_id + "'";
      TRIB_ASSIGN_OR_RETURN(FedKSeedPayload parsed, Parse(c.payload, who + ": logged payload"));
      if (parsed.round != round)
        return Status::InvalidArgument(who + ": payload of round " + std::to_string(parsed.round) + ", expected " +
                                       std::to_string(round));
      if (weights == AggregationWeights::kSamples && c.num_samples == 0)
        return Status::InvalidArgument(who + ": num_samples 0 must be > 0");
      payloads.push_back(std::move(parsed));
      samples.push_back(c.num_samples);
    }
    TRIB_ASSIGN_OR_RETURN(std::vector<double> client_weights, ClientWeights(samples, weights));
    const ScalarVectors vectors(payloads, options_.K);
    FedKSeedPayload out;
    out.round = round;
    out.scalars.assign(static_cast<size_t>(options_.K), 0.0f);
    MethodAggregate aggregate;
    TRIB_ASSIGN_OR_RETURN(aggregate.report,
                          aggregation.Run(vectors, client_weights, [&out](int64_t begin, const double* v, int64_t n) {
                            for (int64_t j = 0; j < n; ++j)
                              out.scalars[static_cast<size_t>(begin + j)] = static_cast<float>(v[j]);
                          }));
    aggregate.bytes = SerializeFedKSeedPayload(out);
    return aggregate;
  }

  Status Apply(std::span<const uint8_t> aggregate, uint32_t round, Arena* state) const override {
    const std::string context = "round " + std::to_string(round) + ": aggregate";
    TRIB_ASSIGN_OR_RETURN(FedKSeedPayload payload, Parse(aggregate, context));
    if (payload.round != round)
      return Status::InvalidArgument(context + ": carries round " + std::to_string(payload.round));
    if (state->size() != table_->total_elems())
      return Status::InvalidArgument(context + ": state of " + std::to_string(state->size()) + " values, expected " +
                                     std::to_string(table_->total_elems()));
    const FedKSeedPool pool(options_, job_seed_, round, *table_);
    if (state->is_host()) {
      pool.ApplyCombination(payload.scalars, server_lr_, state->data());
      return Status::OK();
    }
    std::vector<float> host(static_cast<size_t>(state->size()));
    state->CopyToHost(host.data());
    pool.ApplyCombination(payload.scalars, server_lr_, host.data());
    state->CopyFromHost(host.data());
    return Status::OK();
  }

  int64_t SecAggDim() const override { return options_.K; }

  Status SecAggVector(std::span<const uint8_t> payload, const Arena& /*reference*/, uint32_t round,
                      std::span<float> out) const override {
    TRIB_ASSIGN_OR_RETURN(FedKSeedPayload parsed, Parse(payload, "secure aggregation: payload"));
    if (parsed.round != round || out.size() != parsed.scalars.size())
      return Status::InvalidArgument("secure aggregation: payload of round " + std::to_string(parsed.round) +
                                     " for a vector of " + std::to_string(out.size()) + " values");
    std::copy(parsed.scalars.begin(), parsed.scalars.end(), out.begin());
    return Status::OK();
  }

  Result<std::vector<uint8_t>> SecAggAggregate(std::span<const double> mean, const Arena& /*global*/,
                                               uint32_t round) const override {
    if (mean.size() != static_cast<size_t>(options_.K))
      return Status::InvalidArgument("secure aggregation: mean of " + std::to_string(mean.size()) +
                                     " values, expected " + std::to_string(options_.K));
    FedKSeedPayload out;
    out.round = round;
    for (double v : mean) out.scalars.push_back(static_cast<float>(v));
    return SerializeFedKSeedPayload(out);
  }

  std::string RoundSeedMode() const override { return std::string("fedkseed_") + SeedModeName(options_.seed_mode); }

 private:
  Result<FedKSeedPayload> Parse(std::span<const uint8_t> bytes, const std::string& what) const {
    auto parsed = ParseFedKSeedPayload(bytes, options_.K);
    if (!parsed.ok()) return Status::InvalidArgument(what + ": " + parsed.status().message());
    return std::move(*parsed);
  }

  FedKSeedOptions options_;
  uint64_t job_seed_;
  double server_lr_;
  std::shared_ptr<const TensorTable> table_;
};

Result<LocalProcedureResult> FedKSeedMethod::RunLocalProcedure(const LocalProcedureInput& input,
                                                               LlamaModel& model) const {
  const JobSpec& spec = *input.spec;
  const std::vector<SequenceRow>& rows = *input.rows;
  if (rows.empty()) return Status::InvalidArgument("fedkseed: no training rows");
  Arena& params = model.params();
  if (params.size() != table_->total_elems())
    return Status::InvalidArgument("fedkseed: model of " + std::to_string(params.size()) + " parameters, expected " +
                                   std::to_string(table_->total_elems()));
  // The local iterate w lives on the host; each probe w +- eps z is written into the parameters (through a
  // host staging copy when they live on a device).
  std::vector<float> w(static_cast<size_t>(params.size()));
  params.CopyToHost(w.data());
  std::vector<float> staging(params.is_host() ? 0 : w.size());
  float* probe = params.is_host() ? params.data() : staging.data();
  const FedKSeedPool pool(options_, spec.seed, input.round, *table_);
  const float eps = static_cast<float>(options_.eps);
  std::vector<double> c(static_cast<size_t>(options_.K), 0.0);
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  int64_t next_row = 0;
  double loss_sum = 0;
  for (int64_t t = 0; t < spec.local_steps; ++t) {
    std::vector<Batch> batches;
    for (int64_t m = 0; m < spec.grad_accum; ++m) {
      batches.push_back(MakeBatch(rows, next_row % n_rows, spec.batch_size));
      next_row = (next_row + spec.batch_size) % n_rows;
    }
    const uint32_t k = FedKSeedStepSeed(spec.seed, input.round, input.worker_id, t, options_.K);
    double loss[2];
    for (int side = 0; side < 2; ++side) {
      pool.AddScaled(k, side == 0 ? eps : -eps, w.data(), probe);
      if (!params.is_host()) params.CopyFromHost(probe);
      TRIB_ASSIGN_OR_RETURN(loss[side], WindowLoss(model, batches));
    }
    const double g = (loss[0] - loss[1]) / (2.0 * static_cast<double>(eps));
    const float step = static_cast<float>(-spec.lr * g);
    if (!std::isfinite(loss[0]) || !std::isfinite(loss[1]) || !std::isfinite(step))
      return Status::FailedPrecondition("training diverged: fedkseed losses " + std::to_string(loss[0]) + " and " +
                                        std::to_string(loss[1]) + " at local step " + std::to_string(t + 1));
    pool.AddScaled(k, step, w.data(), w.data());
    c[k] += static_cast<double>(step);
    loss_sum += 0.5 * (loss[0] + loss[1]);  // L(w) up to O(eps^2)
  }
  // Leave the model at the local w_new (tests compare it with the applied upload; the tasklet restores w_old).
  if (params.is_host()) {
    std::memcpy(params.data(), w.data(), params.bytes());
  } else {
    params.CopyFromHost(w.data());
  }
  FedKSeedPayload payload;
  payload.round = input.round;
  for (double v : c) {
    payload.scalars.push_back(static_cast<float>(v));
    if (!std::isfinite(payload.scalars.back())) return Status::InvalidArgument("fedkseed: update is not finite");
  }
  LocalProcedureResult result;
  result.payload = SerializeFedKSeedPayload(payload);
  result.train_loss = spec.local_steps > 0 ? loss_sum / static_cast<double>(spec.local_steps) : 0.0;
  return result;
}

Result<std::unique_ptr<FederatedMethod>> CreateFedKSeed(const JobSpec& spec,
                                                        std::shared_ptr<const TensorTable> state_table) {
  TRIB_RETURN_IF_ERROR(ValidateFedKSeedOptions(spec.fedkseed));
  return std::unique_ptr<FederatedMethod>(
      new FedKSeedMethod(spec.fedkseed, spec.seed, spec.server_lr, std::move(state_table)));
}

}  // namespace

Status ValidateFedKSeedOptions(const FedKSeedOptions& o) {
  if (o.K < kFedKSeedMinK || o.K > kFedKSeedMaxK)
    return Status::InvalidArgument("fedkseed.k: " + std::to_string(o.K) + " is outside [" +
                                   std::to_string(kFedKSeedMinK) + ", " + std::to_string(kFedKSeedMaxK) + "]");
  if (!(o.eps > 0 && o.eps <= 1))
    return Status::InvalidArgument("fedkseed.eps: " + std::to_string(o.eps) + " is outside (0, 1]");
  if (o.distribution != Distribution::kRademacher)
    return Status::InvalidArgument(std::string("fedkseed.distribution: ") + DistributionName(o.distribution) +
                                   " is not supported (rademacher)");
  return Status::OK();
}

std::vector<uint8_t> SerializeFedKSeedPayload(const FedKSeedPayload& payload) {
  std::vector<uint8_t> out(kFedKSeedHeaderBytes + payload.scalars.size() * sizeof(float));
  const uint32_t header[2] = {payload.round, static_cast<uint32_t>(payload.scalars.size())};
  std::memcpy(out.data(), header, sizeof(header));
  if (!payload.scalars.empty())
    std::memcpy(out.data() + kFedKSeedHeaderBytes, payload.scalars.data(), payload.scalars.size() * sizeof(float));
  return out;
}

Result<FedKSeedPayload> ParseFedKSeedPayload(std::span<const uint8_t> bytes, int K) {
  if (K < 0) return Status::InvalidArgument("K " + std::to_string(K) + " is negative");
  const size_t expected = kFedKSeedHeaderBytes + static_cast<size_t>(K) * sizeof(float);
  if (bytes.size() != expected)
    return Status::InvalidArgument(std::to_string(bytes.size()) + " bytes, expected " + std::to_string(expected) +
                                   " (8 + 4 K, K = " + std::to_string(K) + ")");
  uint32_t header[2];
  std::memcpy(header, bytes.data(), sizeof(header));
  if (header[1] != static_cast<uint32_t>(K))
    return Status::InvalidArgument("carries K " + std::to_string(header[1]) + ", expected " + std::to_string(K));
  FedKSeedPayload out;
  out.round = header[0];
  out.scalars.resize(static_cast<size_t>(K));
  // No memcpy for K = 0: an empty vector's data() may be null, and memcpy with null is undefined.
  if (K > 0) std::memcpy(out.scalars.data(), bytes.data() + kFedKSeedHeaderBytes, out.scalars.size() * sizeof(float));
  for (size_t k = 0; k < out.scalars.size(); ++k)
    if (!std::isfinite(out.scalars[k]))
      return Status::InvalidArgument("scalar " + std::to_string(k) + " is not finite");
  return out;
}

uint32_t FedKSeedStepSeed(uint64_t job_seed, uint32_t round, std::string_view worker_id, int64_t t, int K) {
  std::mt19937_64 rng(
      SplitMix64(TaskletDataSeed(job_seed, round, worker_id) ^ kStepDomain ^ SplitMix64(static_cast<uint64_t>(t))));
  return static_cast<uint32_t>(UniformBelow(rng, static_cast<uint64_t>(K)));
}

FedKSeedPool::FedKSeedPool(const FedKSeedOptions& options, uint64_t job_seed, uint32_t round, const TensorTable& table)
    : options_(options),
      pool_seed_(SplitMix64(job_seed ^ kPoolDomain)),
      key_round_(KeyRound(options.seed_mode, round)) {
  for (size_t t = 0; t < table.entries().size(); ++t) {
    const TensorEntry& e = table.entries()[t];
    for (int64_t begin = 0; begin < e.numel; begin += kChunkElems)
      chunks_.push_back({static_cast<uint32_t>(t), e.offset + begin, begin, std::min(kChunkElems, e.numel - begin)});
  }
}

BasisStream FedKSeedPool::Stream(uint32_t k, uint32_t tensor) const {
  // Block size 1: the Rademacher magnitude 1/sqrt(1) is exactly 1, so z is +-1.
  return MakeBasisStream(options_.distribution, pool_seed_, key_round_, k, tensor, /*block_numel=*/1);
}

void FedKSeedPool::AddScaled(uint32_t k, float scale, const float* w, float* w_out) const {
  ParallelTasks(static_cast<int64_t>(chunks_.size()), [&](int64_t i) {
    const Chunk& ch = chunks_[static_cast<size_t>(i)];
    std::vector<float> z(static_cast<size_t>(ch.n));
    GenerateBasis(Stream(k, ch.tensor), static_cast<uint64_t>(ch.begin), ch.n, z.data());
    for (int64_t j = 0; j < ch.n; ++j) w_out[ch.offset + j] = w[ch.offset + j] + scale * z[static_cast<size_t>(j)];
  });
}

void FedKSeedPool::ApplyCombination(std::span<const float> c, double server_lr, float* w) const {
  std::vector<uint32_t> seeds;
  for (size_t k = 0; k < c.size(); ++k)
    if (c[k] != 0.0f) seeds.push_back(static_cast<uint32_t>(k));
  if (seeds.empty()) return;
  ParallelTasks(static_cast<int64_t>(chunks_.size()), [&](int64_t i) {
    const Chunk& ch = chunks_[static_cast<size_t>(i)];
    std::vector<float> z(static_cast<size_t>(ch.n));
    std::vector<double> sum(static_cast<size_t>(ch.n), 0.0);
    for (uint32_t k : seeds) {
      GenerateBasis(Stream(k, ch.tensor), static_cast<uint64_t>(ch.begin), ch.n, z.data());
      const double ck = static_cast<double>(c[k]);
      for (int64_t j = 0; j < ch.n; ++j)
        sum[static_cast<size_t>(j)] += ck * static_cast<double>(z[static_cast<size_t>(j)]);
    }
    for (int64_t j = 0; j < ch.n; ++j)
      w[ch.offset + j] =
          static_cast<float>(static_cast<double>(w[ch.offset + j]) + server_lr * sum[static_cast<size_t>(j)]);
  });
}

extern const MethodInfo kFedKSeedMethod;
const MethodInfo kFedKSeedMethod = {"fedkseed", "fedkseed_scalars", "fedkseed", false, false, &CreateFedKSeed};

}  // namespace tributary
