// The Backend's arena kernels (optimizer steps, sum of squares, scaling, accumulation) and the LoRA
// dropout kernel against plain scalar references: the loops engine/train/optimizer.cc and
// peft/lora.cc ran on host pointers before they moved behind the Backend. Every comparison is bitwise,
// at one and at two threads.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "base/parallel.h"
#include "engine/arena.h"
#include "engine/cpu/cpu_backend.h"

namespace tributary {
namespace {

// Tensors of awkward sizes, so runs start and end inside the 8192-element sum-of-squares slices and
// inside the threads' chunks.
std::shared_ptr<TensorTable> OddTable() {
  auto table = std::make_shared<TensorTable>();
  table->Add("a", {301, 517});
  table->Add("b", {3});
  table->Add("empty", {0});
  table->Add("c", {1000, 77});
  table->Add("d", {8191});
  return table;
}

std::vector<bool> TensorMask(const TensorTable& table) {
  std::vector<bool> is_tensor(static_cast<size_t>(table.total_elems()), false);
  for (const auto& e : table.entries())
    for (int64_t i = 0; i < e.numel; ++i) is_tensor[static_cast<size_t>(e.offset + i)] = true;
  return is_tensor;
}

// Random tensor elements; padding left as the arena allocated it unless `poison` (then 1000).
void Fill(Arena& arena, uint64_t seed, double lo, double hi, bool poison = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution neg(0.5);
  const std::vector<bool> is_tensor = TensorMask(arena.table());
  for (int64_t i = 0; i < arena.size(); ++i) {
    if (is_tensor[static_cast<size_t>(i)]) {
      const double v = mag(rng);
      arena.data()[i] = static_cast<float>(neg(rng) ? -v : v);
    } else if (poison) {
      arena.data()[i] = 1000.0f;
    }
  }
}

std::vector<uint32_t> Bits(const Arena& arena) {
  std::vector<uint32_t> out(static_cast<size_t>(arena.size()));
  std::memcpy(out.data(), arena.data(), arena.bytes());
  return out;
}

// ---- The pre-Backend loops, element by element (padding skipped).

void RefAdamW(const TensorTable& table, const AdamWStepArgs& a, float* p, const float* g, float* m, float* v) {
  const double t = static_cast<double>(a.step);
  const double decay = 1.0 - a.lr * a.weight_decay;
  const double bias_c1 = 1.0 - std::pow(a.beta1, t);
  const double bias_c2_sqrt = std::sqrt(1.0 - std::pow(a.beta2, t));
  const double step_size = a.lr / bias_c1;
  for (const auto& e : table.entries())
    for (int64_t i = e.offset; i < e.offset + e.numel; ++i) {
      const double gi = g[i];
      const double mi = a.beta1 * m[i] + (1.0 - a.beta1) * gi;
      const double vi = a.beta2 * v[i] + (1.0 - a.beta2) * gi * gi;
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
      const double denom = std::sqrt(static_cast<double>(v[i])) / bias_c2_sqrt + a.eps;
      const double pi = static_cast<double>(p[i]) * decay;
      p[i] = static_cast<float>(pi - step_size * static_cast<double>(m[i]) / denom);
    }
}

void RefSgd(const TensorTable& table, const SgdStepArgs& a, float* p, const float* g, float* buf) {
  for (const auto& e : table.entries())
    for (int64_t i = e.offset; i < e.offset + e.numel; ++i) {
      const double pi = p[i];
      double d_p = static_cast<double>(g[i]) + a.weight_decay * pi;
      if (buf) {
        const double b = a.first_step ? d_p : a.momentum * static_cast<double>(buf[i]) + (1.0 - a.dampening) * d_p;
        buf[i] = static_cast<float>(b);
        d_p = a.nesterov ? d_p + a.momentum * static_cast<double>(buf[i]) : static_cast<double>(buf[i]);
      }
      p[i] = static_cast<float>(pi - a.lr * d_p);
    }
}

// fp64 per 8192-element slice of the arena (tensor elements only), slices added in order.
double RefSumSquares(const TensorTable& table, const float* x) {
  const std::vector<bool> is_tensor = TensorMask(table);
  double total = 0.0;
  for (int64_t s = 0; s < table.total_elems(); s += 8192) {
    double sum = 0.0;
    for (int64_t i = s; i < std::min(table.total_elems(), s + 8192); ++i)
      if (is_tensor[static_cast<size_t>(i)]) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    total += sum;
  }
  return total;
}

// peft/lora.cc's serial mask loop.
void RefDropout(float* v, int64_t n, uint64_t stream, double p) {
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(SplitMix64(stream + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
    v[i] = u >= p ? v[i] * keep_scale : 0.0f;
  }
}

class TrainKernelsTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SetNumThreads(GetParam()); }
  void TearDown() override { SetNumThreads(0); }
  CpuBackend be_;
  std::shared_ptr<TensorTable> table_ = OddTable();
};

TEST_P(TrainKernelsTest, AdamWEqualsTheScalarLoopBitForBit) {
  Arena p(table_), g(table_), m(table_), v(table_);
  Arena rp(table_), rm(table_), rv(table_);
  Fill(p, 1, 0.5, 2.0);
  rp.CopyFrom(p);
  AdamWStepArgs args;
  args.beta1 = 0.85;
  args.beta2 = 0.99;
  args.eps = 1e-6;
  args.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    Fill(g, 10 + step, 0.0, 1.0, /*poison=*/true);
    args.lr = 1e-3 * static_cast<double>(step);
    args.step = step;
    be_.AdamWStep(*table_, args, p.data(), g.data(), m.data(), v.data());
    RefAdamW(*table_, args, rp.data(), g.data(), rm.data(), rv.data());
  }
  EXPECT_EQ(Bits(p), Bits(rp));  // includes the padding: still zero despite the poisoned gradient padding
  EXPECT_EQ(Bits(m), Bits(rm));
  EXPECT_EQ(Bits(v), Bits(rv));
}

