// Secure aggregation of a job's uploads (federation/secagg_job.h) end to end in-process: each method's
// payloads become weighted quantized vectors, go through the SecAgg+ clients and server with a dropout,
// and the unmasked sum becomes an aggregate that applies like the plain round's weighted mean of the
// survivors' uploads (within the quantization error); clip_norm is applied by the clients as the
// coordinator applies it in a plain round; a client lying about its weight is caught.
#include "federation/secagg_job.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "federation/job_spec.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

using ferret_test::MakeTable;

JobSpec SpecFor(const std::string& mode, double clip_norm = 0) {
  JobSpec spec;
  spec.mode = mode;
  spec.seed = 3;
  spec.server_lr = 0.5;
  spec.ferret.K = 8;
  spec.aggregation.clip_norm = clip_norm;
  spec.secure_aggregation.enabled = true;
  spec.secure_aggregation.clip = mode == "ferret" ? 10.0 : 1.0;  // coefficients are larger than delta elements
  return spec;
}

void Step(const Arena& w_old, Arena* w_new, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  w_new->CopyFrom(w_old);
  for (size_t t = 0; t < w_new->table().size(); ++t)
    for (float& x : w_new->span(t)) x -= normal(rng);
}

struct Client {
  std::string worker;
  uint64_t samples;
  std::vector<uint8_t> payload;
};

// The full SecAgg+ exchange over `clients` (ids 1..n); client `drop` (0: none) stops after sharing keys.
// Returns the aggregate, or the error of SecAggAggregateFromSum.
Result<std::vector<uint8_t>> SecureRound(const JobSpec& spec, const FederatedMethod& method, const Arena& global,
                                         const std::vector<Client>& clients, uint32_t drop, double lie = 1.0,
                                         double sum_noise = 0.0) {
  const uint32_t n = static_cast<uint32_t>(clients.size());
  TRIB_ASSIGN_OR_RETURN(SecAggConfig config,
                        SecAggRoundConfig(spec.secure_aggregation, method.SecAggDim(), n, NewSecAggSession()));
  std::vector<uint32_t> ids;
  for (uint32_t i = 1; i <= n; ++i) ids.push_back(i);
  TRIB_ASSIGN_OR_RETURN(SecAggServer server, SecAggServer::Create(config, ids));
  std::vector<SecAggClient> sa;
  for (uint32_t id : ids) {
    TRIB_ASSIGN_OR_RETURN(SecAggClient c, SecAggClient::Create(config, id));
    TRIB_RETURN_IF_ERROR(server.ReceiveAdvertiseKeys(id, c.AdvertiseKeys()));
    sa.push_back(std::move(c));
  }
  uint64_t unit = 0;
  for (const Client& c : clients) unit = std::max(unit, c.samples);
  TRIB_ASSIGN_OR_RETURN(auto directories, server.CloseAdvertiseKeys());
  for (uint32_t id : ids) {
    TRIB_ASSIGN_OR_RETURN(ShareKeysMsg shares, sa[id - 1].ShareKeys(directories.at(id)));
    TRIB_RETURN_IF_ERROR(server.ReceiveShareKeys(id, shares));
  }
  TRIB_ASSIGN_OR_RETURN(auto forwarded, server.CloseShareKeys());
  double expected_weight = 0;
  for (uint32_t id : ids) {
    if (id == drop) continue;
    const Client& c = clients[id - 1];
    SecAggRoundParams params{config, id, n, spec.secure_aggregation.clip, spec.secure_aggregation.rounding};
    const double weight = SecAggClientWeight(spec.aggregation_weights, c.samples, unit);
    expected_weight += weight;
    TRIB_ASSIGN_OR_RETURN(
        SecAggClientInput input,
        MakeSecAggInput(method, c.payload, global, 1, spec.aggregation.clip_norm, weight * lie, params, 7));
    EXPECT_EQ(input.clipped_coordinates, 0) << "raise secure_aggregation.clip";
    TRIB_ASSIGN_OR_RETURN(MaskedInputMsg masked, sa[id - 1].MaskInput(forwarded.at(id), input.quantized));
    TRIB_RETURN_IF_ERROR(server.ReceiveMaskedInput(id, masked));
  }
  TRIB_ASSIGN_OR_RETURN(auto requests, server.CloseMaskedInput());
  for (const auto& [id, request] : requests) {
    TRIB_ASSIGN_OR_RETURN(UnmaskResponseMsg response, sa[id - 1].Unmask(request));
    TRIB_RETURN_IF_ERROR(server.ReceiveUnmaskResponse(id, response));
  }
  TRIB_ASSIGN_OR_RETURN(SecAggResult result, server.Finish());
  return SecAggAggregateFromSum(method, result.sum, static_cast<uint32_t>(result.included.size()), n,
                                spec.secure_aggregation.clip, expected_weight, global, 1, sum_noise);
}

