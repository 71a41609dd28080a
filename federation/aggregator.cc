#include "federation/aggregator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace tributary {
namespace {

class WeightedMean final : public Aggregator {
 public:
  const char* name() const override { return "mean"; }

  void CombineRange(const ClientVectors& clients, const std::vector<double>& weights, int64_t begin, int64_t n,
                    double* out) override {
    std::fill(out, out + n, 0.0);
    for (size_t c = 0; c < clients.count(); ++c) clients.AddWeighted(c, begin, n, weights[c], out);
  }
};

// Step 2: every client vector moved towards the reference so that its distance is at most the clip
// norm: x' = fp32(ref + s (x - ref)) in fp64 arithmetic. Clients with s = 1 read through unchanged.
class ClippedVectors final : public ClientVectors {
 public:
  ClippedVectors(const ClientVectors& inner, std::vector<double> scales) : inner_(inner), scales_(std::move(scales)) {}
  size_t count() const override { return inner_.count(); }
  int64_t dim() const override { return inner_.dim(); }
  void ReadReference(int64_t begin, int64_t n, float* out) const override { inner_.ReadReference(begin, n, out); }

  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    inner_.Read(client, begin, n, out);
    const double s = scales_[client];
    if (s == 1.0) return;
    reference_.resize(static_cast<size_t>(n));
    inner_.ReadReference(begin, n, reference_.data());
    for (int64_t j = 0; j < n; ++j) {
      const double ref = reference_[static_cast<size_t>(j)];
      out[j] = static_cast<float>(ref + s * (static_cast<double>(out[j]) - ref));
    }
  }

  void AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const override {
    if (scales_[client] == 1.0) return inner_.AddWeighted(client, begin, n, weight, sum);
    ClientVectors::AddWeighted(client, begin, n, weight, sum);
  }

 private:
  const ClientVectors& inner_;
  std::vector<double> scales_;
  mutable std::vector<float> reference_;
};

// ||x_i - reference|| of every client, in fp64 over chunks in order.
std::vector<double> DistancesToReference(const ClientVectors& clients) {
  std::vector<double> squared(clients.count(), 0.0);
  std::vector<float> ref32;
  std::vector<double> ref;
  for (int64_t begin = 0; begin < clients.dim(); begin += kAggregateChunkElems) {
    const int64_t n = std::min(kAggregateChunkElems, clients.dim() - begin);
    ref32.resize(static_cast<size_t>(n));
    clients.ReadReference(begin, n, ref32.data());
    ref.assign(ref32.begin(), ref32.end());
    for (size_t c = 0; c < clients.count(); ++c) clients.AddSquaredDistance(c, begin, n, ref.data(), &squared[c]);
  }
  for (double& d : squared) d = std::sqrt(d);
  return squared;
}

// Step 7: distance to the combination over the median distance.
std::vector<double> AnomalyScores(const std::vector<double>& squared_distances) {
  std::vector<double> distances;
  for (double d : squared_distances) distances.push_back(std::sqrt(d));
  std::vector<double> sorted = distances;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  std::vector<double> scores;
  for (double d : distances)
    scores.push_back(
        median > 0 ? d / median
                   : (d > 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN()));
  return scores;
}

}  // namespace

const char* AggregationWeightsName(AggregationWeights weights) {
  return weights == AggregationWeights::kEqual ? "equal" : "samples";
}

Result<AggregationWeights> ParseAggregationWeights(std::string_view name) {
  if (name == "equal") return AggregationWeights::kEqual;
  if (name == "samples") return AggregationWeights::kSamples;
  return Status::InvalidArgument("aggregation weights '" + std::string(name) + "': expected equal or samples");
}

const char* AggregationRuleName(AggregationRule rule) {
  switch (rule) {
    case AggregationRule::kMean: return "mean";
    case AggregationRule::kMedian: return "median";
    case AggregationRule::kTrimmedMean: return "trimmed_mean";
    case AggregationRule::kKrum: return "krum";
    case AggregationRule::kMultiKrum: return "multi_krum";
  }
  return "mean";
}

Result<AggregationRule> ParseAggregationRule(std::string_view name) {
  for (AggregationRule rule : {AggregationRule::kMean, AggregationRule::kMedian, AggregationRule::kTrimmedMean,
                               AggregationRule::kKrum, AggregationRule::kMultiKrum})
    if (name == AggregationRuleName(rule)) return rule;
  return Status::InvalidArgument("aggregation rule '" + std::string(name) +
                                 "': expected mean, median, trimmed_mean, krum or multi_krum");
}

Status ValidateAggregationOptions(const AggregationOptions& o) {
  if (!(o.trim_fraction >= 0.0 && o.trim_fraction < 0.5))
    return Status::InvalidArgument("aggregation.trim_fraction: must be in [0, 0.5), got " +
                                   std::to_string(o.trim_fraction));
  if (o.byzantine < 0)
    return Status::InvalidArgument("aggregation.byzantine: must be >= 0, got " + std::to_string(o.byzantine));
  if (o.select < 0) return Status::InvalidArgument("aggregation.select: must be >= 0, got " + std::to_string(o.select));
  if (!std::isfinite(o.clip_norm) || o.clip_norm < 0)
    return Status::InvalidArgument("aggregation.clip_norm: must be a finite number >= 0, got " +
                                   std::to_string(o.clip_norm));
  return Status::OK();
}

