// Convergence smoke test: a non-IID federated least-squares problem with d = 1e4
// and 10 clients, T = 10 local minibatch SGD steps per round. Ferret (K = d/20, unbiased scaling, slr = 1)
// must reach FedAvg's final loss within 10% in at most 3x FedAvg's rounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "federation/ferret_method.h"
#include "peft/ferret.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

constexpr int kDim = 10'000;
constexpr int kClients = 10;
constexpr int kRank = 200;  // rows live in a 200-dim subspace: low effective rank, as in LLM fine-tuning
constexpr int kRowsPerClient = 500;
constexpr int kLocalSteps = 10;
constexpr int kBatch = 20;
// Calibrated once, then frozen: FedAvg's loss falls 16.0 -> 0.10 in 10 rounds (still falling ~25% a
// round); Ferret with K = d/20 reached 1.1x that at round 11 when calibrated.
constexpr double kLocalLr = 0.4;
constexpr int kFedAvgRounds = 10;

// Row j of client c is a_j = U z_j with U (d x kRank, N(0, 1/d) entries) shared by all clients, so
// a_j . x = z_j . (U^T x). Clients differ in which factors of z they excite, in the mean of z and in a
// label bias (non-IID).
struct Problem {
  std::vector<double> u;                    // row-major d x kRank
  std::vector<std::vector<double>> z;       // per client: kRowsPerClient x kRank
  std::vector<std::vector<double>> target;  // per client: kRowsPerClient
};

Problem MakeProblem() {
  std::mt19937_64 rng(2026);
  std::normal_distribution<double> normal(0.0, 1.0);
  Problem p;
  p.u.resize(static_cast<size_t>(kDim) * kRank);
  for (double& v : p.u) v = normal(rng) / std::sqrt(static_cast<double>(kDim));
  std::vector<double> theta(kRank);
  for (double& v : theta) v = normal(rng);
  const double z_scale = std::sqrt(50.0 / kRank);  // keeps ||z|| and so the step-size bound fixed
  for (int c = 0; c < kClients; ++c) {
    std::vector<double> shift(kRank);
    for (double& v : shift) v = 0.1 * normal(rng);
    const double bias = 0.3 * normal(rng);
    std::vector<double> z(static_cast<size_t>(kRowsPerClient) * kRank), b(kRowsPerClient);
    for (int j = 0; j < kRowsPerClient; ++j) {
      double dot = 0;
      for (int r = 0; r < kRank; ++r) {
        const double sd = r % kClients == c ? 2.0 : 0.5;
        const double zr = z_scale * (shift[static_cast<size_t>(r)] + sd * normal(rng));
        z[static_cast<size_t>(j) * kRank + r] = zr;
        dot += zr * theta[static_cast<size_t>(r)];
      }
      b[static_cast<size_t>(j)] = dot + bias + 0.1 * normal(rng);
    }
    p.z.push_back(std::move(z));
    p.target.push_back(std::move(b));
  }
  return p;
}

// U^T x.
std::vector<double> Project(const Problem& p, const float* x) {
  std::vector<double> out(kRank, 0.0);
  for (int i = 0; i < kDim; ++i) {
    for (int r = 0; r < kRank; ++r) out[static_cast<size_t>(r)] += p.u[static_cast<size_t>(i) * kRank + r] * x[i];
  }
  return out;
}

double Residual(const Problem& p, int c, int j, const std::vector<double>& ux) {
  double s = -p.target[static_cast<size_t>(c)][static_cast<size_t>(j)];
  for (int r = 0; r < kRank; ++r)
    s += p.z[static_cast<size_t>(c)][static_cast<size_t>(j) * kRank + r] * ux[static_cast<size_t>(r)];
  return s;
}

// Global objective: mean over all rows of 0.5 (a.x - b)^2.
double Loss(const Problem& p, const float* x) {
  const std::vector<double> ux = Project(p, x);
  double s = 0;
  for (int c = 0; c < kClients; ++c) {
    for (int j = 0; j < kRowsPerClient; ++j) {
      const double e = Residual(p, c, j, ux);
      s += 0.5 * e * e;
    }
  }
  return s / (kClients * kRowsPerClient);
}

