// Finite-difference gradient checks for every CpuBackend kernel, plus forward checks against naive
// fp64 references. Each check uses a scalar probe L = sum(out * R) with fixed random R, so the
// analytic input gradient is the kernel's backward applied to R.
#include <cmath>
#include <functional>
#include <numbers>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/llama_model.h"

namespace tributary {
namespace {

std::vector<float> RandomVector(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Central differences of loss() with respect to every element of x (fp32 inputs, fp64 probe),
// compared with `analytic` by norm-relative error.
void ExpectGradMatches(std::vector<float>& x, const std::vector<float>& analytic, const std::function<double()>& loss,
                       const char* what, float eps = 1e-2f, double tol = 2e-3) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  double diff2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + eps;
    const double up = loss();
    x[i] = saved - eps;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2.0 * static_cast<double>(eps));
    diff2 += (numeric - analytic[i]) * (numeric - analytic[i]);
    ref2 += numeric * numeric;
  }
  ASSERT_GT(ref2, 0.0) << what << ": gradient is identically zero, the check would be vacuous";
  EXPECT_LT(std::sqrt(diff2 / ref2), tol) << what;
}

class KernelsTest : public ::testing::Test {
 protected:
  CpuBackend be_;
};

TEST_F(KernelsTest, GemmMatchesNaiveWithTransposesAndBeta) {
  const int64_t M = 5, N = 7, K = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      std::vector<float> a = RandomVector(M * K, 1), b = RandomVector(K * N, 2), c = RandomVector(M * N, 3);
      std::vector<float> c0 = c;
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      be_.Gemm(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), N);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0.0;
          for (int64_t p = 0; p < K; ++p)
            s += static_cast<double>(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
          EXPECT_NEAR(c[i * N + j], 0.5 * s + 2.0 * c0[i * N + j], 1e-5) << ta << tb << i << j;
        }
    }
}

TEST_F(KernelsTest, LinearWithBiasGradients) {
  const int64_t rows = 4, in = 5, out = 3;
  std::vector<float> x = RandomVector(rows * in, 1), w = RandomVector(out * in, 2), b = RandomVector(out, 3);
  const std::vector<float> r = RandomVector(rows * out, 4);
  auto forward = [&] {
    std::vector<float> y(rows * out);
    be_.Gemm(false, true, rows, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
    be_.BiasForward(y.data(), b.data(), rows, out);
    return Dot(y, r);
  };
  std::vector<float> dx(rows * in), dw(out * in, 0.0f), db(out, 0.0f);
  be_.Gemm(false, false, rows, in, out, 1.0f, r.data(), out, w.data(), in, 0.0f, dx.data(), in);
  be_.Gemm(true, false, out, in, rows, 1.0f, r.data(), out, x.data(), in, 1.0f, dw.data(), in);
  be_.BiasBackward(r.data(), rows, out, db.data());
  ExpectGradMatches(x, dx, forward, "linear dx");
  ExpectGradMatches(w, dw, forward, "linear dW");
  ExpectGradMatches(b, db, forward, "linear db");
}

TEST_F(KernelsTest, EmbeddingForwardGathersAndBackwardScattersRepeats) {
  const int64_t vocab = 6, dim = 5;
  const std::vector<int32_t> tokens = {3, 1, 3, 5, 0, 3};
  std::vector<float> table = RandomVector(vocab * dim, 1);
  const std::vector<float> r = RandomVector(tokens.size() * dim, 2);
  auto forward = [&] {
    std::vector<float> out(tokens.size() * dim);
    be_.EmbeddingForward(tokens.data(), tokens.size(), table.data(), dim, out.data());
    return Dot(out, r);
  };
  std::vector<float> out(tokens.size() * dim);
  be_.EmbeddingForward(tokens.data(), tokens.size(), table.data(), dim, out.data());
  EXPECT_EQ(out[2 * dim + 4], table[3 * dim + 4]);
  std::vector<float> dtable(vocab * dim, 0.0f);
  be_.EmbeddingBackward(tokens.data(), tokens.size(), r.data(), dim, dtable.data());
  ExpectGradMatches(table, dtable, forward, "embedding dtable");
}

TEST_F(KernelsTest, RmsNormForwardAndGradients) {
  const int64_t rows = 3, dim = 8;
  std::vector<float> x = RandomVector(rows * dim, 1), w = RandomVector(dim, 2);
  const std::vector<float> r = RandomVector(rows * dim, 3);
  const float eps = 1e-5f;
  auto forward = [&] {
    std::vector<float> y(rows * dim), rstd(rows);
    be_.RmsNormForward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
    return Dot(y, r);
  };
  std::vector<float> y(rows * dim), rstd(rows);
  be_.RmsNormForward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
  double ss = 0.0;
  for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[dim + i]) * x[dim + i];
  EXPECT_NEAR(y[dim + 2], x[dim + 2] / std::sqrt(ss / dim + eps) * w[2], 1e-5);
  // dx accumulates: start from a non-zero "residual gradient" and subtract it afterwards.
  std::vector<float> dx(rows * dim, 0.25f), dw(dim, 0.0f);
  be_.RmsNormBackward(r.data(), x.data(), w.data(), rstd.data(), rows, dim, dx.data(), dw.data());
  for (float& v : dx) v -= 0.25f;
  ExpectGradMatches(x, dx, forward, "rmsnorm dx");
  ExpectGradMatches(w, dw, forward, "rmsnorm dw");
}

