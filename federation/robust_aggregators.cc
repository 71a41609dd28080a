// Combination rules that a minority of arbitrary (Byzantine) client vectors cannot steer at will:
// coordinate-wise median and trimmed mean, Krum and Multi-Krum (federation/aggregator.h).
//
// They read all clients' values of a coordinate range at once, so ranges are cut to keep that matrix
// under kGatherFloats whatever the number of clients. Every result is a function of the values and the
// client order only (sorts of equal values give equal results; ties in Krum's scores go to the lower
// client index), so a re-run reproduces the bytes.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "federation/aggregator.h"

namespace tributary {
namespace {

constexpr int64_t kGatherFloats = int64_t{1} << 22;  // 16 MiB of fp32 per gathered range

// Calls fn(sub_begin, sub_n, values) over [begin, begin + n) in ranges small enough that `values`
// ([count][sub_n], client-major) stays under kGatherFloats.
template <typename Fn>
void ForEachGatheredRange(const ClientVectors& clients, int64_t begin, int64_t n, Fn&& fn) {
  const int64_t count = static_cast<int64_t>(clients.count());
  const int64_t step = std::max<int64_t>(1, std::min<int64_t>(n, kGatherFloats / std::max<int64_t>(count, 1)));
  std::vector<float> values(static_cast<size_t>(count * step));
  for (int64_t sub = begin; sub < begin + n; sub += step) {
    const int64_t m = std::min(step, begin + n - sub);
    for (int64_t c = 0; c < count; ++c) clients.Read(static_cast<size_t>(c), sub, m, values.data() + c * m);
    fn(sub, m, values.data());
  }
}

// Coordinate-wise order statistics: median, or the mean of the middle after trimming.
class CoordinateWise final : public Aggregator {
 public:
  CoordinateWise(const char* name, double trim_fraction) : name_(name), trim_fraction_(trim_fraction) {}
  const char* name() const override { return name_; }

  void CombineRange(const ClientVectors& clients, const std::vector<double>& /*weights*/, int64_t begin, int64_t n,
                    double* out) override {
    const int64_t count = static_cast<int64_t>(clients.count());
    std::vector<double> column(static_cast<size_t>(count));
    ForEachGatheredRange(clients, begin, n, [&](int64_t sub, int64_t m, const float* values) {
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t c = 0; c < count; ++c) column[static_cast<size_t>(c)] = values[c * m + j];
        out[sub - begin + j] = trim_fraction_ < 0 ? Median(column) : TrimmedMean(column);
      }
    });
  }

 private:
  static double Median(std::vector<double>& v) {
    const size_t n = v.size(), mid = n / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    const double upper = v[mid];
    if (n % 2 == 1) return upper;
    const double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
    return 0.5 * (lower + upper);
  }

  // Two selections instead of a sort: [cut, n - cut) then holds the middle values (in an order that
  // depends only on the input order, so the sum is reproducible).
  double TrimmedMean(std::vector<double>& v) const {
    const size_t cut = static_cast<size_t>(std::floor(trim_fraction_ * static_cast<double>(v.size())));
    if (cut > 0) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(cut), v.end());
      std::nth_element(v.begin() + static_cast<std::ptrdiff_t>(cut), v.end() - static_cast<std::ptrdiff_t>(cut),
                       v.end());
    }
    double sum = 0.0;
    for (size_t i = cut; i < v.size() - cut; ++i) sum += v[i];
    return sum / static_cast<double>(v.size() - 2 * cut);
  }

  const char* name_;
  double trim_fraction_;  // < 0: the median
};

// Krum (select == 1) and Multi-Krum: score_i = the sum of the squared distances to its n - f - 2 nearest
// other clients; the `select` lowest scores are kept and combined by their renormalised weights.
class Krum final : public Aggregator {
 public:
  Krum(const char* name, int64_t byzantine, int64_t select) : name_(name), f_(byzantine), select_(select) {}
  const char* name() const override { return name_; }

