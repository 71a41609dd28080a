// Differential privacy: the RDP accountant against the exact privacy curve of the Gaussian mechanism
// and the classic RDP conversion, the noise stream's statistics and chunking, and central noise in the
// aggregation pipeline.
#include "federation/privacy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "federation/aggregator.h"

namespace tributary {
namespace {

double NormalCdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

// The exact epsilon of a Gaussian mechanism whose sensitivity / stddev is mu (Balle and Wang 2018,
// Theorem 8): delta(eps) = Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu), solved by bisection.
// T compositions of (z, sensitivity s) are one Gaussian mechanism with mu = sqrt(T) s / z.
double ExactGaussianEpsilon(double mu, double delta) {
  auto delta_of = [mu](double eps) {
    return NormalCdf(mu / 2 - eps / mu) - std::exp(eps) * NormalCdf(-mu / 2 - eps / mu);
  };
  double lo = 0, hi = 500;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (delta_of(mid) > delta ? lo : hi) = mid;
  }
  return hi;
}

TEST(PrivacyTest, RdpEpsilonLiesBetweenTheExactCurveAndTheClassicConversion) {
  struct Case {
    double z, sensitivity;
    int64_t rounds;
    double delta;
  };
  for (const Case& c : {Case{1.1, 1, 10, 1e-5}, Case{1.0, 1, 1, 1e-5}, Case{2.0, 1, 100, 1e-6}, Case{4.0, 2, 50, 1e-5},
                        Case{0.8, 1, 5, 1e-3}, Case{10.0, 1, 1000, 1e-5}}) {
    const DpGuarantee g = GaussianRdpGuarantee(c.z, c.sensitivity, c.rounds, c.delta);
    const double mu = std::sqrt(static_cast<double>(c.rounds)) * c.sensitivity / c.z;
    const double exact = ExactGaussianEpsilon(mu, c.delta);
    const double rho = static_cast<double>(c.rounds) * c.sensitivity * c.sensitivity / (2 * c.z * c.z);
    const double classic = rho + 2 * std::sqrt(rho * std::log(1 / c.delta));  // Mironov 2017, best real order
    std::printf("z %.2f s %.0f T %lld delta %.0e: exact %.4f <= rdp %.4f (order %.3g) <= classic %.4f\n", c.z,
                c.sensitivity, static_cast<long long>(c.rounds), c.delta, exact, g.epsilon, g.order, classic);
    EXPECT_GE(g.epsilon, exact) << "RDP is an upper bound";
    EXPECT_LE(g.epsilon, classic) << "the Balle et al. conversion is never worse than the classic one";
    EXPECT_LE(g.epsilon, 1.5 * exact + 0.5) << "and not loose";
    EXPECT_EQ(g.delta, c.delta);
  }
  EXPECT_EQ(GaussianRdpGuarantee(1.0, 1, 0, 1e-5).epsilon, 0.0);
  // More rounds spend more; more noise spends less; local (sensitivity 2) spends more than central.
  EXPECT_LT(GaussianRdpGuarantee(1.0, 1, 10, 1e-5).epsilon, GaussianRdpGuarantee(1.0, 1, 20, 1e-5).epsilon);
  EXPECT_GT(GaussianRdpGuarantee(1.0, 1, 10, 1e-5).epsilon, GaussianRdpGuarantee(2.0, 1, 10, 1e-5).epsilon);
  PrivacyOptions central{DpMechanism::kCentral, 1.0, 1e-5, 0};
  PrivacyOptions local{DpMechanism::kLocal, 1.0, 1e-5, 0};
  EXPECT_LT(JobPrivacyGuarantee(central, 10).epsilon, JobPrivacyGuarantee(local, 10).epsilon);
  EXPECT_EQ(JobPrivacyGuarantee(local, 10).epsilon, GaussianRdpGuarantee(1.0, 2, 10, 1e-5).epsilon);
}

TEST(PrivacyTest, NoiseIsStandardNormalPerKeyAndIndependentOfChunking) {
  const NoiseKey key = FreshNoiseKey();
  constexpr int64_t kN = 1 << 20;
  std::vector<double> whole(kN, 0.0);
  AddGaussianNoise(key, 1.0, 0, kN, whole.data());
  double sum = 0, sum_sq = 0, sum_4 = 0;
  for (double x : whole) sum += x, sum_sq += x * x, sum_4 += x * x * x * x;
  const double mean = sum / kN, var = sum_sq / kN;
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(kN));
  EXPECT_NEAR(var, 1.0, 0.01);
  EXPECT_NEAR(sum_4 / kN, 3.0, 0.05) << "Gaussian kurtosis";
  // Odd chunk boundaries and offsets give the same draws.
  std::vector<double> chunked(kN, 0.0);
  for (int64_t begin = 0; begin < kN;) {
    const int64_t n = std::min<int64_t>(kN - begin, 1 + (begin * 7919) % 4099);
    AddGaussianNoise(key, 1.0, begin, n, chunked.data() + begin);
    begin += n;
  }
  EXPECT_EQ(std::memcmp(whole.data(), chunked.data(), kN * sizeof(double)), 0);
  std::vector<double> other(16, 0.0);
  AddGaussianNoise(FreshNoiseKey(), 1.0, 0, 16, other.data());
  EXPECT_NE(std::memcmp(whole.data(), other.data(), 16 * sizeof(double)), 0) << "a fresh key, fresh noise";
}

