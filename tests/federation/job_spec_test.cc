#include "federation/job_spec.h"
#include "federation/method.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace tributary {
namespace {

namespace fs = std::filesystem;

// The two required keys, on lines 1-4.
const std::string kRequired =
    "model:\n"
    "  base: /models/open_llama_3b\n"
    "data:\n"
    "  dataset: dolly\n";

// Parses kRequired + `extra` (so `extra` starts at line 5) and returns the error message ("" on success).
std::string ErrorOf(const std::string& extra, const std::vector<std::string>& overrides = {}) {
  Result<JobSpec> spec = ParseJobSpec(kRequired + extra, "job.yaml", overrides);
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  return spec.status().message();
}

JobSpec ParseOk(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  Result<JobSpec> spec = ParseJobSpec(yaml, "job.yaml", overrides);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return spec.ok() ? *spec : JobSpec{};
}

TEST(JobSpecTest, FullFerretSpecFillsEveryField) {
  const std::string yaml = R"(name: dolly ferret 3b
model:
  base: /models/open_llama_3b
data:
  dataset: dolly
  seq_len: 512
federation:
  mode: ferret
  rounds: 40
  client_fraction: 0.05
  min_clients: 3
  max_clients: 40
  quorum: 0.8
  deadline_floor_s: 120
  deadline_ceiling_s: 1800.5
  seed: 1234567890123
  aggregation_weights: equal
train:
  local_steps: 10
  batch_size: 1
  grad_accum: 4
  lr: 3e-4
  optimizer: sgd
  weight_decay: 0.01
  momentum: 0.5
  max_grad_norm: 1.5
  server_lr: 3
ferret:
  k: 100
  distribution: trunc_normal
  scaling: reference
  blocking: fixed_chunks
  allocation: sqrt_d_norm
  seed_mode: per_round
  wire_dtype: bf16
eval:
  dataset: dolly-heldout
  every: 5
checkpoint:
  snapshot_every: 20
)";
  const JobSpec s = ParseOk(yaml);
  EXPECT_EQ(s.name, "dolly ferret 3b");
  EXPECT_EQ(s.base_model, "/models/open_llama_3b");
  EXPECT_EQ(s.dataset, "dolly");
  EXPECT_EQ(s.seq_len, 512);
  EXPECT_EQ(s.mode, "ferret");
  EXPECT_EQ(s.rounds, 40);
  EXPECT_DOUBLE_EQ(s.client_fraction, 0.05);
  EXPECT_EQ(s.min_clients, 3);
  EXPECT_EQ(s.max_clients, 40);
  EXPECT_DOUBLE_EQ(s.quorum, 0.8);
  EXPECT_DOUBLE_EQ(s.deadline_floor_s, 120);
  EXPECT_DOUBLE_EQ(s.deadline_ceiling_s, 1800.5);
  EXPECT_EQ(s.seed, 1234567890123u);
  EXPECT_EQ(s.aggregation_weights, AggregationWeights::kEqual);
  EXPECT_EQ(s.local_steps, 10);
  EXPECT_EQ(s.batch_size, 1);
  EXPECT_EQ(s.grad_accum, 4);
  EXPECT_DOUBLE_EQ(s.lr, 3e-4);
  EXPECT_EQ(s.optimizer, "sgd");
  EXPECT_DOUBLE_EQ(s.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(s.momentum, 0.5);
  EXPECT_DOUBLE_EQ(s.max_grad_norm, 1.5);
  EXPECT_DOUBLE_EQ(s.server_lr, 3);
  EXPECT_EQ(s.ferret.K, 100);
  EXPECT_EQ(s.ferret.distribution, Distribution::kTruncNormal);
  EXPECT_EQ(s.ferret.scaling, Scaling::kReference);
  EXPECT_EQ(s.ferret.blocking, BlockingRule::kFixedChunks);
  EXPECT_EQ(s.ferret.allocation, Allocation::kSqrtDNorm);
  EXPECT_EQ(s.ferret.seed_mode, SeedMode::kPerRound);
  EXPECT_EQ(s.ferret.wire_dtype, WireDtype::kBf16);
  EXPECT_EQ(s.eval_dataset, "dolly-heldout");
  EXPECT_EQ(s.eval_every, 5);
  EXPECT_EQ(s.snapshot_every, 20);
  EXPECT_EQ(s.source_text, yaml);
}

TEST(JobSpecTest, LoraSpecFillsLoraFields) {
  const JobSpec s = ParseOk(kRequired +
                            "federation: {mode: lora}\n"
                            "train: {optimizer: adamw, lr: 2e-4}\n"
                            "lora:\n"
                            "  rank: 16\n"
                            "  alpha: 32\n"
                            "  dropout: 0.05\n"
                            "  targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]\n");
  EXPECT_EQ(s.mode, "lora");
  EXPECT_EQ(s.optimizer, "adamw");
  EXPECT_EQ(s.lora.rank, 16);
  EXPECT_DOUBLE_EQ(s.lora.alpha, 32);
  EXPECT_DOUBLE_EQ(s.lora.dropout, 0.05);
  EXPECT_EQ(s.lora.target_modules,
            (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));
  // A single scalar is a one-element list.
  EXPECT_EQ(ParseOk(kRequired + "federation: {mode: lora}\nlora: {targets: down_proj}\n").lora.target_modules,
            std::vector<std::string>{"down_proj"});
}

TEST(JobSpecTest, UnsetKeysTakeTheStructDefaults) {
  JobSpec expected;
  expected.base_model = "/models/open_llama_3b";
  expected.dataset = "dolly";
  const JobSpec parsed = ParseOk(kRequired);
  EXPECT_EQ(CanonicalJobSpec(parsed), CanonicalJobSpec(expected));
  EXPECT_EQ(parsed.mode, "ferret");
  EXPECT_EQ(parsed.lora.target_modules, expected.lora.target_modules);
  // Mode fedavg keeps every other default too.
  expected.mode = "fedavg";
  EXPECT_EQ(CanonicalJobSpec(ParseOk(kRequired + "federation:\n  mode: fedavg\n")), CanonicalJobSpec(expected));
}

TEST(JobSpecTest, FederatedModeNamesAreTheRegisteredMethods) {
  std::vector<std::string> names;
  for (const MethodInfo* method : RegisteredMethods()) names.emplace_back(method->name);
  EXPECT_EQ(names, (std::vector<std::string>{"ferret", "fedavg", "lora", "cluster", "fedkseed"}));
  ASSERT_NE(FindMethod("lora"), nullptr);
  EXPECT_TRUE(FindMethod("lora")->trains_adapters);
  EXPECT_EQ(FindMethod("fedsgd"), nullptr);
  Result<JobSpec> unknown = ParseJobSpec(kRequired + "federation: {mode: fedsgd}\n", "job.yaml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("ferret|fedavg|lora"), std::string::npos) << unknown.status().message();
}

TEST(JobSpecTest, RequiredFields) {
  Result<JobSpec> no_model = ParseJobSpec("data:\n  dataset: dolly\n", "job.yaml");
  ASSERT_FALSE(no_model.ok());
  EXPECT_EQ(no_model.status().message(),
            "job.yaml: field 'model.base': must be set (the base model directory, the same path on every worker)");
  Result<JobSpec> no_data = ParseJobSpec("model:\n  base: /m\n", "job.yaml");
  ASSERT_FALSE(no_data.ok());
  EXPECT_EQ(no_data.status().message(),
            "job.yaml: field 'data.dataset': must be set (a dataset name the workers registered with --data)");
  Result<JobSpec> empty = ParseJobSpec("", "empty.yaml");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(),
            "empty.yaml: field 'model.base': must be set (the base model directory, the same path on every worker)");
  Result<JobSpec> blank = ParseJobSpec("model:\n  base: ''\ndata:\n  dataset: dolly\n", "job.yaml");
  ASSERT_FALSE(blank.ok());
  EXPECT_EQ(blank.status().message(),
            "job.yaml:2: key 'model.base': must not be empty (the base model directory, the same path on every "
            "worker)");
}

TEST(JobSpecTest, SchemaErrorsNameFileLineAndKey) {
  EXPECT_EQ(ErrorOf("federation:\n  roundz: 3\n"), "job.yaml:6: unknown key 'federation.roundz'");
  EXPECT_EQ(ErrorOf("privacy:\n  epsilon: 1\n"), "job.yaml:6: unknown key 'privacy.epsilon'");
  EXPECT_EQ(ErrorOf("secrets:\n  epsilon: 1\n"), "job.yaml:5: unknown key 'secrets'");
  EXPECT_EQ(ErrorOf("federation:\n  rounds: ten\n"),
            "job.yaml:6: key 'federation.rounds': expected an integer, got 'ten'");
  EXPECT_EQ(ErrorOf("train:\n  lr: fast\n"), "job.yaml:6: key 'train.lr': expected a number, got 'fast'");
  EXPECT_EQ(ErrorOf("federation:\n  rounds: 0\n"), "job.yaml:6: key 'federation.rounds': 0 is outside [1, 100000]");
  EXPECT_EQ(ErrorOf("federation:\n  mode: fedsgd\n"),
            "job.yaml:6: key 'federation.mode': 'fedsgd' is not one of ferret|fedavg|lora|cluster|fedkseed");
  EXPECT_EQ(ErrorOf("ferret:\n  wire_dtype: fp16\n"),
            "job.yaml:6: key 'ferret.wire_dtype': 'fp16' is not one of fp32|bf16");
  EXPECT_EQ(ErrorOf("ferret:\n  k: 1\n"), "job.yaml:6: key 'ferret.k': 1 is outside [2, 65535]");
  EXPECT_EQ(ErrorOf("federation: 3\n"), "job.yaml:5: key 'federation' is a section and needs a mapping");
  const std::string bad_yaml = ErrorOf("train:\n  lr: [1\n");
  EXPECT_EQ(bad_yaml.rfind("job.yaml:", 0), 0u) << bad_yaml;
  EXPECT_NE(bad_yaml.find("invalid YAML"), std::string::npos) << bad_yaml;
}

TEST(JobSpecTest, OpenRangesNameTheKeyAndLine) {
  EXPECT_EQ(ErrorOf("federation:\n  client_fraction: 0\n"),
            "job.yaml:6: key 'federation.client_fraction': 0 is outside (0, 1]");
  EXPECT_EQ(ErrorOf("federation:\n  client_fraction: 1.5\n"),
            "job.yaml:6: key 'federation.client_fraction': 1.5 is outside (0, 1]");
  EXPECT_EQ(ErrorOf("federation:\n  quorum: 0\n"), "job.yaml:6: key 'federation.quorum': 0 is outside (0, 1]");
  EXPECT_EQ(ErrorOf("train:\n  lr: 0\n"), "job.yaml:6: key 'train.lr': 0 is outside (0, 10]");
  EXPECT_EQ(ErrorOf("train:\n  lr: -1e-4\n"), "job.yaml:6: key 'train.lr': -0.0001 is outside (0, 10]");
  EXPECT_EQ(ErrorOf("train:\n  momentum: 1\n"), "job.yaml:6: key 'train.momentum': 1 is outside [0, 1)");
  EXPECT_EQ(ErrorOf("train:\n  server_lr: 0\n"), "job.yaml:6: key 'train.server_lr': 0 is outside (0, 1000]");
  EXPECT_EQ(ErrorOf("federation: {mode: lora}\nlora:\n  alpha: 0\n"),
            "job.yaml:7: key 'lora.alpha': 0 is outside (0, 10000]");
  EXPECT_EQ(ErrorOf("federation: {mode: lora}\nlora:\n  dropout: 1\n"),
            "job.yaml:7: key 'lora.dropout': 1 is outside [0, 1)");
  // The closed ends are accepted.
  EXPECT_EQ(ErrorOf("federation: {client_fraction: 1, quorum: 1}\ntrain: {lr: 10, momentum: 0}\n"), "");
}

TEST(JobSpecTest, FederationCrossFieldRules) {
  EXPECT_EQ(ErrorOf("federation:\n  min_clients: 8\n  max_clients: 4\n"),
            "job.yaml: field 'federation.min_clients': must not exceed federation.max_clients when a cap is set, "
            "got federation.min_clients=8 (job.yaml:6) and federation.max_clients=4 (job.yaml:7)");
  EXPECT_EQ(ErrorOf("federation:\n  min_clients: 8\n  max_clients: 0\n"), "");  // 0 = no cap
  EXPECT_EQ(ErrorOf("federation:\n  min_clients: 4\n  max_clients: 4\n"), "");
  EXPECT_EQ(ErrorOf("federation:\n  deadline_floor_s: 7200\n"),
            "job.yaml: field 'federation.deadline_floor_s': must not exceed federation.deadline_ceiling_s, got "
            "federation.deadline_floor_s=7200 (job.yaml:6) and federation.deadline_ceiling_s=3600 (default)");
  EXPECT_EQ(ErrorOf("federation:\n  deadline_floor_s: 600\n  deadline_ceiling_s: 600\n"), "");
}

TEST(JobSpecTest, MomentumOnlyWithSgd) {
  EXPECT_EQ(ErrorOf("train:\n  optimizer: adamw\n  momentum: 0.9\n"),
            "job.yaml: field 'train.momentum': applies only to train.optimizer sgd, got train.optimizer=adamw "
            "(job.yaml:6)");
  EXPECT_EQ(ErrorOf("train:\n  optimizer: sgd\n  momentum: 0.9\n"), "");
}

TEST(JobSpecTest, ModeSpecificSectionsNeedTheirMode) {
  EXPECT_EQ(ErrorOf("federation:\n  mode: fedavg\nferret:\n  k: 100\n"),
            "job.yaml: field 'ferret.k': set at job.yaml:8, but ferret.* keys apply only when federation.mode is "
            "ferret, got federation.mode=fedavg (job.yaml:6)");
  // Writing a default value explicitly still counts as setting the key.
  EXPECT_EQ(ErrorOf("federation:\n  mode: lora\nferret:\n  wire_dtype: fp32\n"),
            "job.yaml: field 'ferret.wire_dtype': set at job.yaml:8, but ferret.* keys apply only when "
            "federation.mode is ferret, got federation.mode=lora (job.yaml:6)");
  EXPECT_EQ(ErrorOf("lora:\n  rank: 4\n"),
            "job.yaml: field 'lora.rank': set at job.yaml:6, but lora.* keys apply only when federation.mode is "
            "lora, got federation.mode=ferret (default)");
  EXPECT_EQ(ErrorOf("federation: {mode: fedavg}\nlora: {rank: 4}\n"),
            "job.yaml: field 'lora.rank': set at job.yaml:6, but lora.* keys apply only when federation.mode is "
            "lora, got federation.mode=fedavg (job.yaml:5)");
  // An empty section sets nothing.
  EXPECT_EQ(ErrorOf("federation: {mode: fedavg}\nferret: {}\n"), "");
}

TEST(JobSpecTest, FerretScalingAndSeedModeRules) {
  EXPECT_EQ(ErrorOf("ferret:\n  scaling: reference\n"),
            "job.yaml: field 'ferret.scaling': reference needs ferret.distribution uniform or trunc_normal (with "
            "rademacher it equals unbiased scaling), got ferret.distribution=rademacher (default)");
  EXPECT_EQ(ErrorOf("ferret:\n  scaling: reference\n  distribution: uniform\n"), "");
  EXPECT_EQ(ErrorOf("ferret:\n  scaling: reference\n  distribution: trunc_normal\n"), "");
  EXPECT_EQ(ErrorOf("ferret:\n  seed_mode: fixed_pool\n"),
            "job.yaml: field 'ferret.seed_mode': fixed_pool needs ferret.allocation uniform (prefix support would "
            "confine each block to the same first K_l vectors in every round), got ferret.allocation=norm_ratio "
            "(default)");
  EXPECT_EQ(ErrorOf("ferret:\n  seed_mode: fixed_pool\n  allocation: uniform\n"), "");
}

TEST(JobSpecTest, LoraTargets) {
  const std::string lora = "federation: {mode: lora}\nlora:\n";
  EXPECT_EQ(ErrorOf(lora + "  targets: [q_proj, qkv_proj]\n"),
            "job.yaml:7: key 'lora.targets': 'qkv_proj' is not one of "
            "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj");
  EXPECT_EQ(ErrorOf(lora + "  targets: [q_proj, v_proj, q_proj]\n"),
            "job.yaml:7: key 'lora.targets': 'q_proj' is listed twice");
  EXPECT_EQ(ErrorOf(lora + "  targets: []\n"), "job.yaml:7: key 'lora.targets': must name at least one projection");
}

TEST(JobSpecTest, DatasetNamesAndNameAndEval) {
  EXPECT_EQ(ParseJobSpec("model: {base: /m}\ndata: {dataset: a=b}\n", "job.yaml").status().message(),
            "job.yaml:2: key 'data.dataset': dataset name 'a=b' must not contain '=' or whitespace");
  EXPECT_EQ(ErrorOf("eval:\n  dataset: held out\n"),
            "job.yaml:6: key 'eval.dataset': dataset name 'held out' must not contain '=' or whitespace");
  EXPECT_EQ(ErrorOf("name: \"two\\nlines\"\n"), "job.yaml:5: key 'name': must be one line");
  EXPECT_EQ(ErrorOf("eval:\n  every: 5\n"),
            "job.yaml: field 'eval.every': set at job.yaml:6, but eval.dataset is empty");
  EXPECT_EQ(ErrorOf("eval:\n  every: 5\n  dataset: heldout\n"), "");
}

TEST(JobSpecTest, OverridesApplyBeforeValidation) {
  const JobSpec s = ParseOk(kRequired + "federation:\n  rounds: 40\n",
                            {"federation.rounds=3", "train.lr=5e-5", "federation.mode=lora",
                             "lora.targets=[q_proj, k_proj]", "name=override run"});
  EXPECT_EQ(s.rounds, 3);
  EXPECT_DOUBLE_EQ(s.lr, 5e-5);
  EXPECT_EQ(s.mode, "lora");
  EXPECT_EQ(s.lora.target_modules, (std::vector<std::string>{"q_proj", "k_proj"}));
  EXPECT_EQ(s.name, "override run");
  // The stored text is the file as submitted; the overrides show in the canonical form.
  EXPECT_EQ(s.source_text, kRequired + "federation:\n  rounds: 40\n");
  EXPECT_NE(CanonicalJobSpec(s), CanonicalJobSpec(ParseOk(kRequired + "federation:\n  rounds: 40\n")));
  // An override can supply a required key, and the last override of a key wins.
  EXPECT_EQ(ParseOk("data: {dataset: dolly}\n", {"model.base=/m", "federation.rounds=5", "federation.rounds=6"}).rounds,
            6);
}

TEST(JobSpecTest, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(ErrorOf("", {"federation.rounds=0"}),
            "--set federation.rounds=0: key 'federation.rounds': 0 is outside [1, 100000]");
  EXPECT_EQ(ErrorOf("", {"federation.roundz=3"}), "--set federation.roundz=3: unknown key 'federation.roundz'");
  EXPECT_EQ(ErrorOf("", {"rounds"}), "--set 'rounds': expected key=value");
  EXPECT_EQ(ErrorOf("", {"train.lr=0"}), "--set train.lr=0: key 'train.lr': 0 is outside (0, 10]");
  EXPECT_EQ(ErrorOf("", {"ferret.k=100", "federation.mode=fedavg"}),
            "job.yaml: field 'ferret.k': set at --set ferret.k=100, but ferret.* keys apply only when "
            "federation.mode is ferret, got federation.mode=fedavg (--set federation.mode=fedavg)");
  EXPECT_EQ(ErrorOf("federation:\n  max_clients: 4\n", {"federation.min_clients=8"}),
            "job.yaml: field 'federation.min_clients': must not exceed federation.max_clients when a cap is set, "
            "got federation.min_clients=8 (--set federation.min_clients=8) and federation.max_clients=4 "
            "(job.yaml:6)");
  // An override fixes a value the file got wrong.
  EXPECT_EQ(ErrorOf("federation:\n  mode: fedavg\nferret:\n  k: 100\n", {"federation.mode=ferret"}), "");
}

TEST(JobSpecTest, LoadJobSpecNamesThePath) {
  const fs::path dir = fs::temp_directory_path() / ("trib_jobspec_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "job.yaml").string();
  {
    std::ofstream out(path);
    out << kRequired << "federation:\n  rounds: many\n";
  }
  Result<JobSpec> bad = LoadJobSpec(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), path + ":6: key 'federation.rounds': expected an integer, got 'many'");
  // A value the file cannot hold is an error even when an override sets the key: the file loads first.
  EXPECT_FALSE(LoadJobSpec(path, {"federation.rounds=7"}).ok());
  {
    std::ofstream out(path);
    out << kRequired << "federation:\n  rounds: 5\n";
  }
  Result<JobSpec> good = LoadJobSpec(path, {"federation.rounds=7"});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->rounds, 7);
  EXPECT_EQ(good->source_text, kRequired + "federation:\n  rounds: 5\n");
  const std::string missing = (dir / "missing.yaml").string();
  Result<JobSpec> none = LoadJobSpec(missing);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find(missing), std::string::npos) << none.status().message();
  fs::remove_all(dir);
}

