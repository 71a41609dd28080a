// Secure aggregation with real libsodium: quantization, Shamir sharing, masks and boxes, the graph, and
// whole rounds simulated in process (every message through its bytes): exact sums with all pairs and
// k-regular graphs, dropouts at every stage, what the server sees of one client, the safety rule,
// malformed messages and bad shares, too few survivors, and a dense-size vector with stage timings.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "federation/secagg.h"
#include "federation/secagg_crypto.h"
#include "federation/secagg_messages.h"
#include "federation/secagg_quantize.h"
#include "federation/shamir.h"

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

bool Contains(const Status& status, const std::string& text) {
  return status.message().find(text) != std::string::npos;
}

#define EXPECT_ERROR_HAS(expr, text)                                            \
  do {                                                                          \
    const ::tributary::Status _s = (expr);                                      \
    EXPECT_FALSE(_s.ok()) << "expected an error containing '" << (text) << "'"; \
    EXPECT_TRUE(Contains(_s, text)) << _s.ToString();                           \
  } while (0)

// ---------------------------------------------------------------------------------------------------
// A round played in process: n clients with ids 1..n and the server, every message serialized and
// parsed. Each stage runs for the clients still in it, minus the ones told to drop out there.

const char* kStageNames[4] = {"advertise keys", "share keys", "masked input", "unmasking"};

struct StageTimes {
  double client_total[4] = {};  // seconds, all clients of the stage together
  double client_max[4] = {};    // the slowest client
  double server[4] = {};        // receiving every message and closing the stage
};

class Sim {
 public:
  Sim(const SecAggConfig& config, uint32_t n) : config_(config) {
    std::vector<uint32_t> ids;
    for (uint32_t id = 1; id <= n; ++id) {
      ids.push_back(id);
      auto client = SecAggClient::Create(config, id);
      EXPECT_TRUE(client.ok()) << client.status().ToString();
      clients_.emplace(id, std::move(*client));
    }
    auto server = SecAggServer::Create(config, ids);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_.emplace(std::move(*server));
  }

  SecAggServer& server() { return *server_; }
  SecAggClient& client(uint32_t id) { return clients_.at(id); }

  Status Advertise(const std::set<uint32_t>& drop = {}) {
    const auto t0 = Clock::now();
    for (auto& [id, client] : clients_) {
      if (drop.count(id)) continue;
      const auto c0 = Clock::now();
      std::vector<uint8_t> bytes = client.AdvertiseKeys().Serialize();
      ClientTime(0, c0);
      TRIB_RETURN_IF_ERROR(server_->ReceiveAdvertiseKeys(id, bytes));
    }
    TRIB_ASSIGN_OR_RETURN(auto dirs, server_->CloseAdvertiseKeys());
    directories_.clear();
    for (auto& [id, dir] : dirs) directories_[id] = dir.Serialize();
    times.server[0] = Seconds(t0) - times.client_total[0];
    return Status::OK();
  }

  Status ShareKeys(const std::set<uint32_t>& drop = {}) {
    const auto t0 = Clock::now();
    for (auto& [id, bytes] : directories_) {
      if (drop.count(id)) continue;
      const auto c0 = Clock::now();
      TRIB_ASSIGN_OR_RETURN(KeyDirectoryMsg dir, KeyDirectoryMsg::Parse(bytes));
      Result<ShareKeysMsg> msg = clients_.at(id).ShareKeys(dir);
      if (!msg.ok()) return msg.status();
      std::vector<uint8_t> out = msg->Serialize();
      ClientTime(1, c0);
      TRIB_RETURN_IF_ERROR(server_->ReceiveShareKeys(id, out));
    }
    TRIB_ASSIGN_OR_RETURN(auto fwd, server_->CloseShareKeys());
    forwarded_.clear();
    for (auto& [id, msg] : fwd) forwarded_[id] = msg.Serialize();
    times.server[1] = Seconds(t0) - times.client_total[1];
    return Status::OK();
  }

  // inputs[id] is client id's quantized vector.
  Status Mask(const std::map<uint32_t, std::vector<uint32_t>>& inputs, const std::set<uint32_t>& drop = {}) {
    const auto t0 = Clock::now();
    for (auto& [id, bytes] : forwarded_) {
      if (drop.count(id)) continue;
      const auto c0 = Clock::now();
      TRIB_ASSIGN_OR_RETURN(ForwardedSharesMsg fwd, ForwardedSharesMsg::Parse(bytes));
      if (on_forwarded) on_forwarded(id, fwd);
      Result<MaskedInputMsg> msg = clients_.at(id).MaskInput(fwd, inputs.at(id));
      if (!msg.ok()) return msg.status();
      std::vector<uint8_t> out = msg->Serialize();
      ClientTime(2, c0);
      masked_bytes[id] = out;
      TRIB_RETURN_IF_ERROR(server_->ReceiveMaskedInput(id, out));
    }
    TRIB_ASSIGN_OR_RETURN(auto reqs, server_->CloseMaskedInput());
    requests_.clear();
    for (auto& [id, msg] : reqs) requests_[id] = msg.Serialize();
    times.server[2] = Seconds(t0) - times.client_total[2];
    return Status::OK();
  }

  Status Unmask(const std::set<uint32_t>& drop = {}) {
    const auto t0 = Clock::now();
    for (auto& [id, bytes] : requests_) {
      if (drop.count(id)) continue;
      const auto c0 = Clock::now();
      TRIB_ASSIGN_OR_RETURN(UnmaskRequestMsg req, UnmaskRequestMsg::Parse(bytes));
      Result<UnmaskResponseMsg> msg = clients_.at(id).Unmask(req);
      if (!msg.ok()) return msg.status();
      if (on_unmask_response) on_unmask_response(id, *msg);
      std::vector<uint8_t> out = msg->Serialize();
      ClientTime(3, c0);
      Status received = server_->ReceiveUnmaskResponse(id, out);
      if (!received.ok()) {
        rejected_responses.push_back(received);  // a rejected message is as if it never came
        continue;
      }
    }
    times.server[3] = Seconds(t0) - times.client_total[3];
    return Status::OK();
  }

  Result<SecAggResult> Finish() {
    const auto t0 = Clock::now();
    Result<SecAggResult> result = server_->Finish();
    times.server[3] += Seconds(t0);
    return result;
  }