  Status Prepare(const ClientVectors& clients, const std::vector<double>& weights) override {
    const int64_t n = static_cast<int64_t>(clients.count());
    if (n <= 2 * f_ + 2)
      return Status::InvalidArgument(
          std::string("aggregation.rule ") + name_ + ": needs more than 2f + 2 = " + std::to_string(2 * f_ + 2) +
          " clients (aggregation.byzantine = " + std::to_string(f_) + "), the round has " + std::to_string(n));
    const int64_t keep = select_ == 0 ? n - f_ : std::min(select_, n);
    const std::vector<double> scores = Scores(clients, PairwiseSquaredDistances(clients), n - f_ - 2);
    std::vector<size_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    excluded_.assign(static_cast<size_t>(n), true);
    double total = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      excluded_[order[static_cast<size_t>(i)]] = false;
      total += weights[order[static_cast<size_t>(i)]];
    }
    kept_weights_.assign(static_cast<size_t>(n), 0.0);
    for (size_t c = 0; c < kept_weights_.size(); ++c)
      if (!excluded_[c]) kept_weights_[c] = keep == 1 ? 1.0 : weights[c] / total;
    return Status::OK();
  }

  void CombineRange(const ClientVectors& clients, const std::vector<double>& /*weights*/, int64_t begin, int64_t n,
                    double* out) override {
    std::fill(out, out + n, 0.0);
    for (size_t c = 0; c < clients.count(); ++c)
      if (!excluded_[c]) clients.AddWeighted(c, begin, n, kept_weights_[c], out);
  }

  std::vector<bool> Excluded() const override { return excluded_; }

 private:
  // d[a * n + b] = ||x_a - x_b||^2 = ||x_a||^2 + ||x_b||^2 - 2 <x_a, x_b> in fp64, from a Gram matrix that
  // BLAS accumulates over coordinate ranges in order (n^2 d / 2 multiply-adds at BLAS speed instead of
  // 3 n^2 d / 2 scalar operations). fp64 keeps the cancellation error near 1e-16 ||x||^2, far below
  // any distance that changes a selection; a BLAS build may still break an exact tie differently.
  static std::vector<double> PairwiseSquaredDistances(const ClientVectors& clients) {
    const int64_t n = static_cast<int64_t>(clients.count());
    std::vector<double> gram(static_cast<size_t>(n * n), 0.0);
    std::vector<double> x;
    for (int64_t begin = 0; begin < clients.dim(); begin += kAggregateChunkElems) {
      const int64_t len = std::min(kAggregateChunkElems, clients.dim() - begin);
      ForEachGatheredRange(clients, begin, len, [&](int64_t /*sub*/, int64_t m, const float* values) {
        x.assign(values, values + n * m);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(m), 1.0,
                    x.data(), static_cast<blasint>(m), 1.0, gram.data(), static_cast<blasint>(n));
      });
    }
    std::vector<double> d(static_cast<size_t>(n * n), 0.0);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = a + 1; b < n; ++b) {
        const double sq = gram[static_cast<size_t>(a * n + a)] + gram[static_cast<size_t>(b * n + b)] -
                          2.0 * gram[static_cast<size_t>(a * n + b)];
        d[static_cast<size_t>(a * n + b)] = d[static_cast<size_t>(b * n + a)] = std::max(sq, 0.0);
      }
    return d;
  }

  static std::vector<double> Scores(const ClientVectors& clients, const std::vector<double>& d, int64_t neighbours) {
    const int64_t n = static_cast<int64_t>(clients.count());
    std::vector<double> scores(static_cast<size_t>(n));
    std::vector<double> row;
    for (int64_t a = 0; a < n; ++a) {
      row.clear();
      for (int64_t b = 0; b < n; ++b)
        if (b != a) row.push_back(d[static_cast<size_t>(a * n + b)]);
      std::sort(row.begin(), row.end());
      scores[static_cast<size_t>(a)] = std::accumulate(row.begin(), row.begin() + neighbours, 0.0);
    }
    return scores;
  }

  const char* name_;
  int64_t f_;
  int64_t select_;  // 1: Krum; 0: n - f
  std::vector<bool> excluded_;
  std::vector<double> kept_weights_;
};

}  // namespace

std::unique_ptr<Aggregator> CreateAggregator(const AggregationOptions& options) {
  switch (options.rule) {
    case AggregationRule::kMean: return CreateWeightedMean();
    case AggregationRule::kMedian: return std::make_unique<CoordinateWise>("median", -1.0);
    case AggregationRule::kTrimmedMean: return std::make_unique<CoordinateWise>("trimmed_mean", options.trim_fraction);
    case AggregationRule::kKrum: return std::make_unique<Krum>("krum", options.byzantine, 1);
    case AggregationRule::kMultiKrum: return std::make_unique<Krum>("multi_krum", options.byzantine, options.select);
  }
  return CreateWeightedMean();
}

}  // namespace tributary