TEST(JobSpecTest, CanonicalFormIgnoresFormattingCommentsAndOrder) {
  const std::string a = R"(model:
  base: /models/llama
data:
  dataset: dolly
federation:
  rounds: 20
  quorum: 0.75
train:
  lr: 0.0001
  local_steps: 10
)";
  const std::string b = R"(# the same job, written differently
train: {local_steps: 10, lr: 1e-4}   # flow style, exponent notation
federation:
    quorum: 7.5e-1
    rounds: 20
data:
    dataset: "dolly"
model:
    base: '/models/llama'
)";
  const JobSpec sa = ParseOk(a);
  const JobSpec sb = ParseOk(b);
  EXPECT_NE(sa.source_text, sb.source_text);
  EXPECT_EQ(CanonicalJobSpec(sa), CanonicalJobSpec(sb));
  EXPECT_EQ(JobSpecHash(sa), JobSpecHash(sb));

  // Any changed value changes the form and the hash.
  for (const std::string& change :
       {std::string("federation.rounds=21"), std::string("train.lr=2e-4"), std::string("name=x"),
        std::string("federation.seed=1"), std::string("ferret.k=201"), std::string("federation.mode=fedavg")}) {
    const JobSpec changed = ParseOk(a, {change});
    EXPECT_NE(CanonicalJobSpec(changed), CanonicalJobSpec(sa)) << change;
    EXPECT_NE(JobSpecHash(changed), JobSpecHash(sa)) << change;
  }
  JobSpec targets = ParseOk(a, {"federation.mode=lora"});
  JobSpec swapped = targets;
  swapped.lora.target_modules = {"v_proj", "q_proj"};
  EXPECT_NE(CanonicalJobSpec(targets), CanonicalJobSpec(swapped));
  EXPECT_NE(JobSpecHash(targets), JobSpecHash(swapped));
}

