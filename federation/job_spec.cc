#include "federation/job_spec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <sstream>

#include "base/config.h"
#include "base/file_util.h"
#include "base/hash.h"
#include "federation/ferret_method.h"
#include "federation/job_sizes.h"
#include "federation/job_spec_text.h"
#include "federation/method.h"

namespace tributary {
namespace job_spec_text {

// The options sections of the registered methods ("ferret", "lora"): only the chosen method's may be set.
std::vector<std::string> OptionSections() {
  std::vector<std::string> sections;
  for (const MethodInfo* method : RegisteredMethods())
    if (*method->options_section != '\0') sections.emplace_back(method->options_section);
  return sections;
}

// A method options section other than the job's own that still applies: ferret's under cluster mode with
// the ferret codec (the pseudo-gradient is projected with those options).
bool SectionApplies(const JobSpec& spec, const std::string& section) {
  return section == "ferret" && spec.mode == "cluster" && spec.cluster.codec == "ferret";
}

// Shortest text that parses back to the same double ("0.0001" -> "0.0001", 1e-4 written either way
// renders the same), so the canonical form does not depend on how the user wrote a number.
std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  TRIB_CHECK(ec == std::errc());
  return std::string(buf, end);
}

// A double-quoted string with JSON-style escapes: one line, unambiguous, also valid YAML.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string QuoteList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + Quote(items[i]);
  return out + "]";
}