TEST_F(KernelsTest, RopeGradientsWithLlama3Scaling) {
  LlamaConfig config;
  config.hidden_size = 16;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 2;
  config.rope_theta = 500000.0;
  config.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 64};
  const int64_t D = config.HeadDim(), heads = 2, rows = 4, stride = heads * D;
  std::vector<float> cos, sin;
  BuildRopeTables(config, 64, &cos, &sin);
  const std::vector<int32_t> positions = {0, 5, 17, 63};
  std::vector<float> x = RandomVector(rows * stride, 1);
  const std::vector<float> r = RandomVector(rows * stride, 2);
  auto forward = [&] {
    std::vector<float> y = x;
    be_.RopeForward(y.data(), rows, stride, heads, D, positions.data(), cos.data(), sin.data());
    return Dot(y, r);
  };
  std::vector<float> dx = r;
  be_.RopeBackward(dx.data(), rows, stride, heads, D, positions.data(), cos.data(), sin.data());
  ExpectGradMatches(x, dx, forward, "rope dx");
}

TEST_F(KernelsTest, Llama3ScalingKeepsHighAndDividesLowFrequencies) {
  LlamaConfig config;
  config.hidden_size = 128;
  config.num_attention_heads = 1;
  config.num_key_value_heads = 1;
  config.rope_theta = 500000.0;
  const std::vector<double> plain = RopeInvFreq(config);
  config.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  const std::vector<double> scaled = RopeInvFreq(config);
  ASSERT_EQ(plain.size(), 64u);
  const double low_wavelen = 8192.0, high_wavelen = 8192.0 / 4.0;
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / plain[i];
    if (wavelen < high_wavelen) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i]);
      ++kept;
    } else if (wavelen > low_wavelen) {
      EXPECT_NEAR(scaled[i], plain[i] / 8.0, 1e-18);
      ++divided;
    } else {
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 8.0);
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  EXPECT_DOUBLE_EQ(plain[0], 1.0);
  EXPECT_NEAR(plain[1], std::pow(500000.0, -2.0 / 128.0), 1e-15);
}

TEST_F(KernelsTest, RopeScoresDependOnlyOnRelativePosition) {
  LlamaConfig config;
  config.hidden_size = 8;
  config.num_attention_heads = 1;
  config.num_key_value_heads = 1;
  const int64_t D = 8;
  std::vector<float> cos, sin;
  BuildRopeTables(config, 40, &cos, &sin);
  const std::vector<float> q0 = RandomVector(D, 1), k0 = RandomVector(D, 2);
  auto score = [&](int32_t pq, int32_t pk) {
    std::vector<float> q = q0, k = k0;
    be_.RopeForward(q.data(), 1, D, 1, D, &pq, cos.data(), sin.data());
    be_.RopeForward(k.data(), 1, D, 1, D, &pk, cos.data(), sin.data());
    return Dot(q, k);
  };
  EXPECT_NEAR(score(7, 3), score(30, 26), 1e-4);
  EXPECT_NEAR(score(0, 0), Dot(q0, k0), 1e-5);
  EXPECT_GT(std::abs(score(7, 3) - score(7, 4)), 1e-4);
}