TEST_P(TrainKernelsTest, SgdEqualsTheScalarLoopBitForBit) {
  for (bool nesterov : {false, true}) {
    Arena p(table_), g(table_), buf(table_), rp(table_), rbuf(table_), plain(table_), rplain(table_);
    Fill(p, 2, 0.5, 2.0);
    rp.CopyFrom(p);
    plain.CopyFrom(p);
    rplain.CopyFrom(p);
    SgdStepArgs args;
    args.weight_decay = 0.05;
    args.momentum = 0.9;
    args.dampening = nesterov ? 0.0 : 0.3;
    args.nesterov = nesterov;
    for (int step = 0; step < 3; ++step) {
      Fill(g, 20 + step, 0.0, 1.0, /*poison=*/true);
      args.lr = 0.01 * (1 + step);
      args.first_step = step == 0;
      be_.SgdStep(*table_, args, p.data(), g.data(), buf.data());
      RefSgd(*table_, args, rp.data(), g.data(), rbuf.data());
      be_.SgdStep(*table_, args, plain.data(), g.data(), nullptr);  // no momentum buffer
      RefSgd(*table_, args, rplain.data(), g.data(), nullptr);
    }
    EXPECT_EQ(Bits(p), Bits(rp)) << nesterov;
    EXPECT_EQ(Bits(buf), Bits(rbuf)) << nesterov;
    EXPECT_EQ(Bits(plain), Bits(rplain)) << nesterov;
  }
}

TEST_P(TrainKernelsTest, SumSquaresIgnoresPaddingAndMatchesTheSliceOrder) {
  Arena x(table_);
  Fill(x, 3, 0.0, 3.0, /*poison=*/true);
  const double got = be_.SumSquares(*table_, x.data());
  EXPECT_EQ(std::bit_cast<uint64_t>(got), std::bit_cast<uint64_t>(RefSumSquares(*table_, x.data())));
}