// Whether the aggregation rule uses `key` (the others must stay unset).
bool AggregationKeyApplies(const AggregationOptions& a, const std::string& key) {
  if (key == "aggregation.trim_fraction") return a.rule == AggregationRule::kTrimmedMean;
  if (key == "aggregation.byzantine") return a.rule == AggregationRule::kKrum || a.rule == AggregationRule::kMultiKrum;
  if (key == "aggregation.select") return a.rule == AggregationRule::kMultiKrum;
  return true;
}

}  // namespace job_spec_text
namespace {

using job_spec_text::AggregationKeyApplies;
using job_spec_text::FormatDouble;
using job_spec_text::OptionSections;
using job_spec_text::Quote;
using job_spec_text::QuoteList;
using job_spec_text::SectionApplies;

// The projections LoRA can wrap (docs/job-spec.md), in peft's order.
std::vector<std::string> LoraTargetNames() {
  std::vector<std::string> names;
  for (ProjKind kind :
       {ProjKind::kQ, ProjKind::kK, ProjKind::kV, ProjKind::kO, ProjKind::kGate, ProjKind::kUp, ProjKind::kDown})
    names.emplace_back(LoraModuleName(kind));
  return names;
}

// The names of the registered federated methods (federation.mode's choices).
std::vector<std::string> MethodNames() {
  std::vector<std::string> names;
  for (const MethodInfo* method : RegisteredMethods()) names.emplace_back(method->name);
  return names;
}

// "ferret": the methods whose options live in `section`, joined by " or ".
std::string MethodsUsing(const std::string& section) {
  std::string names;
  for (const MethodInfo* method : RegisteredMethods())
    if (section == method->options_section) names += (names.empty() ? "" : " or ") + std::string(method->name);
  return names;
}

ConfigKeySpec Str(std::string key, const std::string& def, std::string help, std::vector<std::string> choices = {}) {
  return ConfigChoice(std::move(key), Quote(def), std::move(help), std::move(choices));
}

// A string key with no default: it stays unset unless the spec gives it (checked as required).
ConfigKeySpec RequiredStr(std::string key, std::string help) {
  return ConfigKey(std::move(key), ConfigType::kString, "", std::move(help));
}

ConfigKeySpec Int(std::string key, int64_t def, double min, double max, std::string help) {
  return ConfigRanged(std::move(key), ConfigType::kInt, std::to_string(def), std::move(help), min, max);
}

// Bounds of floats with an open end are checked in Validate (the schema's bounds are inclusive);
// leaving min/max at their defaults here keeps a single message for all out-of-range values.
ConfigKeySpec Float(std::string key, double def, std::string help, double min = -1e300, double max = 1e300) {
  return ConfigRanged(std::move(key), ConfigType::kFloat, FormatDouble(def), std::move(help), min, max);
}

// The secure_aggregation section (federation/secagg_job.h).
void AddSecureAggregationKeys(const JobSpec& d, ConfigSchema& s) {
  const SecureAggregationOptions& a = d.secure_aggregation;
  s.Add(ConfigKey("secure_aggregation.enabled", ConfigType::kBool, a.enabled ? "true" : "false",
                  "SecAgg+: the coordinator learns only the sum of the clients' quantized updates"));
  s.Add(Int("secure_aggregation.threshold", a.threshold, 0, 1000000,
            "shares that reconstruct a client's secrets (0 = ceil(2 (k + 1) / 3) for the round's degree k)"));
  s.Add(Int("secure_aggregation.neighbours", a.neighbours, 0, 1000000,
            "neighbours per client in the masking graph (0 = all pairs)"));
  s.Add(ConfigKey("secure_aggregation.clip", ConfigType::kFloat, "",
                  "quantization range per coordinate of a client's update (required when enabled)"));
  s.Add(Str("secure_aggregation.rounding", QuantizeRoundingName(a.rounding), "quantization rounding",
            {"nearest", "stochastic"}));
  s.Add(Float("secure_aggregation.stage_timeout_s", a.stage_timeout_s,
              "how long the key-sharing, masked-input and unmasking stages wait for clients", 0.1, 86400));
}

// The cluster section (mode cluster; docs/cluster.md).
void AddClusterKeys(const JobSpec& d, ConfigSchema& s) {
  const ClusterOptions& c = d.cluster;
  s.Add(Str("cluster.outer_optimizer", c.outer_optimizer,
            "applied to the islands' mean pseudo-gradient (sgd at outer_lr 1 = averaging)", {"nesterov", "sgd"}));
  s.Add(Float("cluster.outer_lr", c.outer_lr, "outer learning rate, (0, 10]"));
  s.Add(Float("cluster.outer_momentum", c.outer_momentum, "nesterov: outer momentum, [0, 1)"));
  s.Add(Str("cluster.codec", c.codec, "the pseudo-gradient on the slow links (auto: chosen by cost each round)",
            {"fp32", "bf16", "int8", "fp4", "ferret", "auto"}));
  s.Add(ConfigKey("cluster.islands", ConfigType::kStringList, QuoteList(c.islands),
                  "islands as NAME=WORKER,WORKER (empty: by the workers' fabric identity)"));
  s.Add(ConfigKey("cluster.balance_batches", ConfigType::kBool, c.balance_batches ? "true" : "false",
                  "train the plan's member shares and per-island batches (false: every member trains "
                  "train.batch_size)"));
  s.Add(Float("cluster.collective_timeout_s", c.collective_timeout_s,
              "an island collective or rendezvous fails after this long", 0.1, 3600));
  s.Add(Int("cluster.bucket_elems", c.bucket_elems, 1024, 1 << 30, "island all-reduce bucket, floats"));
}

// Every key of a job spec, in the order the canonical form lists them. Defaults come from a
// default-constructed JobSpec so the struct and the schema cannot drift apart.
ConfigSchema BuildSchema() {
  const JobSpec d;
  ConfigSchema s;
  s.Add(Str("name", d.name, "free text for humans"));
  s.Add(RequiredStr("model.base", "base model directory (HF layout), same path on every worker"));
  s.Add(RequiredStr("data.dataset", "dataset name each worker registered with --data NAME=PATH"));
  s.Add(Int("data.seq_len", d.seq_len, 1, 1048576, "tokens per training sequence"));
  s.Add(Str("federation.mode", d.mode, "the federated method: what clients train and upload", MethodNames()));
  s.Add(Int("federation.rounds", d.rounds, 1, 100000, "federated rounds"));
  s.Add(Float("federation.client_fraction", d.client_fraction, "fraction of eligible workers per round, (0, 1]"));
  s.Add(Int("federation.min_clients", d.min_clients, 1, 1000000, "fewest clients a round starts with"));
  s.Add(Int("federation.max_clients", d.max_clients, 0, 1000000, "most clients per round (0 = no cap)"));
  s.Add(Float("federation.quorum", d.quorum, "fraction of selected clients needed at the deadline, (0, 1]"));
  s.Add(Float("federation.deadline_floor_s", d.deadline_floor_s, "lower clamp of the round deadline", 1, 2592000));
  s.Add(Float("federation.deadline_ceiling_s", d.deadline_ceiling_s, "upper clamp of the round deadline", 1, 2592000));
  s.Add(Int("federation.seed", static_cast<int64_t>(d.seed), 0, 9223372036854775807.0,
            "job seed: data order, client sampling, Ferret bases"));
  s.Add(Str("federation.aggregation_weights", AggregationWeightsName(d.aggregation_weights),
            "client weights in the aggregate", {"samples", "equal"}));
  ConfigKeySpec local_steps = Int("train.local_steps", d.local_steps, 1, 1000000,
                                  "optimizer steps per client per round (cluster mode: auto = chosen by cost)");
  local_steps.words = {{"auto", 0}};
  s.Add(std::move(local_steps));
  s.Add(Int("train.batch_size", d.batch_size, 1, 65536, "sequences per micro-batch"));
  s.Add(Int("train.grad_accum", d.grad_accum, 1, 65536, "micro-batches per optimizer step"));
  s.Add(Float("train.lr", d.lr, "client learning rate, (0, 10]"));
  s.Add(Str("train.optimizer", d.optimizer, "client optimizer (fresh state every round)", {"sgd", "adamw"}));
  s.Add(Float("train.weight_decay", d.weight_decay, "decoupled weight decay", 0, 1));
  s.Add(Float("train.momentum", d.momentum, "SGD momentum, [0, 1)"));
  s.Add(Float("train.max_grad_norm", d.max_grad_norm, "gradient-norm clip (0 = off)", 0, 1e6));
  s.Add(Float("train.server_lr", d.server_lr, "server learning rate on the aggregate, (0, 1000]"));
  s.Add(Int("ferret.k", d.ferret.K, 2, 65535, "seed budget K per block"));
  s.Add(Str("ferret.distribution", DistributionName(d.ferret.distribution), "random vector distribution",
            {"rademacher", "uniform", "trunc_normal"}));
  s.Add(Str("ferret.scaling", ScalingName(d.ferret.scaling), "projection scaling", {"unbiased", "reference"}));
  s.Add(Str("ferret.blocking", BlockingRuleName(d.ferret.blocking), "how parameters are grouped into blocks",
            {"reference", "fixed_chunks"}));
  s.Add(Str("ferret.allocation", AllocationName(d.ferret.allocation), "K_l allocation score",
            {"norm_ratio", "sqrt_d_norm", "uniform"}));
  s.Add(Str("ferret.seed_mode", SeedModeName(d.ferret.seed_mode), "fresh seeds every round or one fixed pool",
            {"per_round", "fixed_pool"}));
  s.Add(
      Str("ferret.wire_dtype", WireDtypeName(d.ferret.wire_dtype), "coefficient dtype on the wire", {"fp32", "bf16"}));
  s.Add(Int("lora.rank", d.lora.rank, 1, 1024, "LoRA rank r"));
  s.Add(Float("lora.alpha", d.lora.alpha, "LoRA scale numerator (scale = alpha / rank), (0, 10000]"));
  s.Add(Float("lora.dropout", d.lora.dropout, "dropout on the LoRA input, [0, 1)"));
  s.Add(ConfigKey("lora.targets", ConfigType::kStringList, QuoteList(d.lora.target_modules),
                  "projections that get adapters"));
  s.Add(Int("fedkseed.k", d.fedkseed.K, kFedKSeedMinK, kFedKSeedMaxK, "seeds in the shared pool (K)"));
  s.Add(Float("fedkseed.eps", d.fedkseed.eps, "perturbation scale of the two-point estimate, (0, 1]"));
  s.Add(Str("fedkseed.distribution", DistributionName(d.fedkseed.distribution), "perturbation directions",
            {"rademacher"}));
  s.Add(Str("fedkseed.seed_mode", SeedModeName(d.fedkseed.seed_mode), "one seed pool for the job or fresh every round",
            {"fixed_pool", "per_round"}));
  s.Add(Str("aggregation.rule", AggregationRuleName(d.aggregation.rule),
            "how the clients' updates are combined (robust rules resist Byzantine clients)",
            {"mean", "median", "trimmed_mean", "krum", "multi_krum"}));
  s.Add(Float("aggregation.trim_fraction", d.aggregation.trim_fraction,
              "trimmed_mean: share of clients cut at each end per coordinate, [0, 0.5)"));
  s.Add(Int("aggregation.byzantine", d.aggregation.byzantine, 0, 100000,
            "krum, multi_krum: Byzantine clients tolerated (a round needs more than 2f + 2)"));
  s.Add(Int("aggregation.select", d.aggregation.select, 0, 1000000, "multi_krum: clients averaged (0 = n - f)"));
  s.Add(Float("aggregation.clip_norm", d.aggregation.clip_norm,
              "per-client L2 clipping of each update before combining (0 = off)", 0, 1e30));
  s.Add(Str("privacy.mechanism", DpMechanismName(d.privacy.mechanism),
            "differential privacy: Gaussian noise added by the coordinator (central) or each client (local)",
            {"none", "central", "local"}));
  s.Add(Float("privacy.noise_multiplier", d.privacy.noise_multiplier,
              "noise stddev in units of aggregation.clip_norm, > 0", 0, 1e6));
  s.Add(Float("privacy.delta", d.privacy.delta, "the delta epsilon is reported at, (0, 1)"));
  s.Add(Float("privacy.epsilon_budget", d.privacy.epsilon_budget,
              "refuse the job when its rounds would spend more epsilon (0 = no budget)", 0, 1e9));
  AddSecureAggregationKeys(d, s);
  AddClusterKeys(d, s);
  s.Add(Str("eval.dataset", d.eval_dataset, "held-out dataset on the coordinator (empty = none)"));
  s.Add(Int("eval.every", d.eval_every, 1, 100000, "rounds between held-out evaluations"));
  s.Add(Int("checkpoint.snapshot_every", d.snapshot_every, 1, 100000, "rounds between global-model snapshots"));
  return s;
}

const ConfigSchema& JobSchema() {
  static const ConfigSchema schema = BuildSchema();
  return schema;
}

// Cross-field and value checks that the schema cannot express. Errors about one key's value name
// where it was set ("job.yaml:7: key ..." or "--set k=v: key ..."); errors about how keys combine
// name the spec ("job.yaml: field 'k': ...") and show each value with its origin.
class Validator {
 public:
  Validator(const Config& config, const std::string& source) : config_(config), source_(source) {}