// Naive fp64 causal GQA attention for one layout (packed rows).
std::vector<double> NaiveAttention(const AttentionShape& s, const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v) {
  const int64_t D = s.head_dim, group = s.n_heads / s.n_kv_heads;
  std::vector<double> out(static_cast<size_t>(s.batch * s.q_len * s.n_heads * D), 0.0);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.n_heads; ++h)
      for (int64_t i = 0; i < s.q_len; ++i) {
        const int64_t visible = s.kv_len - s.q_len + i + 1;
        std::vector<double> w(static_cast<size_t>(visible));
        double mx = -1e300, sum = 0.0;
        for (int64_t j = 0; j < visible; ++j) {
          double d = 0.0;
          for (int64_t e = 0; e < D; ++e)
            d += static_cast<double>(q[(b * s.q_len + i) * s.q_row_stride + h * D + e]) *
                 k[b * s.kv_batch_stride + j * s.kv_row_stride + (h / group) * D + e];
          w[j] = d / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, w[j]);
        }
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j < visible; ++j)
          for (int64_t e = 0; e < D; ++e)
            out[(b * s.q_len + i) * s.n_heads * D + h * D + e] +=
                w[j] / sum * v[b * s.kv_batch_stride + j * s.kv_row_stride + (h / group) * D + e];
      }
  return out;
}

TEST_F(KernelsTest, AttentionForwardMatchesNaiveGqaCausal) {
  const int64_t B = 2, T = 5, NH = 4, NKV = 2, D = 4;
  AttentionShape s{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};
  const std::vector<float> q = RandomVector(B * T * NH * D, 1), k = RandomVector(B * T * NKV * D, 2),
                           v = RandomVector(B * T * NKV * D, 3);
  std::vector<float> probs(B * NH * T * T), out(B * T * NH * D);
  be_.AttentionForward(s, q.data(), k.data(), v.data(), probs.data(), out.data());
  const std::vector<double> ref = NaiveAttention(s, q, k, v);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-5) << i;
  EXPECT_EQ(probs[1], 0.0f);  // query 0 never sees key 1
  EXPECT_FLOAT_EQ(probs[0], 1.0f);
}

TEST_F(KernelsTest, AttentionDecodeWithCacheStridesMatchesFull) {
  // One new query against a cache of capacity 8 holding 5 keys equals the last row of a full pass.
  const int64_t B = 2, T = 5, NH = 4, NKV = 2, D = 4, cap = 8;
  const std::vector<float> q = RandomVector(B * T * NH * D, 1), k = RandomVector(B * T * NKV * D, 2),
                           v = RandomVector(B * T * NKV * D, 3);
  AttentionShape full{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};
  std::vector<float> probs(B * NH * T * T), out(B * T * NH * D);
  be_.AttentionForward(full, q.data(), k.data(), v.data(), probs.data(), out.data());
  std::vector<float> kc(B * cap * NKV * D, 99.0f), vc(B * cap * NKV * D, 99.0f), q1(B * NH * D);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < T * NKV * D; ++i) {
      kc[b * cap * NKV * D + i] = k[b * T * NKV * D + i];
      vc[b * cap * NKV * D + i] = v[b * T * NKV * D + i];
    }
    for (int64_t i = 0; i < NH * D; ++i) q1[b * NH * D + i] = q[(b * T + T - 1) * NH * D + i];
  }
  AttentionShape step{B, 1, T, NH, NKV, D, NH * D, NKV * D, cap * NKV * D};
  std::vector<float> p1(B * NH * T), o1(B * NH * D);
  be_.AttentionForward(step, q1.data(), kc.data(), vc.data(), p1.data(), o1.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < NH * D; ++i) EXPECT_NEAR(o1[b * NH * D + i], out[(b * T + T - 1) * NH * D + i], 1e-6);
}

TEST_F(KernelsTest, AttentionGradientsGqaCausal) {
  const int64_t B = 2, T = 5, NH = 4, NKV = 2, D = 4;
  AttentionShape s{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};
  std::vector<float> q = RandomVector(B * T * NH * D, 1), k = RandomVector(B * T * NKV * D, 2),
                     v = RandomVector(B * T * NKV * D, 3);
  const std::vector<float> r = RandomVector(B * T * NH * D, 4);
  auto forward = [&] {
    std::vector<float> probs(B * NH * T * T), out(B * T * NH * D);
    be_.AttentionForward(s, q.data(), k.data(), v.data(), probs.data(), out.data());
    return Dot(out, r);
  };
  std::vector<float> probs(B * NH * T * T), out(B * T * NH * D), dprobs(probs.size());
  be_.AttentionForward(s, q.data(), k.data(), v.data(), probs.data(), out.data());
  std::vector<float> dq = r, dk(k.size(), 7.0f), dv(v.size(), 7.0f);  // dq aliases dout; dk/dv overwritten
  be_.AttentionBackward(s, q.data(), k.data(), v.data(), probs.data(), dq.data(), dprobs.data(), dq.data(), dk.data(),
                        dv.data());
  ExpectGradMatches(q, dq, forward, "attention dq");
  ExpectGradMatches(k, dk, forward, "attention dk");
  ExpectGradMatches(v, dv, forward, "attention dv");
}