// T minibatch SGD steps of client c from x (in place). The iterate stays x0 - lr U g with g in the
// factor space, so U^T x is tracked through U^T U instead of touching all d coordinates per step.
void LocalSgd(const Problem& p, int c, float* x, uint64_t seed) {
  static const std::vector<double> gram = [&p] {
    std::vector<double> g(static_cast<size_t>(kRank) * kRank, 0.0);
    for (int i = 0; i < kDim; ++i) {
      for (int r = 0; r < kRank; ++r) {
        for (int q = 0; q < kRank; ++q) {
          g[static_cast<size_t>(r) * kRank + q] +=
              p.u[static_cast<size_t>(i) * kRank + r] * p.u[static_cast<size_t>(i) * kRank + q];
        }
      }
    }
    return g;
  }();
  std::mt19937_64 rng(seed);
  std::vector<double> ux = Project(p, x);
  std::vector<double> total(kRank, 0.0);  // sum over steps of lr * gradient in factor space
  for (int t = 0; t < kLocalSteps; ++t) {
    std::vector<double> g(kRank, 0.0);
    for (int b = 0; b < kBatch; ++b) {
      const int j = static_cast<int>(rng() % kRowsPerClient);
      const double e = Residual(p, c, j, ux);
      for (int r = 0; r < kRank; ++r)
        g[static_cast<size_t>(r)] += e * p.z[static_cast<size_t>(c)][static_cast<size_t>(j) * kRank + r] / kBatch;
    }
    for (int r = 0; r < kRank; ++r) {
      total[static_cast<size_t>(r)] += kLocalLr * g[static_cast<size_t>(r)];
      for (int q = 0; q < kRank; ++q)
        ux[static_cast<size_t>(q)] -= kLocalLr * gram[static_cast<size_t>(q) * kRank + r] * g[static_cast<size_t>(r)];
    }
  }
  for (int i = 0; i < kDim; ++i) {
    double step = 0;
    for (int r = 0; r < kRank; ++r) step += p.u[static_cast<size_t>(i) * kRank + r] * total[static_cast<size_t>(r)];
    x[i] = static_cast<float>(x[i] - step);
  }
}

uint64_t StepSeed(int round, int client) {
  return static_cast<uint64_t>(round) * 1000 + static_cast<uint64_t>(client);
}

TEST(ConvergenceTest, FerretReachesFedAvgLossWithinThreeTimesTheRounds) {
  const Problem problem = MakeProblem();
  auto table = ferret_test::MakeTable({kDim});
  Arena start(table);  // x = 0
  const double initial = Loss(problem, start.data());

  // FedAvg: x -= fp32(mean of the clients' Delta).
  Arena fedavg(table);
  for (int round = 1; round <= kFedAvgRounds; ++round) {
    std::vector<double> mean(kDim, 0.0);
    for (int c = 0; c < kClients; ++c) {
      Arena local(table);
      local.CopyFrom(fedavg);
      LocalSgd(problem, c, local.data(), StepSeed(round, c));
      for (int i = 0; i < kDim; ++i) mean[static_cast<size_t>(i)] += (fedavg.data()[i] - local.data()[i]) / kClients;
    }
    for (int i = 0; i < kDim; ++i) fedavg.data()[i] -= static_cast<float>(mean[static_cast<size_t>(i)]);
  }
  const double fedavg_final = Loss(problem, fedavg.data());
  ASSERT_LT(fedavg_final, 0.2 * initial) << "the problem must not be trivial for FedAvg";

  FerretOptions o;
  o.K = kDim / 20;
  o.scaling = Scaling::kUnbiased;
  o.server_lr = 1.0;
  o.job_seed = 99;
  auto blocks = MakeFerretBlocks(o, *table);
  ASSERT_TRUE(blocks.ok());
  const int L = static_cast<int>(blocks->size());
  Arena ferret(table);
  int reached = -1;
  double loss = initial;
  for (int round = 1; round <= 3 * kFedAvgRounds; ++round) {
    std::vector<Payload> ups;
    for (int c = 0; c < kClients; ++c) {
      Arena local(table);
      local.CopyFrom(ferret);
      LocalSgd(problem, c, local.data(), StepSeed(round, c));
      auto up = ProjectUpdate(o, *blocks, ferret, local, static_cast<uint32_t>(round));
      ASSERT_TRUE(up.ok());
      ups.push_back(std::move(up->payload));
    }
    std::vector<ClientCoefficients> in;
    for (int c = 0; c < kClients; ++c)
      in.push_back({static_cast<uint64_t>(c), kRowsPerClient, &ups[static_cast<size_t>(c)]});
    auto mean = Aggregation::Create({}).value();
    auto agg =
        AggregateCoefficients(in, AggregationWeights::kEqual, *mean, static_cast<uint32_t>(round), L, o.wire_dtype);
    ASSERT_TRUE(agg.ok());
    ASSERT_TRUE(ApplyAggregate(o, *blocks, *agg, o.server_lr, ferret).ok());
    loss = Loss(problem, ferret.data());
    if (loss <= 1.1 * fedavg_final) {
      reached = round;
      break;
    }
  }
  std::printf("initial loss %.4f, FedAvg after %d rounds %.4f, Ferret reached it within 10%% at round %d (loss %.4f)\n",
              initial, kFedAvgRounds, fedavg_final, reached, loss);
  EXPECT_GT(reached, 0) << "Ferret did not reach 1.1 x FedAvg's loss in " << 3 * kFedAvgRounds << " rounds";
}

}  // namespace
}  // namespace tributary
