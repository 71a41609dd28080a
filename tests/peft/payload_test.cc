// The section 8 payload: byte formula, round trips and rejection of malformed input (16.8).
#include "peft/payload.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tributary {
namespace {

Payload RandomPayload(std::mt19937_64& rng, int L, int K, WireDtype dtype) {
  Payload p;
  p.round = static_cast<uint32_t>(rng());
  p.dtype = dtype;
  p.gamma.resize(static_cast<size_t>(L));
  std::normal_distribution<float> normal(0.0f, 100.0f);
  for (auto& g : p.gamma) {
    g.resize(rng() % static_cast<uint64_t>(K + 1));  // K_l in [0, K]
    for (float& x : g) x = normal(rng);
  }
  return p;
}

std::string ErrorOf(std::span<const uint8_t> bytes, PayloadExpectation expect) {
  auto r = ParsePayload(bytes, expect);
  if (r.ok()) return "ok";
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  return r.status().message();
}

TEST(PayloadTest, SizeFollowsTheFormulaForRandomBudgets) {
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    const WireDtype dtype = trial % 2 ? WireDtype::kBf16 : WireDtype::kFp32;
    const int L = 1 + static_cast<int>(rng() % 300);
    const Payload p = RandomPayload(rng, L, 200, dtype);
    size_t values = 0;
    for (const auto& g : p.gamma) values += g.size();
    const size_t formula = 8 + 4 * static_cast<size_t>(L) + values * (dtype == WireDtype::kFp32 ? 4 : 2);
    auto bytes = SerializePayload(p);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(bytes->size(), formula);
    EXPECT_EQ(PayloadBytes(p), formula);
  }
}