TEST_P(TrainKernelsTest, ScaleAccumulateAndMeanEqualTheScalarLoops) {
  Arena x(table_), sum(table_), out(table_);
  Fill(x, 4, 0.0, 5.0, /*poison=*/true);
  std::vector<float> ref_x(x.data(), x.data() + x.size());
  be_.Scale(*table_, x.data(), 0.37f);
  const std::vector<bool> is_tensor = TensorMask(*table_);
  for (size_t i = 0; i < ref_x.size(); ++i)
    if (is_tensor[i]) ref_x[i] *= 0.37f;
  EXPECT_EQ(std::memcmp(x.data(), ref_x.data(), x.bytes()), 0);

  std::vector<float> ref_sum(static_cast<size_t>(x.size()), 0.0f);
  for (int k = 0; k < 3; ++k) {
    be_.Accumulate(*table_, x.data(), sum.data());
    for (size_t i = 0; i < ref_sum.size(); ++i)
      if (is_tensor[i]) ref_sum[i] += x.data()[i];
  }
  EXPECT_EQ(std::memcmp(sum.data(), ref_sum.data(), sum.bytes()), 0);
  be_.MeanAndClear(*table_, sum.data(), 3, out.data());
  const double inv = 1.0 / 3.0;
  for (int64_t i = 0; i < x.size(); ++i) {
    const float want =
        is_tensor[static_cast<size_t>(i)] ? static_cast<float>(static_cast<double>(ref_sum[i]) * inv) : 0.0f;
    ASSERT_EQ(std::bit_cast<uint32_t>(out.data()[i]), std::bit_cast<uint32_t>(want)) << i;
    ASSERT_EQ(sum.data()[i], 0.0f) << i;
  }
}

TEST_P(TrainKernelsTest, DropoutEqualsTheCounterHashLoop) {
  const int64_t n = 70001;  // several threads' chunks
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  for (double p : {0.1, 0.5}) {
    std::vector<float> ref = x, out(x.size()), in_place = x;
    RefDropout(ref.data(), n, 0xABCDEF12345ull, p);
    be_.Dropout(x.data(), n, 0xABCDEF12345ull, p, out.data());
    be_.Dropout(in_place.data(), n, 0xABCDEF12345ull, p, in_place.data());
    EXPECT_EQ(std::memcmp(out.data(), ref.data(), x.size() * sizeof(float)), 0) << p;
    EXPECT_EQ(std::memcmp(in_place.data(), ref.data(), x.size() * sizeof(float)), 0) << p;
    int64_t dropped = 0;
    for (float v : out) dropped += v == 0.0f ? 1 : 0;
    EXPECT_NEAR(static_cast<double>(dropped) / static_cast<double>(n), p, 0.01) << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, TrainKernelsTest, ::testing::Values(1, 2));

// The same inputs at one and at two threads give the same bits (the scalar references above are
// single-threaded, so this also follows from them; checked directly for the reduction).
TEST(TrainKernelsThreadsTest, SumSquaresAndStepsAreThreadCountIndependent) {
  auto table = OddTable();
  CpuBackend be;
  std::vector<uint64_t> norms;
  std::vector<std::vector<uint32_t>> params;
  for (int threads : {1, 2}) {
    SetNumThreads(threads);
    Arena p(table), g(table), m(table), v(table);
    Fill(p, 6, 0.5, 2.0);
    Fill(g, 7, 0.0, 1.0);
    norms.push_back(std::bit_cast<uint64_t>(be.SumSquares(*table, g.data())));
    AdamWStepArgs args;
    args.lr = 1e-3;
    args.weight_decay = 0.01;
    be.AdamWStep(*table, args, p.data(), g.data(), m.data(), v.data());
    params.push_back(Bits(p));
  }
  SetNumThreads(0);
  EXPECT_EQ(norms[0], norms[1]);
  EXPECT_EQ(params[0], params[1]);
}

}  // namespace
}  // namespace tributary