// 64-bit FNV-1a written out independently of base/hash.h.
uint64_t ReferenceFnv1a(const std::string& text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

TEST(JobSpecTest, HashIsFnv1aOfTheCanonicalForm) {
  ASSERT_EQ(ReferenceFnv1a("a"), 0xaf63dc4c8601ec8cull);  // published FNV-1a test vector
  const JobSpec spec = ParseOk(kRequired + "federation: {rounds: 3}\n");
  EXPECT_EQ(JobSpecHash(spec), ReferenceFnv1a(CanonicalJobSpec(spec)));
}

// Every canonical line is "key: value" with a schema key and a YAML value: feeding the lines back as
// --set overrides rebuilds the same spec, so the form renders every field and loses nothing.
TEST(JobSpecTest, CanonicalFormRendersEveryField) {
  const std::vector<std::string> specs = {
      kRequired +
          "name: 'quote \" and \\\\ back'\nfederation: {rounds: 7, seed: 99, client_fraction: 0.1}\n"
          "ferret: {k: 64, distribution: uniform, scaling: reference}\neval: {dataset: held, every: 2}\n",
      kRequired + "federation: {mode: lora}\nlora: {rank: 4, alpha: 8.5, targets: [up_proj, q_proj]}\n",
      kRequired + "federation: {mode: fedavg, max_clients: 9}\ntrain: {optimizer: adamw, weight_decay: 0.1}\n",
      kRequired +
          "federation: {min_clients: 7}\naggregation: {rule: multi_krum, byzantine: 2, select: 3, "
          "clip_norm: 2.5}\n",
  };
  for (const std::string& yaml : specs) {
    const JobSpec original = ParseOk(yaml);
    const std::string canonical = CanonicalJobSpec(original);
    std::vector<std::string> overrides;
    std::set<std::string> keys;
    std::istringstream lines(canonical);
    std::string line;
    while (std::getline(lines, line)) {
      const size_t colon = line.find(": ");
      ASSERT_NE(colon, std::string::npos) << line;
      const std::string key = line.substr(0, colon);
      EXPECT_TRUE(keys.insert(key).second) << "duplicate " << key;
      const std::string section = key.substr(0, key.find('.'));
      // Keys the mode ignores cannot be set (they are at their defaults anyway).
      if ((section == "ferret" || section == "lora") && section != original.mode) continue;
      if (key == "eval.every" && original.eval_dataset.empty()) continue;
      // Likewise the aggregation keys its rule does not use.
      const AggregationRule rule = original.aggregation.rule;
      if ((key == "aggregation.trim_fraction" && rule != AggregationRule::kTrimmedMean) ||
          (key == "aggregation.byzantine" && rule != AggregationRule::kKrum && rule != AggregationRule::kMultiKrum) ||
          (key == "aggregation.select" && rule != AggregationRule::kMultiKrum))
        continue;
      if (section == "privacy" && key != "privacy.mechanism" && original.privacy.mechanism == DpMechanism::kNone)
        continue;
      overrides.push_back(key + "=" + line.substr(colon + 2));
    }
    EXPECT_EQ(keys.size(), 46u);
    Result<JobSpec> rebuilt = ParseJobSpec("", "canonical", overrides);
    ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().ToString();
    EXPECT_EQ(CanonicalJobSpec(*rebuilt), canonical);
  }
}

TEST(JobSpecTest, PrivacyNeedsClippingAnUnweightedMeanAFixedSupportAndItsBudget) {
  const std::string dp =
      "federation: {mode: ferret, rounds: 10, aggregation_weights: equal}\n"
      "ferret: {allocation: uniform}\n"
      "aggregation: {clip_norm: 0.5}\n";
  const JobSpec spec = ParseOk(kRequired + dp + "privacy: {mechanism: central, noise_multiplier: 1.1, delta: 1e-5}\n");
  EXPECT_EQ(spec.privacy.mechanism, DpMechanism::kCentral);
  EXPECT_DOUBLE_EQ(spec.privacy.noise_multiplier, 1.1);
  EXPECT_DOUBLE_EQ(spec.privacy.delta, 1e-5);
  EXPECT_EQ(ParseOk(EffectiveJobSpecYaml(spec)).privacy.noise_multiplier, 1.1);

  // Keys without a mechanism, and a mechanism without its numbers.
  EXPECT_NE(
      ErrorOf("privacy: {delta: 1e-5}\n").find("'privacy.delta': set at job.yaml:5, but privacy.mechanism is none"),
      std::string::npos)
      << ErrorOf("privacy: {delta: 1e-5}\n");
  EXPECT_NE(ErrorOf(dp + "privacy: {mechanism: local, delta: 1e-5}\n")
                .find("'privacy.noise_multiplier': privacy.mechanism local needs a value > 0"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dp + "privacy: {mechanism: local, noise_multiplier: 1}\n").find("'privacy.delta'"),
            std::string::npos);
  // The composition rules (docs/security.md).
  const std::string central = "privacy: {mechanism: central, noise_multiplier: 1, delta: 1e-5}\n";
  EXPECT_NE(ErrorOf("federation: {aggregation_weights: equal}\nferret: {allocation: uniform}\n" + central)
                .find("'aggregation.clip_norm': privacy.mechanism central needs per-client clipping"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dp + "aggregation: {rule: median}\n" + central).find("'aggregation.rule'"), std::string::npos)
      << ErrorOf(dp + "aggregation: {rule: median}\n" + central);
  EXPECT_NE(
      ErrorOf("federation: {mode: ferret}\nferret: {allocation: uniform}\naggregation: {clip_norm: 1}\n" + central)
          .find("'federation.aggregation_weights': privacy.mechanism central needs equal"),
      std::string::npos);
  EXPECT_NE(ErrorOf("federation: {aggregation_weights: equal}\naggregation: {clip_norm: 1}\n" + central)
                .find("'ferret.allocation': privacy.mechanism central needs uniform"),
            std::string::npos);
  // The budget: 10 rounds at z = 1.1 spend epsilon 16.9 at delta 1e-5 (tests/federation/privacy_test.cc).
  const std::string over = ErrorOf(dp +
                                   "privacy: {mechanism: central, noise_multiplier: 1.1, delta: 1e-5, "
                                   "epsilon_budget: 4}\n");
  EXPECT_NE(over.find("'privacy.epsilon_budget': federation.rounds 10 at noise multiplier 1.1 spend epsilon"),
            std::string::npos)
      << over;
  EXPECT_EQ(ErrorOf(dp + "privacy: {mechanism: central, noise_multiplier: 1.1, delta: 1e-5, epsilon_budget: 20}\n"),
            "");
}

TEST(JobSpecTest, ExampleJobsParse) {
  std::set<std::string> modes;
  int files = 0;
  for (const auto& entry : fs::directory_iterator("examples/jobs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    Result<JobSpec> spec = LoadJobSpec(entry.path().string());
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    modes.insert(spec->mode);
  }
  EXPECT_GE(files, 3);
  EXPECT_EQ(modes, (std::set<std::string>{"ferret", "fedavg", "lora", "fedkseed"}));
}

// The effective YAML a CLI sends (overrides applied) parses back to the same spec in every mode.
TEST(JobSpecTest, EffectiveYamlRoundTripsWithOverrides) {
  for (const auto& entry : fs::directory_iterator("examples/jobs")) {
    if (entry.path().extension() != ".yaml") continue;
    Result<JobSpec> spec = LoadJobSpec(entry.path().string(), {"federation.rounds=7", "name=a \"quoted\" name"});
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    const std::string yaml = EffectiveJobSpecYaml(*spec);
    Result<JobSpec> reparsed = ParseJobSpec(yaml, "effective.yaml");
    ASSERT_TRUE(reparsed.ok()) << entry.path() << ": " << reparsed.status().ToString() << "\n" << yaml;
    EXPECT_EQ(reparsed->rounds, 7);
    EXPECT_EQ(reparsed->name, "a \"quoted\" name");
    EXPECT_EQ(JobSpecHash(*reparsed), JobSpecHash(*spec)) << yaml;
  }
  // A minimal spec (no eval section, defaults everywhere else) round-trips too.
  Result<JobSpec> minimal = ParseJobSpec("model: {base: /m}\ndata: {dataset: d}\n", "min.yaml");
  ASSERT_TRUE(minimal.ok()) << minimal.status().ToString();
  Result<JobSpec> reparsed = ParseJobSpec(EffectiveJobSpecYaml(*minimal), "effective.yaml");
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().ToString() << "\n" << EffectiveJobSpecYaml(*minimal);
  EXPECT_EQ(JobSpecHash(*reparsed), JobSpecHash(*minimal));
}

TEST(JobSpecTest, AggregationSectionChoosesARuleAndRefusesWhatItDoesNotUse) {
  const JobSpec median = ParseOk(kRequired + "aggregation: {rule: median, clip_norm: 3}\n");
  EXPECT_EQ(median.aggregation.rule, AggregationRule::kMedian);
  EXPECT_EQ(median.aggregation.clip_norm, 3.0);
  const JobSpec krum = ParseOk(kRequired + "federation: {min_clients: 6}\naggregation: {rule: krum, byzantine: 1}\n");
  EXPECT_EQ(krum.aggregation.byzantine, 1);
  EXPECT_EQ(ParseOk(kRequired).aggregation.rule, AggregationRule::kMean);
  // A parameter the rule does not use is a mistake, not a no-op.
  EXPECT_EQ(
      ErrorOf("aggregation: {trim_fraction: 0.2}\n"),
      "job.yaml: field 'aggregation.trim_fraction': set at job.yaml:5, but aggregation.rule mean does not use it");
  EXPECT_NE(ErrorOf("aggregation: {rule: median, select: 3}\n").find("aggregation.rule median does not use it"),
            std::string::npos);
  // Order statistics are unweighted: asking for sample weights with them is refused.
  EXPECT_NE(ErrorOf("federation: {aggregation_weights: samples}\naggregation: {rule: trimmed_mean}\n")
                .find("aggregation.rule trimmed_mean is unweighted"),
            std::string::npos);
  EXPECT_EQ(ErrorOf("federation: {aggregation_weights: equal}\naggregation: {rule: trimmed_mean}\n"), "");
  // Krum needs more than 2f + 2 clients in every round.
  EXPECT_NE(ErrorOf("federation: {min_clients: 4}\naggregation: {rule: krum, byzantine: 1}\n")
                .find("needs more than 2f + 2 = 4 clients per round"),
            std::string::npos);
  EXPECT_NE(ErrorOf("aggregation: {rule: trimmed_mean, trim_fraction: 0.5}\n").find("aggregation.trim_fraction"),
            std::string::npos);
  EXPECT_NE(ErrorOf("aggregation: {rule: bulyan}\n").find("'bulyan' is not one of"), std::string::npos);
}

TEST(JobSpecTest, SecureAggregationSectionAndItsCompositionRules) {
  const std::string on = "federation: {min_clients: 3}\nsecure_aggregation: {enabled: true, clip: 4}\n";
  const JobSpec spec = ParseOk(kRequired + on);
  EXPECT_TRUE(spec.secure_aggregation.enabled);
  EXPECT_EQ(spec.secure_aggregation.clip, 4.0);
  EXPECT_EQ(spec.secure_aggregation.threshold, 0);
  EXPECT_EQ(spec.secure_aggregation.neighbours, 0);
  EXPECT_EQ(spec.secure_aggregation.rounding, QuantizeRounding::kNearest);
  EXPECT_FALSE(ParseOk(kRequired).secure_aggregation.enabled);
  const JobSpec full = ParseOk(kRequired +
                               "federation: {min_clients: 5}\naggregation: {clip_norm: 2}\n"
                               "secure_aggregation: {enabled: true, clip: 0.5, threshold: 3, neighbours: 2, "
                               "rounding: stochastic, stage_timeout_s: 4}\n");
  EXPECT_EQ(full.secure_aggregation.threshold, 3);
  EXPECT_EQ(full.secure_aggregation.neighbours, 2);
  EXPECT_EQ(full.secure_aggregation.rounding, QuantizeRounding::kStochastic);
  EXPECT_EQ(full.secure_aggregation.stage_timeout_s, 4.0);
  // The effective YAML carries the section; a plain spec's canonical form (and hash) does not mention it.
  Result<JobSpec> reparsed = ParseJobSpec(EffectiveJobSpecYaml(full), "effective.yaml");
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().ToString();
  EXPECT_EQ(JobSpecHash(*reparsed), JobSpecHash(full));
  EXPECT_EQ(CanonicalJobSpec(ParseOk(kRequired)).find("secure_aggregation"), std::string::npos);

  // The quantization range changes the math: no silent default.
  EXPECT_EQ(ErrorOf("federation: {min_clients: 3}\nsecure_aggregation: {enabled: true}\n")
                .rfind("job.yaml: field 'secure_aggregation.clip': must be set when secure aggregation is enabled", 0),
            0u);
  EXPECT_NE(ErrorOf("federation: {min_clients: 3}\nsecure_aggregation: {enabled: true, clip: 0}\n")
                .find("key 'secure_aggregation.clip': must be a finite number > 0"),
            std::string::npos);
  // Robust rules need the individual updates, which secure aggregation hides.
  EXPECT_EQ(ErrorOf("federation: {min_clients: 3, aggregation_weights: equal}\naggregation: {rule: median}\n"
                    "secure_aggregation: {enabled: true, clip: 4}\n"),
            "job.yaml: field 'aggregation.rule': secure aggregation reveals only the sum of the updates, so only "
            "mean can combine them, got aggregation.rule=median (job.yaml:6)");
  EXPECT_NE(ErrorOf("federation: {min_clients: 6}\naggregation: {rule: krum}\nsecure_aggregation: {enabled: true, "
                    "clip: 4}\n")
                .find("field 'aggregation.rule': secure aggregation reveals only the sum"),
            std::string::npos);
  EXPECT_NE(ErrorOf("secure_aggregation: {enabled: true, clip: 4}\n")
                .find("field 'federation.min_clients': secure aggregation needs at least 2 clients per round"),
            std::string::npos);
  EXPECT_NE(ErrorOf(on, {"secure_aggregation.threshold=1"}).find("key 'secure_aggregation.threshold'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(on, {"secure_aggregation.rounding=up"}).find("secure_aggregation.rounding"), std::string::npos);
  // Its keys without enabling it are a mistake, not a no-op.
  EXPECT_EQ(ErrorOf("secure_aggregation: {clip: 4}\n"),
            "job.yaml: field 'secure_aggregation.clip': set at job.yaml:5, but secure_aggregation.enabled is false");
  EXPECT_NE(ErrorOf("secure_aggregation: {enabeld: true}\n").find("secure_aggregation.enabeld"), std::string::npos);
}

TEST(JobSpecTest, DerivedSizesThatOverflowNameTheField) {
  // Each value is within its own range; their products are not.
  EXPECT_EQ(ErrorOf("train:\n  batch_size: 4096\n", {"data.seq_len=1048576"}),
            "job.yaml: field 'train.batch_size': data.seq_len=1048576 (--set data.seq_len=1048576) x "
            "train.batch_size=4096 (job.yaml:6) is more than 2147483647 tokens per micro-batch");
  // 2^16 x 2^14 x 2^16 x 10^6 overflows int64 itself: caught before the multiplication wraps.
  EXPECT_EQ(
      ErrorOf("train:\n  batch_size: 16384\n  grad_accum: 65536\n  local_steps: 1000000\n", {"data.seq_len=65536"}),
      "job.yaml: field 'train.local_steps': data.seq_len=65536 (--set data.seq_len=65536) x "
      "train.batch_size=16384 (job.yaml:6) x train.grad_accum=65536 (job.yaml:7) x train.local_steps=1000000 "
      "(job.yaml:8) is more than 9007199254740992 tokens per round");
  EXPECT_EQ(ErrorOf("train:\n  batch_size: 64\n  grad_accum: 64\n  local_steps: 1000\n", {"data.seq_len=4096"}), "");
}

TEST(JobSpecTest, SizesDerivedWithTheModelNameTheField) {
  LlamaConfig model;  // the tiny defaults: hidden 64, 4 heads, 2 layers
  JobSpec spec = ParseOk(kRequired);
  spec.seq_len = 1024;
  EXPECT_TRUE(CheckJobSizesForModel(spec, model, "job.yaml").ok());
  spec.seq_len = 1 << 20;
  spec.batch_size = 4096;
  Status scores = CheckJobSizesForModel(spec, model, "job.yaml");
  EXPECT_TRUE(scores.IsInvalidArgument());
  EXPECT_EQ(scores.message().rfind("job.yaml: field 'data.seq_len': train.batch_size=4096 x num_attention_heads=4 x "
                                   "data.seq_len=1048576 x data.seq_len=1048576 is more than 9007199254740992 "
                                   "attention scores per micro-batch",
                                   0),
            0u)
      << scores.message();

  JobSpec lora = ParseOk(kRequired + "federation:\n  mode: lora\nlora:\n  rank: 1024\n");
  model.hidden_size = int64_t{1} << 45;
  Status params = CheckJobSizesForModel(lora, model, "job.yaml");
  EXPECT_NE(params.message().find("field 'lora.rank': lora.rank=1024 x hidden_size + intermediate_size="),
            std::string::npos)
      << params.message();

  JobSpec ferret = ParseOk(kRequired + "ferret:\n  k: 65535\n");
  model = LlamaConfig{};
  model.num_hidden_layers = 1 << 20;  // 65535 x 2^20 x 9 > 2^31
  Status coefficients = CheckJobSizesForModel(ferret, model, "job.yaml");
  EXPECT_NE(coefficients.message().find(
                "field 'ferret.k': ferret.k=65535 x num_hidden_layers=1048576 x tensors per layer=9 is more than"),
            std::string::npos)
      << coefficients.message();
}

}  // namespace
}  // namespace tributary