  Status KeyError(const std::string& key, const std::string& reason) const {
    const std::string origin = config_.Origin(key);
    const std::string where = origin == "default" || origin == "unset" ? source_ : origin;
    return Status::InvalidArgument(where + ": key '" + key + "': " + reason);
  }

  Status FieldError(const std::string& key, const std::string& reason) const {
    return Status::InvalidArgument(source_ + ": field '" + key + "': " + reason);
  }

  // "federation.mode=fedavg (job.yaml:4)": a value and where it came from.
  std::string Describe(const std::string& key, const std::string& value) const {
    return key + "=" + value + " (" + config_.Origin(key) + ")";
  }

  bool IsSet(const std::string& key) const { return config_.Origin(key) != "default"; }

  // The first key of `section` the spec or an override sets, or "" when all are defaults.
  std::string FirstSetKey(const std::string& section) const {
    const std::string prefix = section + ".";
    for (const auto& spec : JobSchema().keys())
      if (spec.key.compare(0, prefix.size(), prefix) == 0 && IsSet(spec.key)) return spec.key;
    return "";
  }

  Status CheckRange(const std::string& key, double v, double lo, bool lo_open, double hi, bool hi_open) const {
    const bool below = lo_open ? v <= lo : v < lo;
    const bool above = hi_open ? v >= hi : v > hi;
    if (!below && !above) return Status::OK();
    std::ostringstream os;
    os << v << " is outside " << (lo_open ? "(" : "[") << lo << ", " << hi << (hi_open ? ")" : "]");
    return KeyError(key, os.str());
  }