  // Every stage; drops[s] drop out at stage s (0 advertise .. 3 unmask).
  Result<SecAggResult> Run(const std::map<uint32_t, std::vector<uint32_t>>& inputs,
                           const std::array<std::set<uint32_t>, 4>& drops = {}) {
    TRIB_RETURN_IF_ERROR(Advertise(drops[0]));
    TRIB_RETURN_IF_ERROR(ShareKeys(drops[1]));
    TRIB_RETURN_IF_ERROR(Mask(inputs, drops[2]));
    TRIB_RETURN_IF_ERROR(Unmask(drops[3]));
    return Finish();
  }

  void PrintTimes(const char* title) const {
    std::printf("%s\n", title);
    for (int s = 0; s < 4; ++s)
      std::printf("  %-15s clients %8.3f s total, %8.3f s slowest; server %8.3f s%s\n", kStageNames[s],
                  times.client_total[s], times.client_max[s], times.server[s], s == 3 ? " (incl. Finish)" : "");
  }

  std::function<void(uint32_t, ForwardedSharesMsg&)> on_forwarded;
  std::function<void(uint32_t, UnmaskResponseMsg&)> on_unmask_response;
  std::map<uint32_t, std::vector<uint8_t>> masked_bytes;  // what the server received in stage 3
  std::vector<Status> rejected_responses;
  StageTimes times;

 private:
  void ClientTime(int stage, Clock::time_point c0) {
    const double s = Seconds(c0);
    times.client_total[stage] += s;
    times.client_max[stage] = std::max(times.client_max[stage], s);
  }

  SecAggConfig config_;
  std::map<uint32_t, SecAggClient> clients_;
  std::optional<SecAggServer> server_;
  std::map<uint32_t, std::vector<uint8_t>> directories_, forwarded_, requests_;
};

SecAggConfig Config(int64_t dim, uint32_t threshold, uint32_t neighbours = 0, uint64_t session = 42) {
  SecAggConfig c;
  c.session = session;
  c.dim = dim;
  c.threshold = threshold;
  c.neighbours = neighbours;
  return c;
}

// The smallest threshold a round of n clients with `neighbours` admits: a majority of the k + 1 shares.
uint32_t MinThreshold(uint32_t neighbours, uint32_t n) {
  return (SecAggDegree(neighbours, n) + 1) / 2 + 1;
}

// Quantized vectors of clients 1..n from random floats in [-1.5, 1.5] (clip 1, so some are clipped).
std::map<uint32_t, std::vector<uint32_t>> QuantizedInputs(uint32_t n, int64_t dim, uint32_t seed,
                                                          std::map<uint32_t, std::vector<float>>* floats = nullptr) {
  auto quantizer = SecAggQuantizer::Create({1.0, n});
  EXPECT_TRUE(quantizer.ok());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
  std::map<uint32_t, std::vector<uint32_t>> out;
  for (uint32_t id = 1; id <= n; ++id) {
    std::vector<float> x(static_cast<size_t>(dim));
    for (float& v : x) v = dist(rng);
    auto q = quantizer->Quantize(x, QuantizeRounding::kStochastic, id);
    EXPECT_TRUE(q.ok());
    out[id] = std::move(*q);
    if (floats) (*floats)[id] = std::move(x);
  }
  return out;
}

std::vector<uint32_t> PlainSum(const std::map<uint32_t, std::vector<uint32_t>>& inputs,
                               const std::vector<uint32_t>& ids) {
  std::vector<uint32_t> sum(inputs.begin()->second.size(), 0);
  for (uint32_t id : ids) {
    const std::vector<uint32_t>& x = inputs.at(id);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += x[i];
  }
  return sum;
}

std::vector<uint32_t> AllBut(uint32_t n, const std::set<uint32_t>& out) {
  std::vector<uint32_t> ids;
  for (uint32_t id = 1; id <= n; ++id) {
    if (!out.count(id)) ids.push_back(id);
  }
  return ids;
}

// Pearson's chi-square of the byte histogram against uniform (255 degrees of freedom: mean 255, sd 22.6).
double ByteChiSquare(const uint8_t* data, size_t n) {
  std::vector<double> counts(256, 0);
  for (size_t i = 0; i < n; ++i) counts[data[i]] += 1;
  const double expected = static_cast<double>(n) / 256;
  double chi = 0;
  for (double c : counts) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

// ---------------------------------------------------------------------------------------------------
// Quantization

TEST(SecAggQuantizeTest, ScaleComesFromClipAndClientsSoTheSumNeverWraps) {
  auto q = SecAggQuantizer::Create({2.0, 10});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->max_level(), 0xFFFFFFFFu / 10);
  EXPECT_DOUBLE_EQ(q->scale(), q->max_level() / 4.0);
  // Ten clients at the top of the range: the integer sum is 10 Q <= 2^32 - 1, exactly representable.
  std::vector<float> top(5, 7.0f);  // clipped to 2
  std::vector<uint32_t> sum(5, 0);
  for (int c = 0; c < 10; ++c) {
    auto x = q->Quantize(top, QuantizeRounding::kNearest, 0);
    ASSERT_TRUE(x.ok());
    EXPECT_EQ((*x)[0], q->max_level());
    for (size_t i = 0; i < 5; ++i) sum[i] += (*x)[i];
  }
  EXPECT_EQ(uint64_t{sum[0]}, uint64_t{10} * q->max_level());
  std::vector<double> back(5);
  ASSERT_TRUE(q->DequantizeSum(sum, 10, back).ok());
  for (double v : back) EXPECT_NEAR(v, 20.0, 1e-6);
  // Bottom of the range is 0.
  auto bottom = q->Quantize(std::vector<float>{-3.0f}, QuantizeRounding::kStochastic, 9);
  ASSERT_TRUE(bottom.ok());
  EXPECT_EQ((*bottom)[0], 0u);
}

TEST(SecAggQuantizeTest, RoundTripErrorIsBoundedByTheStep) {
  auto q = SecAggQuantizer::Create({1.0, 8});
  ASSERT_TRUE(q.ok());
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(10000);
  for (float& v : x) v = dist(rng);
  const double step = 1.0 / q->scale();
  for (QuantizeRounding r : {QuantizeRounding::kNearest, QuantizeRounding::kStochastic}) {
    auto levels = q->Quantize(x, r, 77);
    ASSERT_TRUE(levels.ok());
    std::vector<double> back(x.size());
    ASSERT_TRUE(q->DequantizeSum(*levels, 1, back).ok());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_LE(std::abs(back[i] - x[i]), (r == QuantizeRounding::kNearest ? 0.5 : 1.0) * step + 1e-12) << i;
  }
}