Result<std::vector<double>> ClientWeights(const std::vector<uint64_t>& num_samples, AggregationWeights weights) {
  if (num_samples.empty()) return Status::InvalidArgument("aggregation: no clients");
  double total_samples = 0;
  for (size_t i = 0; i < num_samples.size(); ++i) {
    if (weights == AggregationWeights::kSamples && num_samples[i] == 0)
      return Status::InvalidArgument("aggregation: client " + std::to_string(i) +
                                     ": num_samples is 0 under samples weighting");
    total_samples += static_cast<double>(num_samples[i]);
  }
  std::vector<double> out;
  out.reserve(num_samples.size());
  for (uint64_t samples : num_samples)
    out.push_back(weights == AggregationWeights::kEqual ? 1.0 / static_cast<double>(num_samples.size())
                                                        : static_cast<double>(samples) / total_samples);
  return out;
}

void ClientVectors::ReadReference(int64_t /*begin*/, int64_t n, float* out) const {
  std::fill(out, out + n, 0.0f);
}

void ClientVectors::AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const {
  thread_local std::vector<float> values;  // one client's range
  values.resize(static_cast<size_t>(n));
  Read(client, begin, n, values.data());
  for (int64_t j = 0; j < n; ++j) sum[j] += weight * static_cast<double>(values[static_cast<size_t>(j)]);
}

void ClientVectors::AddSquaredDistance(size_t client, int64_t begin, int64_t n, const double* center,
                                       double* squared) const {
  thread_local std::vector<float> values;
  values.resize(static_cast<size_t>(n));
  Read(client, begin, n, values.data());
  double acc = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double d = static_cast<double>(values[static_cast<size_t>(j)]) - center[j];
    acc += d * d;
  }
  *squared += acc;
}

Status Aggregator::Prepare(const ClientVectors& /*clients*/, const std::vector<double>& /*weights*/) {
  return Status::OK();
}

std::unique_ptr<Aggregator> CreateWeightedMean() {
  return std::make_unique<WeightedMean>();
}

Status RunAggregator(Aggregator& aggregator, const ClientVectors& clients, const std::vector<double>& weights,
                     const std::function<void(int64_t begin, const double* values, int64_t n)>& sink) {
  if (weights.size() != clients.count())
    return Status::Internal("aggregation: " + std::to_string(weights.size()) + " weights for " +
                            std::to_string(clients.count()) + " clients");
  TRIB_RETURN_IF_ERROR(aggregator.Prepare(clients, weights));
  const int64_t dim = clients.dim();
  std::vector<double> chunk(static_cast<size_t>(std::min(dim, kAggregateChunkElems)));
  for (int64_t begin = 0; begin < dim; begin += kAggregateChunkElems) {
    const int64_t n = std::min(kAggregateChunkElems, dim - begin);
    aggregator.CombineRange(clients, weights, begin, n, chunk.data());
    sink(begin, chunk.data(), n);
  }
  return Status::OK();
}

Result<std::unique_ptr<Aggregation>> Aggregation::Create(const AggregationOptions& options) {
  TRIB_RETURN_IF_ERROR(ValidateAggregationOptions(options));
  return std::unique_ptr<Aggregation>(new Aggregation(options, CreateAggregator(options)));
}

Result<AggregationReport> Aggregation::Run(
    const ClientVectors& clients, const std::vector<double>& weights,
    const std::function<void(int64_t begin, const double* values, int64_t n)>& sink) {
  AggregationReport report;
  report.clip_scales.assign(clients.count(), 1.0);
  if (options_.clip_norm > 0) {
    const std::vector<double> norms = DistancesToReference(clients);
    for (size_t c = 0; c < clients.count(); ++c)
      if (norms[c] > options_.clip_norm) report.clip_scales[c] = options_.clip_norm / norms[c];
  }
  const ClippedVectors clipped(clients, report.clip_scales);
  std::vector<double> squared(clients.count(), 0.0);  // raw distance to the combination, for step 7
  if (noise_sum_stddev_ > 0 && !weights.empty())
    report.noise_stddev = noise_sum_stddev_ * *std::max_element(weights.begin(), weights.end());
  noise_sum_stddev_ = 0;  // one Run only: a reused key would repeat the draw
  std::vector<double> noised;
  TRIB_RETURN_IF_ERROR(RunAggregator(*rule_, clipped, weights, [&](int64_t begin, const double* values, int64_t n) {
    for (size_t c = 0; c < clients.count(); ++c) clients.AddSquaredDistance(c, begin, n, values, &squared[c]);
    if (report.noise_stddev == 0) return sink(begin, values, n);
    noised.assign(values, values + n);
    AddGaussianNoise(noise_key_, report.noise_stddev, begin, n, noised.data());
    sink(begin, noised.data(), n);
  }));
  report.excluded = rule_->Excluded();
  if (report.excluded.empty()) report.excluded.assign(clients.count(), false);
  report.anomaly_scores = AnomalyScores(squared);
  return report;
}

}  // namespace tributary