// Applies the plain weighted mean of `survivors` and the secure round's aggregate to copies of `global`;
// returns the largest difference of the two states.
double SecureMinusPlain(const JobSpec& spec, const std::vector<Client>& clients, uint32_t drop) {
  auto table = MakeTable({300, 64, 130});
  Arena global(table);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  for (size_t t = 0; t < table->size(); ++t)
    for (float& x : global.span(t)) x = normal(rng);
  auto method = CreateMethod(spec, table);
  EXPECT_TRUE(method.ok()) << method.status().ToString();
  std::vector<Client> filled = clients;
  std::vector<ClientPayload> survivors;
  for (size_t i = 0; i < filled.size(); ++i) {
    Arena w_new(table);
    Step(global, &w_new, static_cast<uint32_t>(i + 1), 0.02f);
    auto payload = (*method)->EncodeUpdate(global, w_new, 1);
    EXPECT_TRUE(payload.ok());
    filled[i].payload = *payload;
  }
  for (size_t i = 0; i < filled.size(); ++i)
    if (i + 1 != drop) survivors.push_back({filled[i].worker, filled[i].samples, filled[i].payload});
  auto aggregation = Aggregation::Create(spec.aggregation);
  auto plain = (*method)->Aggregate(survivors, spec.aggregation_weights, **aggregation, global, 1);
  EXPECT_TRUE(plain.ok()) << plain.status().ToString();
  auto secure = SecureRound(spec, **method, global, filled, drop);
  EXPECT_TRUE(secure.ok()) << secure.status().ToString();
  if (!plain.ok() || !secure.ok()) return 1e9;
  Arena a(table), b(table);
  a.CopyFrom(global);
  b.CopyFrom(global);
  EXPECT_TRUE((*method)->Apply(plain->bytes, 1, &a).ok());
  EXPECT_TRUE((*method)->Apply(*secure, 1, &b).ok());
  double diff = 0;
  for (int64_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(double{a.data()[i]} - b.data()[i]));
  return diff;
}

const std::vector<Client> kClients = {{"w1", 30, {}}, {"w2", 10, {}}, {"w3", 25, {}}, {"w4", 17, {}}};

TEST(SecAggJobTest, EveryMethodCommitsTheWeightedMeanOfTheSurvivorsWithinQuantization) {
  for (const char* mode : {"ferret", "fedavg", "lora"}) {
    SCOPED_TRACE(mode);
    // One quantization step is 2 clip / floor(2^32 / 4) ~ 1.9e-9; a coordinate's mean is off by a few.
    EXPECT_LT(SecureMinusPlain(SpecFor(mode), kClients, 0), 1e-6);
    EXPECT_LT(SecureMinusPlain(SpecFor(mode), kClients, 3), 1e-6);  // w3 drops after sharing keys
  }
  JobSpec equal = SpecFor("fedavg");
  equal.aggregation_weights = AggregationWeights::kEqual;
  EXPECT_LT(SecureMinusPlain(equal, kClients, 2), 1e-6);
}