TEST(SecAggQuantizeTest, StochasticRoundingIsSeededAndUnbiased) {
  auto q = SecAggQuantizer::Create({1.0, 1u << 20});  // a coarse grid so rounding shows
  ASSERT_TRUE(q.ok());
  const double step = 1.0 / q->scale();
  // A value 30% of a step above a level.
  const float v = static_cast<float>(-1.0 + (100 + 0.3) * step);
  std::vector<float> x(200000, v);
  auto a = q->Quantize(x, QuantizeRounding::kStochastic, 5);
  auto b = q->Quantize(x, QuantizeRounding::kStochastic, 5);
  auto c = q->Quantize(x, QuantizeRounding::kStochastic, 6);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b) << "the same seed gives the same bytes (a redone client step)";
  EXPECT_NE(*a, *c);
  const double level = std::floor((static_cast<double>(v) + 1.0) * q->scale());
  double mean = 0;
  for (uint32_t l : *a) {
    ASSERT_TRUE(l == level || l == level + 1) << l;
    mean += l - level;
  }
  mean /= static_cast<double>(a->size());
  const double frac = (static_cast<double>(v) + 1.0) * q->scale() - level;
  EXPECT_NEAR(mean, frac, 0.005);  // sd of the mean ~0.001
  auto nearest = q->Quantize(x, QuantizeRounding::kNearest, 0);
  ASSERT_TRUE(nearest.ok());
  EXPECT_EQ((*nearest)[0], static_cast<uint32_t>(level));
}

TEST(SecAggQuantizeTest, RejectsBadParametersNonFiniteInputsAndSumsAboveTheBound) {
  EXPECT_ERROR_HAS(SecAggQuantizer::Create({0.0, 3}).status(), "clip");
  EXPECT_ERROR_HAS(SecAggQuantizer::Create({NAN, 3}).status(), "clip");
  EXPECT_ERROR_HAS(SecAggQuantizer::Create({1.0, 0}).status(), "max_clients 0");
  auto q = SecAggQuantizer::Create({1.0, 4});
  ASSERT_TRUE(q.ok());
  EXPECT_ERROR_HAS(q->Quantize(std::vector<float>{0.f, INFINITY}, QuantizeRounding::kNearest, 0).status(),
                   "coordinate 1 is not finite");
  std::vector<double> out(2);
  std::vector<uint32_t> sum = {0, 2 * q->max_level() + 1};
  EXPECT_ERROR_HAS(q->DequantizeSum(sum, 2, out), "coordinate 1 of the sum");
  EXPECT_ERROR_HAS(q->DequantizeSum(sum, 5, out), "5 clients summed");
  EXPECT_ERROR_HAS(q->DequantizeSum(sum, 0, out), "0 clients summed");
}

// ---------------------------------------------------------------------------------------------------
// Shamir

ShamirSecret RandomSecret(uint32_t seed) {
  std::mt19937 rng(seed);
  ShamirSecret s;
  for (uint8_t& b : s) b = static_cast<uint8_t>(rng());
  s[31] = 0xFF;  // the top half at its largest bytes too
  return s;
}

TEST(SecAggShamirTest, AnyThresholdSharesReconstructAndExtraSharesMustAgree) {
  const ShamirSecret secret = RandomSecret(1);
  const std::vector<uint32_t> xs = {3, 7, 8, 20, 21, 400};
  auto shares = ShamirSplit(secret, 4, xs);
  ASSERT_TRUE(shares.ok()) << shares.status().ToString();
  ASSERT_EQ(shares->size(), xs.size());
  // Every 4-subset, in any order.
  for (uint32_t mask = 0; mask < (1u << 6); ++mask) {
    if (__builtin_popcount(mask) != 4) continue;
    std::vector<ShamirShare> subset;
    for (int i = 5; i >= 0; --i) {
      if (mask & (1u << i)) subset.push_back((*shares)[static_cast<size_t>(i)]);
    }
    auto back = ShamirCombine(subset, 4);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, secret);
  }
  auto all = ShamirCombine(*shares, 4);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, secret);
  // Three shares are not enough; three shares plus a stranger's give garbage, refused.
  EXPECT_ERROR_HAS(ShamirCombine(std::span(*shares).first(3), 4).status(), "3 shares, threshold 4");
  std::vector<ShamirShare> tampered = *shares;
  tampered[5].y[3] ^= 1;
  EXPECT_ERROR_HAS(ShamirCombine(tampered, 4).status(), "share at x=400 is inconsistent");
  tampered = *shares;
  tampered[1].y[40] ^= 1;
  EXPECT_ERROR_HAS(ShamirCombine(tampered, 4).status(), "do not reconstruct a valid secret");
}

TEST(SecAggShamirTest, RecoverFindsOneBadShareWithASpareAndNamesIt) {
  const ShamirSecret secret = RandomSecret(2);
  auto shares = ShamirSplit(secret, 3, std::vector<uint32_t>{1, 2, 3, 4, 5});
  ASSERT_TRUE(shares.ok());
  auto verify = [&](const ShamirSecret& s) { return s == secret; };
  for (size_t bad = 0; bad < 5; ++bad) {
    std::vector<ShamirShare> tampered = *shares;
    tampered[bad].y[0] ^= 0x10;  // a small change: still two field elements
    auto rec = ShamirRecover(tampered, 3, verify);
    ASSERT_TRUE(rec.ok()) << bad << ": " << rec.status().ToString();
    EXPECT_EQ(rec->secret, secret);
    EXPECT_EQ(rec->bad_x, std::vector<uint32_t>{static_cast<uint32_t>(bad + 1)});
  }
  // No spare: the bad share cannot be told apart.
  std::vector<ShamirShare> three(shares->begin(), shares->begin() + 3);
  three[0].y[0] ^= 0x10;
  EXPECT_ERROR_HAS(ShamirRecover(three, 3, verify).status(), "no spare");
  // Two bad shares among the first threshold + 1.
  std::vector<ShamirShare> two = *shares;
  two[0].y[0] ^= 0x10;
  two[1].y[5] ^= 0x01;  // a different error: equal errors at x=1 and x=2 cancel in the basis {1, 2, 3}
  EXPECT_ERROR_HAS(ShamirRecover(two, 3, verify).status(), "more than one bad share");
}