  Status CheckRequired(const std::string& key, const std::string& what) const {
    if (!config_.Has(key)) return FieldError(key, "must be set (" + what + ")");
    if (config_.GetString(key).empty()) return KeyError(key, "must not be empty (" + what + ")");
    return Status::OK();
  }

  // Dataset names are the NAME of a worker's --data NAME=PATH.
  Status CheckDatasetName(const std::string& key, const std::string& name) const {
    for (char c : name)
      if (c == '=' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return KeyError(key, "dataset name '" + name + "' must not contain '=' or whitespace");
    return Status::OK();
  }

 private:
  const Config& config_;
  const std::string& source_;
};

Status ValidateAggregation(const Validator& v, const Config& config, const JobSpec& spec) {
  const AggregationOptions& a = spec.aggregation;
  const std::string rule = AggregationRuleName(a.rule);
  for (const char* key : {"aggregation.trim_fraction", "aggregation.byzantine", "aggregation.select"})
    if (v.IsSet(key) && !AggregationKeyApplies(a, key))
      return v.FieldError(key, "set at " + config.Origin(key) + ", but aggregation.rule " + rule + " does not use it");
  TRIB_RETURN_IF_ERROR(v.CheckRange("aggregation.trim_fraction", a.trim_fraction, 0, false, 0.5, true));
  if ((a.rule == AggregationRule::kMedian || a.rule == AggregationRule::kTrimmedMean) &&
      spec.aggregation_weights == AggregationWeights::kSamples && v.IsSet("federation.aggregation_weights"))
    return v.FieldError("federation.aggregation_weights", "aggregation.rule " + rule + " is unweighted, got " +
                                                              v.Describe("federation.aggregation_weights", "samples") +
                                                              " (set equal or leave it unset)");
  if ((a.rule == AggregationRule::kKrum || a.rule == AggregationRule::kMultiKrum) &&
      spec.min_clients <= 2 * a.byzantine + 2)
    return v.FieldError(
        "federation.min_clients",
        "aggregation.rule " + rule + " needs more than 2f + 2 = " + std::to_string(2 * a.byzantine + 2) +
            " clients per round, got " + v.Describe("federation.min_clients", std::to_string(spec.min_clients)));
  Status valid = ValidateAggregationOptions(a);
  if (!valid.ok()) return v.FieldError("aggregation", valid.message());
  return Status::OK();
}

// Differential privacy holds only for the Gaussian mechanism on clipped updates combined by a fixed-weight
// mean over a data-independent support (federation/privacy.h); everything else is refused by name.
Status ValidatePrivacy(const Validator& v, const Config& config, const JobSpec& spec) {
  const PrivacyOptions& p = spec.privacy;
  const std::string mechanism = DpMechanismName(p.mechanism);
  if (p.mechanism == DpMechanism::kNone) {
    for (const char* key : {"privacy.noise_multiplier", "privacy.delta", "privacy.epsilon_budget"})
      if (v.IsSet(key)) return v.FieldError(key, "set at " + config.Origin(key) + ", but privacy.mechanism is none");
    return Status::OK();
  }
  const std::string needs = "privacy.mechanism " + mechanism + " needs ";
  if (!(p.noise_multiplier > 0)) return v.FieldError("privacy.noise_multiplier", needs + "a value > 0");
  if (!(p.delta > 0 && p.delta < 1)) return v.FieldError("privacy.delta", needs + "a value in (0, 1)");
  if (!(spec.aggregation.clip_norm > 0))
    return v.FieldError("aggregation.clip_norm",
                        needs + "per-client clipping (a value > 0): it bounds the sensitivity");
  if (spec.aggregation.rule != AggregationRule::kMean)
    return v.FieldError("aggregation.rule",
                        needs + "mean, got " +
                            v.Describe("aggregation.rule", AggregationRuleName(spec.aggregation.rule)) +
                            " (no sensitivity bound is implemented for it)");
  if (spec.aggregation_weights != AggregationWeights::kEqual)
    return v.FieldError("federation.aggregation_weights",
                        needs + "equal, got " + v.Describe("federation.aggregation_weights", "samples") +
                            " (sample counts are private and set each client's sensitivity)");
  if (spec.mode == "ferret" && spec.ferret.allocation != Allocation::kUniform)
    return v.FieldError("ferret.allocation",
                        needs + "uniform, got " +
                            v.Describe("ferret.allocation", AllocationName(spec.ferret.allocation)) +
                            " (it picks each block's K from the update's norms, which no noise covers)");
  if (p.epsilon_budget > 0) {
    const DpGuarantee spent = JobPrivacyGuarantee(p, spec.rounds);
    if (spent.epsilon > p.epsilon_budget)
      return v.FieldError("privacy.epsilon_budget",
                          "federation.rounds " + std::to_string(spec.rounds) + " at noise multiplier " +
                              FormatDouble(p.noise_multiplier) + " spend epsilon " + FormatDouble(spent.epsilon) +
                              " at delta " + FormatDouble(p.delta) + ", over the budget " +
                              FormatDouble(p.epsilon_budget) + " (more noise or fewer rounds)");
  }
  return Status::OK();
}

// Secure aggregation and how it composes with the other sections.
Status ValidateSecureAggregation(const Validator& v, const Config& config, const JobSpec& spec) {
  const SecureAggregationOptions& a = spec.secure_aggregation;
  if (!a.enabled) {
    for (const auto& key_spec : JobSchema().keys()) {
      const std::string& key = key_spec.key;
      if (key.rfind("secure_aggregation.", 0) != 0 || key == "secure_aggregation.enabled") continue;
      if (config.Has(key) && v.IsSet(key))  // clip has no default: unset unless given
        return v.FieldError(key, "set at " + config.Origin(key) + ", but secure_aggregation.enabled is false");
    }
    return Status::OK();
  }
  if (!config.Has("secure_aggregation.clip"))
    return v.FieldError("secure_aggregation.clip",
                        "must be set when secure aggregation is enabled: the range [-clip, clip] each coordinate of "
                        "a client's update is quantized in (larger values are clamped)");
  if (!std::isfinite(a.clip) || a.clip <= 0)
    return v.KeyError("secure_aggregation.clip", "must be a finite number > 0, got " + FormatDouble(a.clip));
  if (spec.aggregation.rule != AggregationRule::kMean)
    return v.FieldError("aggregation.rule",
                        std::string("secure aggregation reveals only the sum of the updates, so ") +
                            "only mean can combine them, got " +
                            v.Describe("aggregation.rule", AggregationRuleName(spec.aggregation.rule)));
  if (spec.min_clients < 2)
    return v.FieldError("federation.min_clients",
                        "secure aggregation needs at least 2 clients per round, got " +
                            v.Describe("federation.min_clients", std::to_string(spec.min_clients)));
  if (a.threshold == 1)
    return v.KeyError("secure_aggregation.threshold", "1 would let any one share reveal a secret (at least 2)");
  if (a.neighbours == 1)
    return v.KeyError("secure_aggregation.neighbours", "1 leaves each client's secrets with two holders (0 or >= 2)");
  return Status::OK();
}

// Cluster mode: the outer optimizer and codec combinations that are defined, the islands, and the
// federated options an island round cannot honour.
Status ValidateCluster(const Validator& v, const Config& config, const JobSpec& spec) {
  const ClusterOptions& c = spec.cluster;
  TRIB_RETURN_IF_ERROR(v.CheckRange("cluster.outer_lr", c.outer_lr, 0, true, 10, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("cluster.outer_momentum", c.outer_momentum, 0, false, 1, true));
  if (c.outer_optimizer != "nesterov" && v.IsSet("cluster.outer_momentum"))
    return v.FieldError("cluster.outer_momentum", "set at " + config.Origin("cluster.outer_momentum") +
                                                      ", but it applies only to cluster.outer_optimizer nesterov");
  if (c.codec == "ferret" && c.outer_optimizer == "nesterov")
    return v.FieldError("cluster.outer_optimizer",
                        "nesterov keeps momentum per parameter, which ferret's per-round bases do not have; use sgd "
                        "with cluster.codec ferret, got " +
                            v.Describe("cluster.codec", c.codec));
  if (c.codec == "ferret") {
    Status valid = ValidateFerretOptions(FerretOptionsOf(spec));
    if (!valid.ok()) return v.FieldError("ferret", valid.message());
  }
  auto islands = ParseIslands(c.islands);
  if (!islands.ok()) return v.KeyError("cluster.islands", islands.status().message());
  // Every island member trains every outer round: sampling would split islands.
  if (spec.client_fraction != 1.0)
    return v.FieldError("federation.client_fraction",
                        "cluster mode trains every island member each outer round (1), got " +
                            v.Describe("federation.client_fraction", FormatDouble(spec.client_fraction)));
  if (spec.secure_aggregation.enabled)
    return v.FieldError("secure_aggregation.enabled",
                        "is not supported in cluster mode (an island's upload is "
                        "one replica's, not a client's private update)");
  if (spec.privacy.mechanism != DpMechanism::kNone)
    return v.FieldError("privacy.mechanism",
                        "is not supported in cluster mode, got " +
                            v.Describe("privacy.mechanism", DpMechanismName(spec.privacy.mechanism)));
  return Status::OK();
}

// FedKSeed's local steps are plain zeroth-order SGD at train.lr: the first-order optimizer's knobs would be
// silently ignored, so they are refused by name.
Status ValidateFedKSeed(const Validator& v, const JobSpec& spec) {
  TRIB_RETURN_IF_ERROR(v.CheckRange("fedkseed.eps", spec.fedkseed.eps, 0, true, 1, false));
  const std::string why = "fedkseed's local steps are zeroth-order SGD at train.lr";
  if (spec.optimizer != "sgd")
    return v.FieldError("train.optimizer", why + ", got " + v.Describe("train.optimizer", spec.optimizer));
  const std::pair<const char*, double> unused[] = {{"train.momentum", spec.momentum},
                                                   {"train.weight_decay", spec.weight_decay},
                                                   {"train.max_grad_norm", spec.max_grad_norm}};
  for (const auto& [key, value] : unused)
    if (value != 0) return v.FieldError(key, why + " (0), got " + v.Describe(key, FormatDouble(value)));
  Status valid = ValidateFedKSeedOptions(spec.fedkseed);
  if (!valid.ok()) return v.FieldError("fedkseed", valid.message());
  return Status::OK();
}

ClusterOptions ClusterFromConfig(const Config& c) {
  ClusterOptions o;
  o.outer_optimizer = c.GetString("cluster.outer_optimizer");
  o.outer_lr = c.GetFloat("cluster.outer_lr");
  o.outer_momentum = o.outer_optimizer == "nesterov" ? c.GetFloat("cluster.outer_momentum") : 0.0;
  o.codec = c.GetString("cluster.codec");
  o.islands = c.GetStringList("cluster.islands");
  o.collective_timeout_s = c.GetFloat("cluster.collective_timeout_s");
  o.balance_batches = c.GetBool("cluster.balance_batches");
  o.bucket_elems = c.GetInt("cluster.bucket_elems");
  return o;
}

SecureAggregationOptions SecureAggregationFromConfig(const Config& c) {
  SecureAggregationOptions a;
  a.enabled = c.GetBool("secure_aggregation.enabled");
  a.threshold = c.GetInt("secure_aggregation.threshold");
  a.neighbours = c.GetInt("secure_aggregation.neighbours");
  if (c.Has("secure_aggregation.clip")) a.clip = c.GetFloat("secure_aggregation.clip");
  a.rounding = ParseQuantizeRounding(c.GetString("secure_aggregation.rounding")).value();
  a.stage_timeout_s = c.GetFloat("secure_aggregation.stage_timeout_s");
  return a;
}

// Each field has its own range, but their products (what a worker allocates, what the planner multiplies)
// can still overflow (federation/job_sizes.h).
Status ValidateDerivedSizes(const Validator& v, const JobSpec& spec, const std::string& source) {
  return CheckDerivedSizes(spec, source,
                           [&v](const char* field, int64_t value) { return v.Describe(field, std::to_string(value)); });
}

Status Validate(const Config& config, const std::string& source, const JobSpec& spec) {
  const Validator v(config, source);
  if (spec.name.find_first_of("\n\r") != std::string::npos) return v.KeyError("name", "must be one line");
  TRIB_RETURN_IF_ERROR(v.CheckRequired("model.base", "the base model directory, the same path on every worker"));
  TRIB_RETURN_IF_ERROR(v.CheckRequired("data.dataset", "a dataset name the workers registered with --data"));
  TRIB_RETURN_IF_ERROR(v.CheckDatasetName("data.dataset", spec.dataset));
  if (!spec.eval_dataset.empty()) TRIB_RETURN_IF_ERROR(v.CheckDatasetName("eval.dataset", spec.eval_dataset));

  // Single values with open bounds.
  TRIB_RETURN_IF_ERROR(v.CheckRange("federation.client_fraction", spec.client_fraction, 0, true, 1, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("federation.quorum", spec.quorum, 0, true, 1, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("train.lr", spec.lr, 0, true, 10, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("train.momentum", spec.momentum, 0, false, 1, true));
  TRIB_RETURN_IF_ERROR(v.CheckRange("train.server_lr", spec.server_lr, 0, true, 1000, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("lora.alpha", spec.lora.alpha, 0, true, 10000, false));
  TRIB_RETURN_IF_ERROR(v.CheckRange("lora.dropout", spec.lora.dropout, 0, false, 1, true));

  // Federation.
  if (spec.max_clients > 0 && spec.min_clients > spec.max_clients)
    return v.FieldError("federation.min_clients",
                        "must not exceed federation.max_clients when a cap is set, got " +
                            v.Describe("federation.min_clients", std::to_string(spec.min_clients)) + " and " +
                            v.Describe("federation.max_clients", std::to_string(spec.max_clients)));
  if (spec.deadline_floor_s > spec.deadline_ceiling_s)
    return v.FieldError("federation.deadline_floor_s",
                        "must not exceed federation.deadline_ceiling_s, got " +
                            v.Describe("federation.deadline_floor_s", FormatDouble(spec.deadline_floor_s)) + " and " +
                            v.Describe("federation.deadline_ceiling_s", FormatDouble(spec.deadline_ceiling_s)));

  // Train.
  if (spec.local_steps == 0 && spec.mode != "cluster")
    return v.FieldError("train.local_steps", "auto (H chosen by cost every outer round) is for cluster mode, got " +
                                                 v.Describe("federation.mode", spec.mode));
  if (spec.optimizer != "sgd" && spec.momentum != 0)
    return v.FieldError("train.momentum",
                        "applies only to train.optimizer sgd, got " + v.Describe("train.optimizer", spec.optimizer));

  // Method-specific sections: a key that the chosen method ignores is a mistake, not a no-op.
  const std::string mode = spec.mode;
  const std::string own_section = MethodOf(spec).options_section;
  for (const std::string& section : OptionSections()) {
    if (own_section == section || SectionApplies(spec, section)) continue;
    const std::string key = v.FirstSetKey(section);
    if (!key.empty())
      return v.FieldError(key, "set at " + config.Origin(key) + ", but " + section +
                                   ".* keys apply only when federation.mode is " + MethodsUsing(section) + ", got " +
                                   v.Describe("federation.mode", mode));
  }

  // Ferret: combinations the projection does not support.
  if (own_section == "ferret") {
    const FerretOptions& f = spec.ferret;
    if (f.scaling == Scaling::kReference && f.distribution == Distribution::kRademacher)
      return v.FieldError("ferret.scaling",
                          "reference needs ferret.distribution uniform or trunc_normal (with rademacher it equals "
                          "unbiased scaling), got " +
                              v.Describe("ferret.distribution", DistributionName(f.distribution)));
    if (f.seed_mode == SeedMode::kFixedPool && f.allocation != Allocation::kUniform)
      return v.FieldError("ferret.seed_mode",
                          "fixed_pool needs ferret.allocation uniform (prefix support would confine each block to "
                          "the same first K_l vectors in every round), got " +
                              v.Describe("ferret.allocation", AllocationName(f.allocation)));
    Status valid = ValidateFerretOptions(FerretOptionsOf(spec));
    if (!valid.ok()) return v.FieldError("ferret", valid.message());
  }

  // LoRA.
  if (own_section == "lora") {
    const std::vector<std::string>& targets = spec.lora.target_modules;
    const std::vector<std::string> known = LoraTargetNames();
    if (targets.empty()) return v.KeyError("lora.targets", "must name at least one projection");
    for (size_t i = 0; i < targets.size(); ++i) {
      const std::string& t = targets[i];
      if (std::find(known.begin(), known.end(), t) == known.end()) {
        std::string reason = "'" + t + "' is not one of ";
        for (size_t k = 0; k < known.size(); ++k) reason.append(k ? "|" : "").append(known[k]);
        return v.KeyError("lora.targets", reason);
      }
      for (size_t j = 0; j < i; ++j)
        if (targets[j] == t) return v.KeyError("lora.targets", "'" + t + "' is listed twice");
    }
    Status valid = spec.lora.Validate();
    if (!valid.ok()) return v.FieldError("lora", valid.message());
  }

  if (own_section == "cluster") TRIB_RETURN_IF_ERROR(ValidateCluster(v, config, spec));
  if (own_section == "fedkseed") TRIB_RETURN_IF_ERROR(ValidateFedKSeed(v, spec));

  TRIB_RETURN_IF_ERROR(ValidateAggregation(v, config, spec));
  TRIB_RETURN_IF_ERROR(ValidatePrivacy(v, config, spec));
  TRIB_RETURN_IF_ERROR(ValidateSecureAggregation(v, config, spec));
  TRIB_RETURN_IF_ERROR(ValidateDerivedSizes(v, spec, source));

  // Eval.
  if (spec.eval_dataset.empty() && v.IsSet("eval.every"))
    return v.FieldError("eval.every", "set at " + config.Origin("eval.every") + ", but eval.dataset is empty");
  return Status::OK();
}

// The schema's choices admit only values the Parse functions accept.
template <typename T>
T ParseChecked(Result<T> parsed) {
  TRIB_CHECK(parsed.ok());
  return *parsed;
}

FerretOptions FerretFromConfig(const Config& c) {
  FerretOptions f;
  f.K = static_cast<int>(c.GetInt("ferret.k"));
  f.distribution = ParseChecked(ParseDistribution(c.GetString("ferret.distribution")));
  f.scaling = ParseChecked(ParseScaling(c.GetString("ferret.scaling")));
  f.blocking = ParseChecked(ParseBlockingRule(c.GetString("ferret.blocking")));
  f.allocation = ParseChecked(ParseAllocation(c.GetString("ferret.allocation")));
  f.seed_mode = ParseChecked(ParseSeedMode(c.GetString("ferret.seed_mode")));
  f.wire_dtype = ParseChecked(ParseWireDtype(c.GetString("ferret.wire_dtype")));
  return f;
}

FedKSeedOptions FedKSeedFromConfig(const Config& c) {
  FedKSeedOptions f;
  f.K = static_cast<int>(c.GetInt("fedkseed.k"));
  f.eps = c.GetFloat("fedkseed.eps");
  f.distribution = ParseChecked(ParseDistribution(c.GetString("fedkseed.distribution")));
  f.seed_mode = ParseChecked(ParseSeedMode(c.GetString("fedkseed.seed_mode")));
  return f;
}

LoraOptions LoraFromConfig(const Config& c) {
  LoraOptions l;
  l.rank = c.GetInt("lora.rank");
  l.alpha = c.GetFloat("lora.alpha");
  l.dropout = c.GetFloat("lora.dropout");
  l.target_modules = c.GetStringList("lora.targets");
  return l;
}

JobSpec SpecFromConfig(const Config& c) {
  JobSpec s;
  s.name = c.GetString("name");
  if (c.Has("model.base")) s.base_model = c.GetString("model.base");
  if (c.Has("data.dataset")) s.dataset = c.GetString("data.dataset");
  s.seq_len = c.GetInt("data.seq_len");
  s.mode = c.GetString("federation.mode");
  s.rounds = c.GetInt("federation.rounds");
  s.client_fraction = c.GetFloat("federation.client_fraction");
  s.min_clients = c.GetInt("federation.min_clients");
  s.max_clients = c.GetInt("federation.max_clients");
  s.quorum = c.GetFloat("federation.quorum");
  s.deadline_floor_s = c.GetFloat("federation.deadline_floor_s");
  s.deadline_ceiling_s = c.GetFloat("federation.deadline_ceiling_s");
  s.seed = static_cast<uint64_t>(c.GetInt("federation.seed"));
  s.aggregation_weights = ParseChecked(ParseAggregationWeights(c.GetString("federation.aggregation_weights")));
  s.local_steps = c.GetInt("train.local_steps");
  s.batch_size = c.GetInt("train.batch_size");
  s.grad_accum = c.GetInt("train.grad_accum");
  s.lr = c.GetFloat("train.lr");
  s.optimizer = c.GetString("train.optimizer");
  s.weight_decay = c.GetFloat("train.weight_decay");
  s.momentum = c.GetFloat("train.momentum");
  s.max_grad_norm = c.GetFloat("train.max_grad_norm");
  s.server_lr = c.GetFloat("train.server_lr");
  s.ferret = FerretFromConfig(c);
  s.lora = LoraFromConfig(c);
  s.fedkseed = FedKSeedFromConfig(c);
  s.aggregation.rule = ParseChecked(ParseAggregationRule(c.GetString("aggregation.rule")));
  s.aggregation.trim_fraction = c.GetFloat("aggregation.trim_fraction");
  s.aggregation.byzantine = c.GetInt("aggregation.byzantine");
  s.aggregation.select = c.GetInt("aggregation.select");
  s.aggregation.clip_norm = c.GetFloat("aggregation.clip_norm");
  s.privacy.mechanism = ParseChecked(ParseDpMechanism(c.GetString("privacy.mechanism")));
  s.privacy.noise_multiplier = c.GetFloat("privacy.noise_multiplier");
  s.privacy.delta = c.GetFloat("privacy.delta");
  s.privacy.epsilon_budget = c.GetFloat("privacy.epsilon_budget");
  s.secure_aggregation = SecureAggregationFromConfig(c);
  s.cluster = ClusterFromConfig(c);
  s.eval_dataset = c.GetString("eval.dataset");
  s.eval_every = c.GetInt("eval.every");
  s.snapshot_every = c.GetInt("checkpoint.snapshot_every");
  return s;
}

}  // namespace

Result<JobSpec> ParseJobSpec(const std::string& yaml, const std::string& source,
                             const std::vector<std::string>& overrides) {
  TRIB_ASSIGN_OR_RETURN(Config config, Config::LoadString(JobSchema(), yaml, source));
  for (const auto& assignment : overrides) TRIB_RETURN_IF_ERROR(config.Set(assignment));
  JobSpec spec = SpecFromConfig(config);
  TRIB_RETURN_IF_ERROR(Validate(config, source, spec));
  spec.source_text = yaml;
  return spec;
}

Result<JobSpec> LoadJobSpec(const std::string& path, const std::vector<std::string>& overrides) {
  Result<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status().WithContext("reading job spec");
  return ParseJobSpec(*text, path, overrides);
}

Status ValidateSubmitToken(const std::string& token, const std::string& what) {
  if (token.size() > 128) return Status::InvalidArgument(what + ": longer than 128 characters");
  for (char c : token) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return Status::InvalidArgument(what + " '" + token + "': only letters, digits and . _ : - are allowed");
  }
  return Status::OK();
}

}  // namespace tributary