TEST(PayloadTest, CodeDenseBudgetIs38800Values) {
  // K = 200 coefficients for each of L = 194 blocks: a dense K x L matrix.
  const std::vector<int> k_l(194, 200);
  int values = 0;
  for (int k : k_l) values += k;
  EXPECT_EQ(values, 38'800);
  EXPECT_EQ(PayloadBytes(WireDtype::kBf16, k_l), 8u + 4u * 194u + 2u * 38'800u);
  EXPECT_EQ(PayloadBytes(WireDtype::kFp32, k_l), 8u + 4u * 194u + 4u * 38'800u);
}

TEST(PayloadTest, RoundTripsExactly) {
  std::mt19937_64 rng(2);
  for (WireDtype dtype : {WireDtype::kFp32, WireDtype::kBf16}) {
    const Payload p = RandomPayload(rng, 40, 64, dtype);
    auto bytes = SerializePayload(p);
    ASSERT_TRUE(bytes.ok());
    auto back = ParsePayload(*bytes, {40, 64});
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->round, p.round);
    EXPECT_EQ(back->dtype, dtype);
    ASSERT_EQ(back->gamma.size(), p.gamma.size());
    for (size_t l = 0; l < p.gamma.size(); ++l) {
      ASSERT_EQ(back->gamma[l].size(), p.gamma[l].size());
      for (size_t k = 0; k < p.gamma[l].size(); ++k) {
        const float expect = dtype == WireDtype::kFp32 ? p.gamma[l][k] : FloatFromBf16(Bf16FromFloat(p.gamma[l][k]));
        EXPECT_EQ(back->gamma[l][k], expect);
        if (dtype == WireDtype::kBf16) {
          EXPECT_LE(std::fabs(back->gamma[l][k] - p.gamma[l][k]), std::fabs(p.gamma[l][k]) * (1.0f / 256));
        }
      }
    }
    auto again = SerializePayload(*back);  // the parsed values re-encode to the same bytes
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *bytes);
  }
}

TEST(PayloadTest, LittleEndianLayout) {
  Payload p;
  p.round = 0x01020304;
  p.dtype = WireDtype::kFp32;
  p.gamma = {{}, {1.0f}};
  auto bytes = SerializePayload(p);
  ASSERT_TRUE(bytes.ok());
  const std::vector<uint8_t> expect = {0x04, 0x03, 0x02, 0x01, 2,    0,    0,    0,      // header
                                       0,    0,    0,    0,                              // block 0, K_0 = 0
                                       1,    0,    1,    0,    0x00, 0x00, 0x80, 0x3F};  // block 1, K_1 = 1, 1.0f
  EXPECT_EQ(*bytes, expect);
}

TEST(PayloadTest, Bf16Rounding) {
  EXPECT_EQ(Bf16FromFloat(1.0f), 0x3F80);
  EXPECT_EQ(Bf16FromFloat(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(Bf16FromFloat(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(Bf16FromFloat(-2.0f), 0xC000);
  EXPECT_EQ(FloatFromBf16(0x3F81), 1.0078125f);
  for (float x : {0.0f, 1.5f, -3.25e-3f, 1e30f, std::ldexp(1.0f, -130)}) {
    EXPECT_EQ(Bf16FromDouble(static_cast<double>(x)), Bf16FromFloat(x)) << x;
  }
  EXPECT_EQ(Bf16FromDouble(1e300), 0x7F80);  // overflow -> infinity (rejected by Serialize)
}

TEST(PayloadTest, RejectsMalformedPayloads) {
  std::mt19937_64 rng(3);
  Payload p = RandomPayload(rng, 3, 8, WireDtype::kFp32);
  p.gamma[1].assign(5, 0.5f);
  auto bytes_or = SerializePayload(p);
  ASSERT_TRUE(bytes_or.ok());
  const std::vector<uint8_t> good = *bytes_or;
  const PayloadExpectation expect{3, 8};
  ASSERT_EQ(ErrorOf(good, expect), "ok");

  // Every truncation fails.
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string e = ErrorOf(std::span<const uint8_t>(good.data(), n), expect);
    EXPECT_NE(e.find("truncated"), std::string::npos) << n << ": " << e;
  }
  // Trailing bytes.
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_NE(ErrorOf(longer, expect).find("trailing"), std::string::npos);
  // Wrong L.
  EXPECT_NE(ErrorOf(good, {4, 8}).find("L = 3 blocks, expected 4"), std::string::npos);
  // K_l > K.
  EXPECT_NE(ErrorOf(good, {3, 4}).find("exceeds K = 4"), std::string::npos);
  // Unknown dtype and flags.
  std::vector<uint8_t> bad = good;
  bad[6] = 2;
  EXPECT_NE(ErrorOf(bad, expect).find("dtype 2"), std::string::npos);
  bad = good;
  bad[7] = 1;
  EXPECT_NE(ErrorOf(bad, expect).find("flags"), std::string::npos);
  // Block ids must be 0..L-1 in order.
  bad = good;
  const size_t block1 = 8 + 4 + 4 * p.gamma[0].size();
  bad[block1] = 7;
  EXPECT_NE(ErrorOf(bad, expect).find("block 1 carries id 7"), std::string::npos);
  // Non-finite values: fp32 NaN and infinity, bf16 infinity.
  for (uint32_t bits : {0x7FC00000u, 0x7F800000u, 0xFF800000u}) {
    bad = good;
    std::memcpy(&bad[block1 + 4 + 4], &bits, 4);  // gamma[1][1]
    EXPECT_NE(ErrorOf(bad, expect).find("block 1 gamma[1] is not finite"), std::string::npos);
  }
  Payload h;
  h.dtype = WireDtype::kBf16;
  h.gamma = {{1.0f, 2.0f}};
  auto hb = SerializePayload(h);
  ASSERT_TRUE(hb.ok());
  (*hb)[8 + 4 + 2] = 0x80;
  (*hb)[8 + 4 + 3] = 0x7F;
  EXPECT_NE(ErrorOf(*hb, {1, 2}).find("not finite"), std::string::npos);
}

TEST(PayloadTest, SerializeRejectsWhatCannotTravel) {
  Payload p;
  p.gamma = {{1.0f, std::numeric_limits<float>::infinity()}};
  auto r = SerializePayload(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("block 0 gamma[1]"), std::string::npos) << r.status().message();
  p.dtype = WireDtype::kBf16;
  p.gamma = {{3.4e38f}};  // finite in fp32, rounds to bf16 infinity
  EXPECT_FALSE(SerializePayload(p).ok());
  p.dtype = WireDtype::kFp32;
  p.gamma.assign(70000, {});
  EXPECT_FALSE(SerializePayload(p).ok());
  EXPECT_EQ(*ParseWireDtype("bf16"), WireDtype::kBf16);
  EXPECT_FALSE(ParseWireDtype("fp16").ok());
}

}  // namespace
}  // namespace tributary