TEST(SecAggJobTest, ClientsClipTheirUpdatesAsTheCoordinatorClipsAPlainRound) {
  // Each delta has norm ~0.02 sqrt(494) ~ 0.44: clip_norm 0.1 scales every client down.
  EXPECT_LT(SecureMinusPlain(SpecFor("fedavg", 0.1), kClients, 0), 1e-6);
  EXPECT_LT(SecureMinusPlain(SpecFor("lora", 0.1), kClients, 1), 1e-6);
}

TEST(SecAggJobTest, AClientWhoseWeightDisagreesWithItsDeclarationFailsTheSum) {
  const JobSpec spec = SpecFor("fedavg");
  auto table = MakeTable({50});
  Arena global(table);
  auto method = CreateMethod(spec, table);
  ASSERT_TRUE(method.ok());
  std::vector<Client> clients = kClients;
  for (Client& c : clients) c.payload.assign(static_cast<size_t>((*method)->SecAggDim()) * sizeof(float), 0);
  auto secure = SecureRound(spec, **method, global, clients, 0, /*lie=*/0.5);
  ASSERT_FALSE(secure.ok());
  EXPECT_NE(secure.status().message().find("a client weighted its vector with another weight than it declared"),
            std::string::npos)
      << secure.status().message();
}

// Central DP with secure aggregation: the coordinator adds N(0, sigma^2) to the unmasked sum, i.e.
// sigma / n on the committed mean, and nothing else changes.
TEST(SecAggJobTest, CentralNoiseGoesOnTheUnmaskedSum) {
  JobSpec spec = SpecFor("fedavg");
  spec.aggregation_weights = AggregationWeights::kEqual;
  auto table = MakeTable({4000});
  Arena global(table);
  auto method = CreateMethod(spec, table);
  ASSERT_TRUE(method.ok());
  std::vector<Client> clients = kClients;
  for (size_t i = 0; i < clients.size(); ++i) {
    std::vector<float> delta(static_cast<size_t>((*method)->SecAggDim()), 0.01f * static_cast<float>(i + 1));
    clients[i].payload.resize(delta.size() * sizeof(float));
    std::memcpy(clients[i].payload.data(), delta.data(), clients[i].payload.size());
  }
  auto plain = SecureRound(spec, **method, global, clients, 0);
  constexpr double kSigma = 0.4;
  auto noised = SecureRound(spec, **method, global, clients, 0, 1.0, kSigma);
  ASSERT_TRUE(plain.ok() && noised.ok()) << noised.status().ToString();
  ASSERT_EQ(plain->size(), noised->size());
  const size_t n = plain->size() / sizeof(float);
  std::vector<float> a(n), b(n);
  std::memcpy(a.data(), plain->data(), plain->size());
  std::memcpy(b.data(), noised->data(), noised->size());
  double sum_sq = 0;
  for (size_t i = 0; i < n; ++i) sum_sq += (double{b[i]} - a[i]) * (double{b[i]} - a[i]);
  EXPECT_NEAR(std::sqrt(sum_sq / n), kSigma / clients.size(), 0.05 * kSigma / clients.size());
}

TEST(SecAggJobTest, RoundConfigUsesTheDefaultThresholdAndRefusesOneThatDoesNotFit) {
  SecureAggregationOptions options;
  options.clip = 1;
  auto config = SecAggRoundConfig(options, 10, 5, 1);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->dim, 11);
  EXPECT_EQ(config->threshold, 4u);  // ceil(2 * 5 / 3)
  options.threshold = 6;
  EXPECT_NE(SecAggRoundConfig(options, 10, 5, 1).status().message().find("secure_aggregation.threshold"),
            std::string::npos);
  EXPECT_EQ(SecAggThreshold(SecureAggregationOptions{}, 1), 2u);
}

}  // namespace
}  // namespace tributary