TEST(SecAggShamirTest, RejectsBadParametersAndShares) {
  const ShamirSecret secret = RandomSecret(3);
  EXPECT_ERROR_HAS(ShamirSplit(secret, 0, std::vector<uint32_t>{1, 2}).status(), "threshold 0");
  EXPECT_ERROR_HAS(ShamirSplit(secret, 3, std::vector<uint32_t>{1, 2}).status(), "threshold 3 for 2 holders");
  EXPECT_ERROR_HAS(ShamirSplit(secret, 1, std::vector<uint32_t>{0, 2}).status(), "x=0");
  EXPECT_ERROR_HAS(ShamirSplit(secret, 1, std::vector<uint32_t>{2, 2}).status(), "two Shamir holders at x=2");
  auto shares = ShamirSplit(secret, 2, std::vector<uint32_t>{1, 2, 3});
  ASSERT_TRUE(shares.ok());
  std::vector<ShamirShare> dup = {(*shares)[0], (*shares)[0]};
  EXPECT_ERROR_HAS(ShamirCombine(dup, 2).status(), "two shares at x=1");
  std::vector<ShamirShare> big = *shares;
  big[2].y.fill(0xFF);  // not below L
  EXPECT_FALSE(ShamirShareValid(big[2].y));
  EXPECT_TRUE(ShamirShareValid((*shares)[0].y));
  EXPECT_ERROR_HAS(ShamirCombine(big, 2).status(), "share at x=3 is not two field elements");
}

// ---------------------------------------------------------------------------------------------------
// Key agreement, masks, boxes

TEST(SecAggCryptoTest, PairwiseSeedsAgreeAndMasksCancel) {
  auto a = GenerateSecAggKeyPair();
  auto b = GenerateSecAggKeyPair();
  auto c = GenerateSecAggKeyPair();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto ab = PairwiseMaskSeed(7, 1, *a, 2, b->public_key);
  auto ba = PairwiseMaskSeed(7, 2, *b, 1, a->public_key);
  auto ac = PairwiseMaskSeed(7, 1, *a, 3, c->public_key);
  auto ab_other_session = PairwiseMaskSeed(8, 1, *a, 2, b->public_key);
  ASSERT_TRUE(ab.ok() && ba.ok() && ac.ok() && ab_other_session.ok());
  EXPECT_EQ(*ab, *ba);
  EXPECT_NE(*ab, *ac);
  EXPECT_NE(*ab, *ab_other_session);
  std::vector<uint32_t> v(1000, 12345);
  ApplySecAggMask(*ab, MaskKind::kPairwise, false, v);
  EXPECT_NE(v[0], 12345u);
  ApplySecAggMask(*ba, MaskKind::kPairwise, true, v);
  EXPECT_EQ(v, std::vector<uint32_t>(1000, 12345));
  // The self mask of the same seed is a different stream; a prefix of a long mask is the short mask.
  std::vector<uint32_t> pair(70000, 0), self(70000, 0), prefix(100, 0);
  ApplySecAggMask(*ab, MaskKind::kPairwise, false, pair);
  ApplySecAggMask(*ab, MaskKind::kSelf, false, self);
  ApplySecAggMask(*ab, MaskKind::kPairwise, false, prefix);
  EXPECT_NE(pair, self);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), pair.begin()));
  // A low-order public key gives no shared secret.
  SecAggKey zero{};
  EXPECT_ERROR_HAS(PairwiseMaskSeed(7, 1, *a, 9, zero).status(), "client 9: mask public key is a low-order point");
}

TEST(SecAggCryptoTest, BoxesOpenOnlyForTheirRecipientAndUntampered) {
  auto sender = GenerateSecAggKeyPair();
  auto recipient = GenerateSecAggKeyPair();
  auto stranger = GenerateSecAggKeyPair();
  ASSERT_TRUE(sender.ok() && recipient.ok() && stranger.ok());
  const std::vector<uint8_t> plain = {1, 2, 3, 4, 5};
  auto box = SealSecAggBox(plain, recipient->public_key, sender->secret_key);
  ASSERT_TRUE(box.ok());
  EXPECT_EQ(box->size(), plain.size() + kSecAggBoxOverhead);
  auto opened = OpenSecAggBox(*box, sender->public_key, recipient->secret_key);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, plain);
  EXPECT_ERROR_HAS(OpenSecAggBox(*box, sender->public_key, stranger->secret_key).status(), "do not decrypt");
  EXPECT_ERROR_HAS(OpenSecAggBox(*box, stranger->public_key, recipient->secret_key).status(), "do not decrypt");
  std::vector<uint8_t> tampered = *box;
  tampered.back() ^= 1;
  EXPECT_ERROR_HAS(OpenSecAggBox(tampered, sender->public_key, recipient->secret_key).status(), "do not decrypt");
  EXPECT_ERROR_HAS(OpenSecAggBox(std::vector<uint8_t>(10), sender->public_key, recipient->secret_key).status(),
                   "10 bytes");
}

// ---------------------------------------------------------------------------------------------------
// Configuration and graph

TEST(SecAggGraphTest, AllPairsOrRegularRingWithValidatedThreshold) {
  const std::vector<uint32_t> ids = {2, 3, 5, 8, 13, 21, 34, 55, 89};  // n = 9
  auto all = BuildSecAggGraph(Config(4, 5, 0), ids);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->degree, 8u);
  EXPECT_EQ(all->Of(5), (std::vector<uint32_t>{2, 3, 8, 13, 21, 34, 55, 89}));
  for (uint32_t k : {2u, 3u, 4u, 6u}) {
    auto g = BuildSecAggGraph(Config(4, MinThreshold(k, 9), k), ids);
    ASSERT_TRUE(g.ok()) << k << ": " << g.status().ToString();
    EXPECT_EQ(g->degree, k == 3 ? 4u : k) << "odd k with odd n rounds up";
    for (uint32_t id : ids) {
      ASSERT_EQ(g->Of(id).size(), g->degree) << id;
      EXPECT_TRUE(std::is_sorted(g->Of(id).begin(), g->Of(id).end()));
      for (uint32_t v : g->Of(id)) {
        EXPECT_NE(v, id);
        EXPECT_TRUE(g->Adjacent(v, id)) << "symmetric";
      }
    }
  }
  // Odd k with an even n: the opposite client on the ring.
  auto odd = BuildSecAggGraph(Config(4, 3, 3), std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  ASSERT_TRUE(odd.ok()) << odd.status().ToString();
  for (uint32_t id = 1; id <= 8; ++id) EXPECT_EQ(odd->Of(id).size(), 3u);
  // The ring order depends on the session.
  auto g1 = BuildSecAggGraph(Config(4, 2, 2, 1), ids);
  auto g2 = BuildSecAggGraph(Config(4, 2, 2, 2), ids);
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_NE(g1->neighbours, g2->neighbours);
  // Thresholds outside ((k + 1) / 2, k + 1].
  EXPECT_ERROR_HAS(BuildSecAggGraph(Config(4, 2, 4), ids).status(), "threshold 2 for 5 shares");
  EXPECT_ERROR_HAS(BuildSecAggGraph(Config(4, 6, 4), ids).status(), "expected 3 to 5");
  EXPECT_ERROR_HAS(ValidateSecAggConfig(Config(0, 2), 3), "dim 0");
  EXPECT_ERROR_HAS(ValidateSecAggConfig(Config(4, 2), 1), "1 clients");
  EXPECT_ERROR_HAS(BuildSecAggGraph(Config(4, 2), std::vector<uint32_t>{1, 1, 2}).status(), "not strictly ascending");
}