TEST_F(KernelsTest, AttentionIsCausal) {
  const int64_t B = 1, T = 6, NH = 2, NKV = 1, D = 4;
  AttentionShape s{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};
  const std::vector<float> q = RandomVector(T * NH * D, 1);
  std::vector<float> k = RandomVector(T * NKV * D, 2), v = RandomVector(T * NKV * D, 3);
  std::vector<float> probs(NH * T * T), out1(T * NH * D), out2(T * NH * D);
  be_.AttentionForward(s, q.data(), k.data(), v.data(), probs.data(), out1.data());
  for (int64_t i = 4 * NKV * D; i < T * NKV * D; ++i) k[i] = v[i] = 5.0f;  // change keys/values 4 and 5
  be_.AttentionForward(s, q.data(), k.data(), v.data(), probs.data(), out2.data());
  for (int64_t i = 0; i < 4 * NH * D; ++i) EXPECT_EQ(out1[i], out2[i]) << i;
  EXPECT_NE(out1[5 * NH * D], out2[5 * NH * D]);
}

TEST_F(KernelsTest, SwiGluForwardAndGradients) {
  const int64_t n = 12;
  std::vector<float> gate = RandomVector(n, 1, 3.0f), up = RandomVector(n, 2);
  const std::vector<float> r = RandomVector(n, 3);
  auto forward = [&] {
    std::vector<float> h(n);
    be_.SwiGluForward(gate.data(), up.data(), n, h.data());
    return Dot(h, r);
  };
  std::vector<float> h(n);
  be_.SwiGluForward(gate.data(), up.data(), n, h.data());
  EXPECT_NEAR(h[3], gate[3] / (1.0 + std::exp(-static_cast<double>(gate[3]))) * up[3], 1e-6);
  std::vector<float> dgate(n), dup(n);
  be_.SwiGluBackward(r.data(), gate.data(), up.data(), n, dgate.data(), dup.data());
  ExpectGradMatches(gate, dgate, forward, "swiglu dgate");
  ExpectGradMatches(up, dup, forward, "swiglu dup");
}

TEST_F(KernelsTest, AddIsElementwise) {
  const std::vector<float> a = RandomVector(100000, 1), b = RandomVector(100000, 2);
  std::vector<float> out(a.size());
  be_.Add(a.data(), b.data(), a.size(), out.data());
  for (size_t i = 0; i < a.size(); i += 997) EXPECT_EQ(out[i], a[i] + b[i]);
}

TEST_F(KernelsTest, CrossEntropyWithMaskForwardAndGradient) {
  const int64_t rows = 5, vocab = 7;
  std::vector<float> logits = RandomVector(rows * vocab, 1, 3.0f);
  const std::vector<int32_t> targets = {2, 6, 0, 3, 3};
  const std::vector<uint8_t> mask = {1, 0, 1, 1, 0};
  const float scale = 1.0f / 3.0f;
  auto forward = [&] {
    std::vector<float> lse(rows), loss(rows);
    return scale *
           be_.CrossEntropyForward(logits.data(), targets.data(), mask.data(), rows, vocab, lse.data(), loss.data());
  };
  std::vector<float> lse(rows), loss(rows);
  const double total =
      be_.CrossEntropyForward(logits.data(), targets.data(), mask.data(), rows, vocab, lse.data(), loss.data());
  double ref = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(logits[r * vocab + j]));
    const double nll = std::log(sum) - logits[r * vocab + targets[r]];
    if (mask[r]) ref += nll;
    EXPECT_NEAR(loss[r], mask[r] ? nll : 0.0, 1e-5);
  }
  EXPECT_NEAR(total, ref, 1e-5);
  std::vector<float> dlogits = logits;  // in place, as the model uses it
  be_.CrossEntropyBackward(dlogits.data(), lse.data(), targets.data(), mask.data(), rows, vocab, scale, dlogits.data());
  for (int64_t j = 0; j < vocab; ++j) EXPECT_EQ(dlogits[1 * vocab + j], 0.0f);  // masked row
  ExpectGradMatches(logits, dlogits, forward, "cross-entropy dlogits");
}

}  // namespace
}  // namespace tributary
