// Byzantine workers against the aggregation rules, end to end through the round driver: ten workers
// (two of them Byzantine, 20%) train a tiny LLaMA with Ferret; the Byzantine ones upload crafted
// coefficient payloads. With the mean the held-out loss leaves the attack-free run's 10% band; with
// median, trimmed mean and Multi-Krum it stays inside (docs/security.md has the figures).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>

#include "coordinator/round_driver.h"
#include "federation/replica_state.h"
#include "federation/tasklet.h"
#include "peft/payload.h"
#include "tests/coordinator/round_sim_util.h"

namespace tributary {
namespace {

using namespace round_sim;  // NOLINT(google-build-using-namespace)

constexpr int kWorkers = 10;
constexpr int kByzantine = 2;  // the last two workers
constexpr int kRounds = 6;
constexpr float kFlip = 4;           // sign-flip: -4 x its own update, outweighing the honest under the mean
constexpr float kScale = 100;        // scaled: 100 x its own update
constexpr double kRandomScale = 20;  // random: N(0, (20 x the block's honest RMS)^2)

enum class Attack { kNone, kSignFlip, kScaled, kRandom, kLittleIsEnough };

const char* AttackName(Attack attack) {
  switch (attack) {
    case Attack::kNone: return "none";
    case Attack::kSignFlip: return "sign-flip";
    case Attack::kScaled: return "scaled";
    case Attack::kRandom: return "random";
    case Attack::kLittleIsEnough: return "little-is-enough";
  }
  return "?";
}

bool IsByzantine(int worker) {
  return worker >= kWorkers - kByzantine;
}

Payload ParseUpload(const std::vector<uint8_t>& bytes, const JobSpec& spec) {
  const int num_blocks = bytes[4] | (bytes[5] << 8);  // header: round u32 | L u16 (peft/payload.h)
  auto parsed = ParsePayload(bytes, PayloadExpectation{num_blocks, static_cast<int>(spec.ferret.K)});
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? *parsed : Payload{};
}

// Per coordinate mean and standard deviation over the honest payloads (the colluding attacker of
// "a little is enough" knows them). Block l of a payload holds a prefix of the round's K_l seeds that
// differs between clients (peft/payload.h): a missing coefficient is 0.
void HonestMoments(const std::vector<Payload>& honest, Payload* mean, Payload* stddev) {
  *mean = honest[0];
  for (const Payload& p : honest)
    for (size_t l = 0; l < p.gamma.size(); ++l)
      if (p.gamma[l].size() > mean->gamma[l].size()) mean->gamma[l].resize(p.gamma[l].size());
  *stddev = *mean;
  for (size_t l = 0; l < mean->gamma.size(); ++l) {
    for (size_t k = 0; k < mean->gamma[l].size(); ++k) {
      double sum = 0, sum_sq = 0;
      for (const Payload& p : honest) {
        const double g = k < p.gamma[l].size() ? p.gamma[l][k] : 0.0;
        sum += g;
        sum_sq += g * g;
      }
      const double mu = sum / honest.size();
      mean->gamma[l][k] = static_cast<float>(mu);
      stddev->gamma[l][k] = static_cast<float>(std::sqrt(std::max(0.0, sum_sq / honest.size() - mu * mu)));
    }
  }
}

double Rms(const Payload& p) {
  double sum_sq = 0;
  size_t count = 0;
  for (const std::vector<float>& block : p.gamma)
    for (float g : block) sum_sq += double{g} * g, ++count;
  return std::sqrt(sum_sq / std::max<size_t>(count, 1));
}

// The Byzantine payload of one worker from its own honest payload and the honest ones.
// z: how many honest standard deviations "a little is enough" moves every coordinate from the mean.
Payload Craft(Attack attack, double z, const Payload& own, const std::vector<Payload>& honest, uint64_t seed) {
  Payload mean, stddev;
  HonestMoments(honest, &mean, &stddev);
  Payload out = attack == Attack::kSignFlip || attack == Attack::kScaled ? own : mean;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> block_rms;  // blocks differ in scale by orders of magnitude
  for (const std::vector<float>& block : mean.gamma) block_rms.push_back(Rms(Payload{0, WireDtype::kFp32, {block}}));
  for (size_t l = 0; l < out.gamma.size(); ++l) {
    for (size_t k = 0; k < out.gamma[l].size(); ++k) {
      float& g = out.gamma[l][k];
      switch (attack) {
        case Attack::kNone: break;
        case Attack::kSignFlip: g = -kFlip * g; break;
        case Attack::kScaled: g = kScale * g; break;
        case Attack::kRandom: g = static_cast<float>(kRandomScale * block_rms[l] * normal(rng)); break;
        case Attack::kLittleIsEnough: g = mean.gamma[l][k] - z * stddev.gamma[l][k]; break;
      }
    }
  }
  return out;
}

// IID: worker w holds every fourth row of each pattern, starting at w % 4.
std::vector<SequenceRow> MixedRows(int worker) {
  std::vector<SequenceRow> rows;
  for (int pattern = 0; pattern < kNumWorkers; ++pattern) {
    const std::vector<SequenceRow> all = WorkerRows(pattern);
    for (size_t i = worker % 4; i < all.size(); i += 4) rows.push_back(all[i]);
  }
  return rows;
}

struct Outcome {
  double heldout = 0;                       // after the last round
  std::map<std::string, double> score_sum;  // anomaly scores summed over rounds, per worker
  std::map<std::string, int> excluded;      // rounds in which the rule left the worker out
};

enum class Data {
  kIid,     // every worker holds all four patterns
  kNonIid,  // worker w holds pattern w % 4 only
};

struct Attacker {
  Attack attack = Attack::kNone;
  double z = 0;  // little-is-enough only
};

Outcome RunJob(const AggregationOptions& aggregation, const Attacker& attacker, Data data = Data::kIid) {
  JobSpec spec = TinyJobSpec("ferret", 42, kRounds);
  spec.aggregation = aggregation;
  spec.aggregation_weights = AggregationWeights::kEqual;  // a Byzantine worker could claim any sample count
  TempDir dir;
  auto store = checkpoint::CheckpointStore::Open(dir.path());
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  std::vector<SimWorker> workers = MakeWorkers(spec, kWorkers);
  if (data == Data::kIid)
    for (int w = 0; w < kWorkers; ++w) workers[w].rows = MixedRows(w);
  auto driver = RoundDriver::Create(store->get(), "job", spec, workers[0].state(), 1000);
  EXPECT_TRUE(driver.ok()) << driver.status().ToString();
  Outcome outcome;
  if (!driver.ok()) return outcome;
  int64_t now_ms = 10'000;
  for (int r = 1; r <= kRounds; ++r, now_ms += 10'000) {
    auto start = (*driver)->StartRound(Inventory(workers), now_ms);
    EXPECT_TRUE(start.ok()) << start.status().ToString();
    if (!start.ok()) return outcome;
    EXPECT_EQ(start->participants.size(), static_cast<size_t>(kWorkers));
    std::vector<TaskletResult> results;
    std::vector<Payload> honest;
    for (int w = 0; w < kWorkers; ++w) {
      TaskletInput input{spec, start->round, workers[w].id, &workers[w].rows};
      auto result = RunTasklet(input, *workers[w].method, *workers[w].model, workers[w].adapters.get());
      if (!result.ok()) {  // an attack that wrecked the global model makes honest training diverge
        std::printf("  round %d: %s\n", r, result.status().ToString().c_str());
        outcome.heldout = std::numeric_limits<double>::infinity();
        return outcome;
      }
      if (!IsByzantine(w)) honest.push_back(ParseUpload(result->payload, spec));
      results.push_back(std::move(*result));
    }
    for (int w = 0; w < kWorkers; ++w) {
      std::vector<uint8_t> payload = results[w].payload;
      if (IsByzantine(w) && attacker.attack != Attack::kNone) {
        auto crafted =
            SerializePayload(Craft(attacker.attack, attacker.z, ParseUpload(payload, spec), honest, 1000 * r + w));
        EXPECT_TRUE(crafted.ok()) << crafted.status().ToString();
        payload = *crafted;
      }
      Upload upload{"job",        workers[w].id, start->round, payload, results[w].num_samples, results[w].train_loss,
                    now_ms + 1000};
      auto accepted = (*driver)->AcceptUpload(upload);
      EXPECT_TRUE(accepted.ok() && *accepted == UploadOutcome::kAccepted) << workers[w].id;
    }
    auto committed = (*driver)->CloseRound(now_ms + 2000);
    EXPECT_TRUE(committed.ok()) << committed.status().ToString();
    if (!committed.ok()) return outcome;
    for (const checkpoint::RoundParticipant& p : committed->participants) {
      outcome.score_sum[p.worker_id] += p.anomaly_score;
      outcome.excluded[p.worker_id] += p.excluded ? 1 : 0;
    }
    for (SimWorker& w : workers) EXPECT_TRUE(w.method->Apply(committed->aggregate, committed->round, &w.state()).ok());
  }
  outcome.heldout = HeldOutLoss(spec, (*driver)->global());
  return outcome;
}

AggregationOptions Rule(AggregationRule rule) {
  AggregationOptions options;
  options.rule = rule;
  options.trim_fraction = 0.2;
  options.byzantine = kByzantine;
  return options;
}

bool WithinTenPercent(double loss, double reference) {
  return std::isfinite(loss) && std::fabs(loss - reference) <= 0.1 * reference;
}

// The attack-free run with the mean, once per process.
double AttackFreeLoss() {
  static const double loss = RunJob(Rule(AggregationRule::kMean), Attacker{}).heldout;
  return loss;
}

double NonIidAttackFreeLoss() {
  static const double loss = RunJob(Rule(AggregationRule::kMean), Attacker{}, Data::kNonIid).heldout;
  return loss;
}

struct RuleResult {
  double heldout = 0;
  double byzantine_score = 0;  // mean anomaly score of the Byzantine workers over the rounds
  double honest_score = 0;
  int byzantine_excluded = 0;  // worker-rounds the rule left a Byzantine worker out
};

RuleResult RunRule(AggregationRule rule, const Attacker& attacker, Data data = Data::kIid) {
  const double reference = data == Data::kIid ? AttackFreeLoss() : NonIidAttackFreeLoss();
  const Outcome outcome = RunJob(Rule(rule), attacker, data);
  RuleResult result;
  result.heldout = outcome.heldout;
  for (int w = 0; w < kWorkers && std::isfinite(outcome.heldout); ++w) {
    const std::string id = "w" + std::to_string(w);
    (IsByzantine(w) ? result.byzantine_score : result.honest_score) += outcome.score_sum.at(id);
    if (IsByzantine(w)) result.byzantine_excluded += outcome.excluded.at(id);
  }
  result.byzantine_score /= kByzantine * kRounds;
  result.honest_score /= (kWorkers - kByzantine) * kRounds;
  std::printf(
      "%-17s %-12s held-out %.4f (attack-free mean %.4f); anomaly score Byzantine %.3g, honest %.3g; "
      "Byzantine excluded %d/%d\n",
      AttackName(attacker.attack), AggregationRuleName(rule), result.heldout, reference, result.byzantine_score,
      result.honest_score, result.byzantine_excluded, kByzantine * kRounds);
  return result;
}

constexpr AggregationRule kRobustRules[] = {AggregationRule::kMedian, AggregationRule::kTrimmedMean,
                                            AggregationRule::kMultiKrum};

// The acceptance: the mean leaves the attack-free run's 10% band, every robust rule stays in
// it, flags the attackers with higher anomaly scores, and Multi-Krum (m = n - f) leaves both out.
void ExpectRobustAndMeanNot(const Attacker& attacker) {
  const double reference = AttackFreeLoss();
  ASSERT_TRUE(std::isfinite(reference));
  const RuleResult mean = RunRule(AggregationRule::kMean, attacker);
  EXPECT_FALSE(WithinTenPercent(mean.heldout, reference)) << AttackName(attacker.attack) << " should move the mean";
  for (AggregationRule rule : kRobustRules) {
    const RuleResult robust = RunRule(rule, attacker);
    const std::string what = std::string(AttackName(attacker.attack)) + " with " + AggregationRuleName(rule);
    EXPECT_TRUE(WithinTenPercent(robust.heldout, reference)) << what << ": " << robust.heldout << " vs " << reference;
    EXPECT_GT(robust.byzantine_score, 2 * robust.honest_score) << what;
    if (rule == AggregationRule::kMultiKrum) {
      EXPECT_EQ(robust.byzantine_excluded, kByzantine * kRounds) << what;
    }
  }
}

TEST(ByzantineTest, AttackFreeRunLearns) {
  JobSpec spec = TinyJobSpec("ferret", 42, kRounds);
  const double initial = HeldOutLoss(spec, MakeWorkers(spec, 1)[0].state());
  std::printf("attack-free mean: held-out %.4f -> %.4f over %d rounds\n", initial, AttackFreeLoss(), kRounds);
  EXPECT_LT(AttackFreeLoss(), 0.5 * initial) << "the 10% band is only meaningful when the honest run learns";
  for (AggregationRule rule : kRobustRules) {
    const double loss = RunJob(Rule(rule), Attacker{}).heldout;
    std::printf("attack-free %s: %.4f\n", AggregationRuleName(rule), loss);
    EXPECT_TRUE(WithinTenPercent(loss, AttackFreeLoss())) << AggregationRuleName(rule) << " costs too much on IID data";
  }
}

TEST(ByzantineTest, SignFlip) {
  ExpectRobustAndMeanNot(Attacker{Attack::kSignFlip});
}
TEST(ByzantineTest, Scaled) {
  ExpectRobustAndMeanNot(Attacker{Attack::kScaled});
}
TEST(ByzantineTest, Random) {
  ExpectRobustAndMeanNot(Attacker{Attack::kRandom});
}
// Every coordinate 25 honest standard deviations below the honest mean: enough to move the mean.
TEST(ByzantineTest, LittleIsEnough) {
  ExpectRobustAndMeanNot(Attacker{Attack::kLittleIsEnough, 25.0});
}

// At z = 1 the crafted update sits inside the honest cloud: no rule flags it (its anomaly score is
// below the honest ones, Multi-Krum keeps it) and, here, it moves no rule out of the band either.
TEST(ByzantineTest, LittleIsEnoughAtSmallZIsNotFlaggedButHarmless) {
  const Attacker attacker{Attack::kLittleIsEnough, 1.0};
  for (AggregationRule rule :
       {AggregationRule::kMean, AggregationRule::kMedian, AggregationRule::kTrimmedMean, AggregationRule::kMultiKrum}) {
    const RuleResult result = RunRule(rule, attacker);
    EXPECT_TRUE(WithinTenPercent(result.heldout, AttackFreeLoss())) << AggregationRuleName(rule);
    if (rule != AggregationRule::kMean) {
      EXPECT_LT(result.byzantine_score, result.honest_score) << AggregationRuleName(rule);
    }
  }
}

// Non-IID data (one pattern per worker) is where coordinate-wise rules pay: honest updates disagree,
// so two same-sided attackers shift the median and the trimmed window. Multi-Krum still holds here.
TEST(ByzantineTest, SignFlipOnNonIidData) {
  const double reference = NonIidAttackFreeLoss();
  const Attacker attacker{Attack::kSignFlip};
  const RuleResult mean = RunRule(AggregationRule::kMean, attacker, Data::kNonIid);
  const RuleResult median = RunRule(AggregationRule::kMedian, attacker, Data::kNonIid);
  const RuleResult krum = RunRule(AggregationRule::kMultiKrum, attacker, Data::kNonIid);
  EXPECT_FALSE(WithinTenPercent(mean.heldout, reference));
  EXPECT_LT(median.heldout, mean.heldout);
  EXPECT_TRUE(WithinTenPercent(krum.heldout, reference)) << krum.heldout << " vs " << reference;
}

}  // namespace
}  // namespace tributary