// ---------------------------------------------------------------------------------------------------
// Whole rounds

TEST(SecAggRoundTest, MaskedSumEqualsThePlainSumExactlyWithAllPairsAndRegularGraphs) {
  const int64_t dim = 200 * 194;  // Ferret: K L coefficients
  for (uint32_t n = 5; n <= 10; ++n) {
    const auto inputs = QuantizedInputs(n, dim, n);
    const std::vector<uint32_t> expected = PlainSum(inputs, AllBut(n, {}));
    for (uint32_t k : {0u, 2u, 4u}) {
      if (k >= n - 1 && k != 0) continue;
      SCOPED_TRACE("n=" + std::to_string(n) + " k=" + std::to_string(k));
      Sim sim(Config(dim, MinThreshold(k, n), k, 1000 + n), n);
      auto result = sim.Run(inputs);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      EXPECT_EQ(result->included, AllBut(n, {}));
      EXPECT_TRUE(result->dropped.empty());
      EXPECT_TRUE(result->rejected_shares.empty());
      ASSERT_EQ(result->sum, expected);
    }
  }
}

TEST(SecAggRoundTest, DequantizedSumMatchesTheFloatSum) {
  const uint32_t n = 6;
  const int64_t dim = 5000;
  std::map<uint32_t, std::vector<float>> floats;
  const auto inputs = QuantizedInputs(n, dim, 9, &floats);
  Sim sim(Config(dim, 4), n);
  auto result = sim.Run(inputs);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  auto q = SecAggQuantizer::Create({1.0, n});
  ASSERT_TRUE(q.ok());
  std::vector<double> sum(dim);
  ASSERT_TRUE(q->DequantizeSum(result->sum, n, sum).ok());
  for (int64_t i = 0; i < dim; ++i) {
    double plain = 0;
    for (const auto& [id, x] : floats) plain += std::clamp(static_cast<double>(x[static_cast<size_t>(i)]), -1.0, 1.0);
    ASSERT_NEAR(sum[static_cast<size_t>(i)], plain, n / q->scale()) << i;
  }
}

