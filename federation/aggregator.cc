#include "federation/aggregator.h"

#include <algorithm>
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

}  // namespace

const char* AggregationWeightsName(AggregationWeights weights) {
  return weights == AggregationWeights::kEqual ? "equal" : "samples";
}

Result<AggregationWeights> ParseAggregationWeights(std::string_view name) {
  if (name == "equal") return AggregationWeights::kEqual;
  if (name == "samples") return AggregationWeights::kSamples;
  return Status::InvalidArgument("aggregation weights '" + std::string(name) + "': expected equal or samples");
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

void ClientVectors::AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const {
  thread_local std::vector<float> values;  // one client's range
  values.resize(static_cast<size_t>(n));
  Read(client, begin, n, values.data());
  for (int64_t j = 0; j < n; ++j) sum[j] += weight * static_cast<double>(values[static_cast<size_t>(j)]);
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

}  // namespace tributary