class ConstantVectors final : public ClientVectors {
 public:
  ConstantVectors(size_t count, int64_t dim, float value) : count_(count), dim_(dim), value_(value) {}
  size_t count() const override { return count_; }
  int64_t dim() const override { return dim_; }
  void Read(size_t /*client*/, int64_t /*begin*/, int64_t n, float* out) const override {
    std::fill(out, out + n, value_);
  }

 private:
  size_t count_;
  int64_t dim_;
  float value_;
};

// Central DP through the pipeline: clip every client to C, average, add N(0, (z C / n)^2) once.
TEST(PrivacyTest, CentralNoiseIsAddedOnceAfterClippingAndCombining) {
  constexpr size_t kClients = 4;
  constexpr int64_t kDim = 200000;
  const ConstantVectors clients(kClients, kDim, 1.0f);  // norm sqrt(kDim) each
  AggregationOptions options;
  options.clip_norm = 2.0;
  auto aggregation = Aggregation::Create(options);
  ASSERT_TRUE(aggregation.ok());
  const std::vector<double> weights(kClients, 1.0 / kClients);
  const double z = 1.5;
  (*aggregation)->SetNoise(z * options.clip_norm, FreshNoiseKey());
  std::vector<double> out(kDim);
  auto report = (*aggregation)->Run(clients, weights, [&](int64_t begin, const double* values, int64_t n) {
    std::copy(values, values + n, out.begin() + begin);
  });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_DOUBLE_EQ(report->noise_stddev, z * options.clip_norm / kClients);
  const double clipped = options.clip_norm / std::sqrt(static_cast<double>(kDim));  // each coordinate after clipping
  double sum_sq = 0;
  for (double v : out) sum_sq += (v - clipped) * (v - clipped);
  EXPECT_NEAR(std::sqrt(sum_sq / kDim), z * options.clip_norm / kClients, 0.01 * z * options.clip_norm / kClients);
  for (double s : report->clip_scales) EXPECT_LT(s, 1.0);

  // The noise was for that run only.
  auto second = (*aggregation)->Run(clients, weights, [&](int64_t begin, const double* values, int64_t n) {
    for (int64_t j = 0; j < n; ++j) ASSERT_NEAR(values[j], clipped, 1e-9) << begin + j;
  });
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->noise_stddev, 0.0);
}

}  // namespace
}  // namespace tributary