TEST(SecAggRoundTest, DropoutsAfterMaskingGiveTheExactSumOfTheSurvivors) {
  const int64_t dim = 3000;
  struct Case {
    uint32_t n, k;
    std::set<uint32_t> drop;
  };
  for (const Case& c : {Case{5, 0, {3}}, Case{5, 0, {1, 5}}, Case{8, 0, {2, 7}}, Case{10, 4, {4}}, Case{10, 4, {1, 2}},
                        Case{9, 2, {6}}}) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) + " dropped " +
                 SecAggIdList(std::vector<uint32_t>(c.drop.begin(), c.drop.end())));
    const auto inputs = QuantizedInputs(c.n, dim, c.n * 31);
    Sim sim(Config(dim, MinThreshold(c.k, c.n), c.k), c.n);
    // Shared keys, then sent no masked input: their masks are removed with their reconstructed keys.
    auto result = sim.Run(inputs, {{{}, {}, c.drop, {}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    const std::vector<uint32_t> survivors = AllBut(c.n, c.drop);
    EXPECT_EQ(result->included, survivors);
    EXPECT_EQ(result->dropped, std::vector<uint32_t>(c.drop.begin(), c.drop.end()));
    ASSERT_EQ(result->sum, PlainSum(inputs, survivors));
  }
}

TEST(SecAggRoundTest, DropoutsAtOtherStagesStillFinish) {
  const uint32_t n = 7;
  const int64_t dim = 1000;
  const auto inputs = QuantizedInputs(n, dim, 4);
  {
    // Advertised keys, then nothing: not in the graph's masks at all.
    Sim sim(Config(dim, 4), n);
    auto result = sim.Run(inputs, {{{}, {2}, {}, {}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->included, AllBut(n, {2}));
    EXPECT_TRUE(result->dropped.empty());
    EXPECT_EQ(result->sum, PlainSum(inputs, AllBut(n, {2})));
  }
  {
    // Never advertised: the round runs over the other six.
    Sim sim(Config(dim, 4), n);
    auto result = sim.Run(inputs, {{{7}, {}, {}, {}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->sum, PlainSum(inputs, AllBut(n, {7})));
  }
  {
    // Sent its masked input, then went silent in unmasking: its input counts, the others unmask it.
    Sim sim(Config(dim, 4), n);
    auto result = sim.Run(inputs, {{{}, {}, {1}, {3, 6}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->included, AllBut(n, {1}));
    EXPECT_EQ(result->sum, PlainSum(inputs, AllBut(n, {1})));
  }
}

TEST(SecAggRoundTest, FewerThanThresholdSurvivorsFailTheRoundClearly) {
  const uint32_t n = 5;
  const int64_t dim = 100;
  const auto inputs = QuantizedInputs(n, dim, 5);
  {
    Sim sim(Config(dim, 3), n);
    ASSERT_TRUE(sim.Advertise().ok());
    ASSERT_TRUE(sim.ShareKeys().ok());
    const Status masked = sim.Mask(inputs, {1, 2, 4});
    EXPECT_EQ(masked.code(), StatusCode::kFailedPrecondition);
    EXPECT_TRUE(Contains(masked, "2 clients sent masked inputs (3, 5), threshold 3: the round cannot be unmasked"))
        << masked.ToString();
    EXPECT_EQ(sim.server().stage(), SecAggServer::Stage::kFailed);
    EXPECT_EQ(sim.server().Finish().status().message(), masked.message()) << "later calls return the failure";
    EXPECT_EQ(sim.server().ReceiveMaskedInput(1, MaskedInputMsg{}).message(), masked.message());
  }
  {
    // Enough masked inputs, but too few answer the unmask request.
    Sim sim(Config(dim, 3), n);
    ASSERT_TRUE(sim.Advertise().ok());
    ASSERT_TRUE(sim.ShareKeys().ok());
    ASSERT_TRUE(sim.Mask(inputs).ok());
    ASSERT_TRUE(sim.Unmask({1, 2, 3}).ok());
    auto result = sim.Finish();
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_TRUE(Contains(result.status(), "2 shares of client 1's self-mask seed arrived (from 4, 5), threshold 3"))
        << result.status().ToString();
  }
  {
    // Too few advertise keys at all.
    Sim sim(Config(dim, 3), n);
    const Status adv = sim.Advertise({1, 2, 3});
    EXPECT_EQ(adv.code(), StatusCode::kFailedPrecondition);
    EXPECT_TRUE(Contains(adv, "2 of 5 clients advertised keys (4, 5)")) << adv.ToString();
  }
  {
    // A k-regular graph: a dropped client with too few surviving neighbours.
    const uint32_t n10 = 10;
    const auto inputs10 = QuantizedInputs(n10, dim, 6);
    Sim sim(Config(dim, 3, 4), n10);
    ASSERT_TRUE(sim.Advertise().ok());
    ASSERT_TRUE(sim.ShareKeys().ok());
    // Drop client 1 and two of its four neighbours (two that no survivor neighbours together with
    // client 1, so every survivor keeps t holders): 2 of client 1's neighbours survive, threshold 3.
    auto graph = BuildSecAggGraph(Config(dim, 3, 4), AllBut(n10, {}));
    ASSERT_TRUE(graph.ok());
    const std::vector<uint32_t>& nb = graph->Of(1);
    std::set<uint32_t> drop;
    for (size_t a = 0; a < nb.size() && drop.empty(); ++a) {
      for (size_t b = a + 1; b < nb.size() && drop.empty(); ++b) {
        bool ok = true;
        for (uint32_t s = 1; s <= n10; ++s) {
          if (s != 1 && s != nb[a] && s != nb[b] && graph->Adjacent(s, 1) && graph->Adjacent(s, nb[a]) &&
              graph->Adjacent(s, nb[b]))
            ok = false;
        }
        if (ok) drop = {1, nb[a], nb[b]};
      }
    }
    ASSERT_EQ(drop.size(), 3u);
    const Status masked = sim.Mask(inputs10, drop);
    EXPECT_EQ(masked.code(), StatusCode::kFailedPrecondition);
    EXPECT_TRUE(Contains(masked, "client 1 dropped and 2 of its neighbours survived")) << masked.ToString();
  }
}

TEST(SecAggRoundTest, TheServerSeesUniformNoiseForOneClientAndCannotUnmaskItAlone) {
  const uint32_t n = 5;
  const int64_t dim = 200 * 194;
  const auto inputs = QuantizedInputs(n, dim, 11);
  Sim sim(Config(dim, 3), n);
  ASSERT_TRUE(sim.Advertise().ok());
  ASSERT_TRUE(sim.ShareKeys().ok());
  ASSERT_TRUE(sim.Mask(inputs).ok());
  for (uint32_t id = 1; id <= n; ++id) {
    auto msg = MaskedInputMsg::Parse(sim.masked_bytes.at(id));
    ASSERT_TRUE(msg.ok());
    const std::vector<uint32_t>& y = msg->masked;
    const std::vector<uint32_t>& x = inputs.at(id);
    size_t equal = 0;
    for (int64_t i = 0; i < dim; ++i) equal += y[static_cast<size_t>(i)] == x[static_cast<size_t>(i)];
    EXPECT_LE(equal, 2u) << "client " << id << ": masked coordinates equal to the input (expect ~dim / 2^32)";
    // Byte histogram: uniform (chi-square, 255 dof, p < 1e-8 above 400) while the input is far from it.
    const double chi_masked = ByteChiSquare(reinterpret_cast<const uint8_t*>(y.data()), y.size() * 4);
    const double chi_input = ByteChiSquare(reinterpret_cast<const uint8_t*>(x.data()), x.size() * 4);
    EXPECT_LT(chi_masked, 400) << "client " << id;
    EXPECT_GT(chi_input, 10000) << "client " << id << ": the check has the power to see the input";
    // Every bit position set about half the time.
    for (int bit = 0; bit < 32; ++bit) {
      size_t ones = 0;
      for (uint32_t v : y) ones += (v >> bit) & 1u;
      EXPECT_NEAR(static_cast<double>(ones) / static_cast<double>(dim), 0.5, 0.02) << "bit " << bit;
    }
  }
  // A request that names fewer than t survivors (one client "alone") is refused by every client.
  UnmaskRequestMsg alone;
  alone.session = 42;
  alone.survivors = {2};
  alone.dropped = {1, 3, 4, 5};
  auto refused = sim.client(2).Unmask(alone);
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_ERROR_HAS(refused.status(), "names 1 survivors (2), threshold 3: refused");
  // The safety rule across requests: once client 3's seed share is out, its mask-key share never is.
  UnmaskRequestMsg honest;
  honest.session = 42;
  honest.survivors = {1, 2, 3, 4, 5};
  auto first = sim.client(1).Unmask(honest);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto again = sim.client(1).Unmask(honest);
  ASSERT_TRUE(again.ok()) << "a repeated consistent request is answered";
  UnmaskRequestMsg liar;
  liar.session = 42;
  liar.survivors = {1, 2, 4};
  liar.dropped = {3, 5};
  auto both = sim.client(1).Unmask(liar);
  EXPECT_EQ(both.status().code(), StatusCode::kPermissionDenied);
  EXPECT_ERROR_HAS(both.status(), "refusing to reveal client 3's mask-key share after its self-mask seed share");
  // And the other way round on a fresh client: mask key first, then the seed.
  auto first_liar = sim.client(2).Unmask(liar);
  ASSERT_TRUE(first_liar.ok()) << first_liar.status().ToString();
  for (const RevealedShare& s : first_liar->shares) {
    if (s.owner_id == 3 || s.owner_id == 5) {
      EXPECT_EQ(s.kind, SecAggShareKind::kMaskKey);
    }
  }
  EXPECT_ERROR_HAS(sim.client(2).Unmask(honest).status(), "refusing to reveal client 3's self-mask seed share");
  // Malformed requests.
  UnmaskRequestMsg overlap = honest;
  overlap.dropped = {4};
  EXPECT_ERROR_HAS(sim.client(4).Unmask(overlap).status(), "lists client 4 as survivor and as dropped");
  UnmaskRequestMsg silent = honest;
  silent.survivors = {1, 2, 4, 5};
  EXPECT_ERROR_HAS(sim.client(4).Unmask(silent).status(), "does not say whether client 3 survived");
  UnmaskRequestMsg not_me = liar;
  EXPECT_ERROR_HAS(sim.client(5).Unmask(not_me).status(), "does not list this client (client 5) as a survivor");
}

TEST(SecAggRoundTest, MalformedWrongSizeAndWrongIdMessagesAreRejectedNamingTheClient) {
  const uint32_t n = 5;
  const int64_t dim = 64;
  const auto inputs = QuantizedInputs(n, dim, 12);
  Sim sim(Config(dim, 3), n);
  SecAggServer& server = sim.server();
  // Stage 1.
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(2, std::vector<uint8_t>{1, 2, 3}), "client 2: AdvertiseKeys: 3 bytes");
  AdvertiseKeysMsg keys = sim.client(2).AdvertiseKeys();
  std::vector<uint8_t> bytes = keys.Serialize();
  bytes.push_back(0);
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(2, bytes), "client 2: AdvertiseKeys: 1 trailing bytes");
  bytes.resize(bytes.size() - 10);
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(2, bytes), "client 2: AdvertiseKeys: truncated");
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(3, keys), "client 3: AdvertiseKeys: claims to be client 2");
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(9, sim.client(2).AdvertiseKeys()),
                   "client 9: AdvertiseKeys: not a client");
  AdvertiseKeysMsg stale = keys;
  stale.session = 41;
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(2, stale), "client 2: AdvertiseKeys: session 41, expected 42");
  EXPECT_ERROR_HAS(server.ReceiveShareKeys(2, ShareKeysMsg{}), "client 2: ShareKeys arrived in stage 'advertise keys'");
  ASSERT_TRUE(server.ReceiveAdvertiseKeys(2, keys.Serialize()).ok());
  EXPECT_ERROR_HAS(server.ReceiveAdvertiseKeys(2, keys), "client 2: AdvertiseKeys: sent twice");
  EXPECT_EQ(server.Pending(), (std::vector<uint32_t>{1, 3, 4, 5}));
  ASSERT_TRUE(sim.Advertise({2}).ok());  // the others; 2 is in already

  // Stage 2: a client's message with a box missing, a short box, a box for a stranger.
  // (Build real ones by running the clients, then tamper before the server sees them.)
  auto dir3 = server.Pending();  // all five expected
  EXPECT_EQ(dir3, (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  ASSERT_TRUE(sim.ShareKeys().ok());  // everyone shares (the malformed variants are built below)

  // Stage 3.
  MaskedInputMsg wrong_size;
  wrong_size.session = 42;
  wrong_size.client_id = 4;
  wrong_size.masked.assign(dim - 1, 0);
  EXPECT_ERROR_HAS(server.ReceiveMaskedInput(4, wrong_size), "client 4: MaskedInput: 63 values, expected dim 64");
  wrong_size.masked.assign(dim, 0);
  EXPECT_ERROR_HAS(server.ReceiveMaskedInput(5, wrong_size), "client 5: MaskedInput: claims to be client 4");
  std::vector<uint8_t> garbage = wrong_size.Serialize();
  garbage[3] = 1;  // the type byte of AdvertiseKeys
  EXPECT_ERROR_HAS(server.ReceiveMaskedInput(4, garbage), "client 4: MaskedInput: message type 1, expected 5");
  garbage = wrong_size.Serialize();
  garbage[0] = 'X';
  EXPECT_ERROR_HAS(server.ReceiveMaskedInput(4, garbage), "client 4: MaskedInput: not a secure aggregation message");
  garbage = wrong_size.Serialize();
  garbage[19] = 0xFF;  // the count's high byte: more values than the bytes could hold
  EXPECT_ERROR_HAS(server.ReceiveMaskedInput(4, garbage), "client 4: MaskedInput: list of");
  ASSERT_TRUE(sim.Mask(inputs).ok());  // the real ones

  // Stage 4: responses with a missing share, a wrong kind, a stranger's share, a non-field share.
  sim.on_unmask_response = [](uint32_t id, UnmaskResponseMsg& msg) {
    if (id == 1) msg.shares.pop_back();
    if (id == 2) msg.shares[0].kind = SecAggShareKind::kMaskKey;
    if (id == 3) msg.shares[0].owner_id = 77;
    if (id == 4) msg.shares[1].share.fill(0xFF);
  };
  ASSERT_TRUE(sim.Unmask().ok());
  ASSERT_EQ(sim.rejected_responses.size(), 4u);
  EXPECT_ERROR_HAS(sim.rejected_responses[0], "client 1: UnmaskResponse: no share of clients 5");
  EXPECT_ERROR_HAS(sim.rejected_responses[1],
                   "client 2: UnmaskResponse: client 1 survived, but the share is of its mask key");
  EXPECT_ERROR_HAS(sim.rejected_responses[2], "client 3: UnmaskResponse: a share of client 77, which it does not hold");
  EXPECT_ERROR_HAS(sim.rejected_responses[3],
                   "client 4: UnmaskResponse: the share of client 2 is not two field elements");
  EXPECT_EQ(server.Pending(), (std::vector<uint32_t>{1, 2, 3, 4}));
  // Only client 5 answered: below the threshold.
  EXPECT_ERROR_HAS(server.Finish().status(), "threshold 3: the round cannot be unmasked");
}

TEST(SecAggRoundTest, MalformedShareKeysAreRejectedNamingTheClient) {
  const uint32_t n = 6;
  const int64_t dim = 16;
  Sim sim(Config(dim, 3, 2), n);  // k = 2: a ring, each client with two neighbours
  ASSERT_TRUE(sim.Advertise().ok());
  SecAggServer& server = sim.server();
  auto graph = BuildSecAggGraph(Config(dim, 3, 2), AllBut(n, {}));
  ASSERT_TRUE(graph.ok());
  // A directory that lies about the neighbours is refused by the client.
  KeyDirectoryMsg dir;
  dir.session = 42;
  dir.participants = AllBut(n, {});
  for (uint32_t v : graph->Of(1)) dir.neighbours.push_back(sim.client(v).AdvertiseKeys());
  KeyDirectoryMsg lie = dir;
  lie.neighbours.pop_back();
  EXPECT_ERROR_HAS(sim.client(1).ShareKeys(lie).status(), "this client's neighbours are");
  lie = dir;
  lie.neighbours[0].mask_public_key = SecAggKey{};
  EXPECT_ERROR_HAS(sim.client(1).ShareKeys(lie).status(),
                   "client " + std::to_string(graph->Of(1)[0]) + ": mask public key is a low-order point");
  auto good = sim.client(1).ShareKeys(dir);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_ERROR_HAS(sim.client(1).ShareKeys(dir).status(), "keys were shared already");
  // The server checks the boxes against the graph.
  ShareKeysMsg missing = *good;
  missing.boxes.pop_back();
  EXPECT_ERROR_HAS(server.ReceiveShareKeys(1, missing), "client 1: ShareKeys: boxes for clients");
  ShareKeysMsg shorter = *good;
  shorter.boxes[0].box.resize(10);
  EXPECT_ERROR_HAS(server.ReceiveShareKeys(1, shorter), "has 10 bytes, expected 184");
  ShareKeysMsg stranger = *good;
  stranger.boxes[0].peer_id = 99;
  EXPECT_ERROR_HAS(server.ReceiveShareKeys(1, stranger), "client 1: ShareKeys: boxes for clients 99");
  EXPECT_ERROR_HAS(server.ReceiveShareKeys(2, *good), "client 2: ShareKeys: claims to be client 1");
  ASSERT_TRUE(server.ReceiveShareKeys(1, good->Serialize()).ok());
}

TEST(SecAggRoundTest, ABoxThatDoesNotDecryptIsRefusedNamingItsSender) {
  const uint32_t n = 5;
  const int64_t dim = 16;
  const auto inputs = QuantizedInputs(n, dim, 13);
  Sim sim(Config(dim, 3), n);
  ASSERT_TRUE(sim.Advertise().ok());
  ASSERT_TRUE(sim.ShareKeys().ok());
  sim.on_forwarded = [](uint32_t id, ForwardedSharesMsg& msg) {
    if (id == 2) msg.boxes[2].box[50] ^= 1;  // client 2's box from client 4
  };
  const Status masked = sim.Mask(inputs);
  EXPECT_ERROR_HAS(masked, "secagg client 4: encrypted shares do not decrypt");
}

TEST(SecAggRoundTest, ABadShareIsLeftOutNamingItsSenderWhenASpareAllowsAndFailsTheRoundOtherwise) {
  const uint32_t n = 6;
  const int64_t dim = 500;
  const auto inputs = QuantizedInputs(n, dim, 14);
  {
    // Client 3 corrupts its share of client 1's seed and of dropped client 6's mask key.
    Sim sim(Config(dim, 4), n);
    sim.on_unmask_response = [](uint32_t id, UnmaskResponseMsg& msg) {
      if (id != 3) return;
      for (RevealedShare& s : msg.shares) {
        if (s.owner_id == 1 || s.owner_id == 6) s.share[5] ^= 0x20;
      }
    };
    auto result = sim.Run(inputs, {{{}, {}, {6}, {}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->sum, PlainSum(inputs, AllBut(n, {6})));
    ASSERT_EQ(result->rejected_shares.size(), 2u);
    EXPECT_ERROR_HAS(result->rejected_shares[0], "secagg client 3: bad share of client 1's self-mask seed");
    EXPECT_ERROR_HAS(result->rejected_shares[1], "secagg client 3: bad share of client 6's mask key");
  }
  {
    // Exactly t shares and one of them bad: no way to tell which, the round fails naming the owner.
    Sim sim(Config(dim, 4), n);
    sim.on_unmask_response = [](uint32_t id, UnmaskResponseMsg& msg) {
      if (id != 3) return;
      for (RevealedShare& s : msg.shares) {
        if (s.owner_id == 1) s.share[5] ^= 0x20;
      }
    };
    auto result = sim.Run(inputs, {{{}, {}, {}, {4, 5}}});
    ASSERT_FALSE(result.ok());
    EXPECT_ERROR_HAS(result.status(),
                     "client 1's self-mask seed does not reconstruct from the shares of clients 1, 2, 3, 6");
  }
}

TEST(SecAggRoundTest, DenseVectorGoesThroughWithStageTimes) {
  const uint32_t n = 5;
  const int64_t dim = 4'000'000;
  std::map<uint32_t, std::vector<uint32_t>> inputs;
  auto q = SecAggQuantizer::Create({1.0, n});
  ASSERT_TRUE(q.ok());
  std::mt19937 rng(15);
  std::normal_distribution<float> dist(0.0f, 0.01f);
  std::vector<float> x(static_cast<size_t>(dim));
  double quantize_s = 0;
  for (uint32_t id = 1; id <= n; ++id) {
    for (float& v : x) v = dist(rng);
    const auto t0 = Clock::now();
    auto levels = q->Quantize(x, QuantizeRounding::kStochastic, id);
    quantize_s += Seconds(t0);
    ASSERT_TRUE(levels.ok());
    inputs[id] = std::move(*levels);
  }
  for (uint32_t k : {0u, 2u}) {
    Sim sim(Config(dim, MinThreshold(k, n), k), n);
    auto result = sim.Run(inputs, {{{}, {}, {2}, {}}});  // one dropout: its masks are recomputed too
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->sum, PlainSum(inputs, AllBut(n, {2})));
    std::vector<double> sum(static_cast<size_t>(dim));
    const auto t0 = Clock::now();
    ASSERT_TRUE(q->DequantizeSum(result->sum, n - 1, sum).ok());
    const double dequantize_s = Seconds(t0);
    const std::string title = "secagg dense round: " + std::to_string(n) + " clients, " + std::to_string(dim) +
                              " coordinates, " + (k == 0 ? "all pairs" : "k = " + std::to_string(k)) +
                              ", t = " + std::to_string(MinThreshold(k, n)) + ", 1 dropout";
    sim.PrintTimes(title.c_str());
    std::printf("  quantize        %8.3f s per client; dequantize the sum %8.3f s\n", quantize_s / n, dequantize_s);
  }
}

TEST(SecAggRoundTest, FerretSizeRoundTimes) {
  const uint32_t n = 10;
  const int64_t dim = 200 * 194;
  const auto inputs = QuantizedInputs(n, dim, 16);
  for (uint32_t k : {0u, 4u}) {
    Sim sim(Config(dim, MinThreshold(k, n), k), n);
    auto result = sim.Run(inputs, {{{}, {}, {3, 8}, {}}});
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->sum, PlainSum(inputs, AllBut(n, {3, 8})));
    const std::string title = "secagg Ferret-size round: " + std::to_string(n) + " clients, " + std::to_string(dim) +
                              " coordinates, " + (k == 0 ? "all pairs" : "k = " + std::to_string(k)) +
                              ", t = " + std::to_string(MinThreshold(k, n)) + ", 2 dropouts";
    sim.PrintTimes(title.c_str());
  }
}

}  // namespace
}  // namespace tributary
