// The canonical form of a job spec (its hash) and the effective YAML a submit sends (federation/job_spec.h).
#include <algorithm>
#include <sstream>

#include "base/hash.h"
#include "federation/job_spec.h"
#include "federation/job_spec_text.h"
#include "federation/method.h"

namespace tributary {

using job_spec_text::AggregationKeyApplies;
using job_spec_text::FormatDouble;
using job_spec_text::OptionSections;
using job_spec_text::Quote;
using job_spec_text::QuoteList;
using job_spec_text::SectionApplies;

std::string CanonicalJobSpec(const JobSpec& s) {
  std::ostringstream os;
  auto line = [&os](const char* key, const std::string& value) { os << key << ": " << value << "\n"; };
  line("name", Quote(s.name));
  line("model.base", Quote(s.base_model));
  line("data.dataset", Quote(s.dataset));
  line("data.seq_len", std::to_string(s.seq_len));
  line("federation.mode", s.mode);
  line("federation.rounds", std::to_string(s.rounds));
  line("federation.client_fraction", FormatDouble(s.client_fraction));
  line("federation.min_clients", std::to_string(s.min_clients));
  line("federation.max_clients", std::to_string(s.max_clients));
  line("federation.quorum", FormatDouble(s.quorum));
  line("federation.deadline_floor_s", FormatDouble(s.deadline_floor_s));
  line("federation.deadline_ceiling_s", FormatDouble(s.deadline_ceiling_s));
  line("federation.seed", std::to_string(s.seed));
  line("federation.aggregation_weights", Quote(AggregationWeightsName(s.aggregation_weights)));
  line("train.local_steps", s.local_steps == 0 ? "auto" : std::to_string(s.local_steps));
  line("train.batch_size", std::to_string(s.batch_size));
  line("train.grad_accum", std::to_string(s.grad_accum));
  line("train.lr", FormatDouble(s.lr));
  line("train.optimizer", Quote(s.optimizer));
  line("train.weight_decay", FormatDouble(s.weight_decay));
  line("train.momentum", FormatDouble(s.momentum));
  line("train.max_grad_norm", FormatDouble(s.max_grad_norm));
  line("train.server_lr", FormatDouble(s.server_lr));
  line("ferret.k", std::to_string(s.ferret.K));
  line("ferret.distribution", Quote(DistributionName(s.ferret.distribution)));
  line("ferret.scaling", Quote(ScalingName(s.ferret.scaling)));
  line("ferret.blocking", Quote(BlockingRuleName(s.ferret.blocking)));
  line("ferret.allocation", Quote(AllocationName(s.ferret.allocation)));
  line("ferret.seed_mode", Quote(SeedModeName(s.ferret.seed_mode)));
  line("ferret.wire_dtype", Quote(WireDtypeName(s.ferret.wire_dtype)));
  line("lora.rank", std::to_string(s.lora.rank));
  line("lora.alpha", FormatDouble(s.lora.alpha));
  line("lora.dropout", FormatDouble(s.lora.dropout));
  line("lora.targets", QuoteList(s.lora.target_modules));
  line("aggregation.rule", Quote(AggregationRuleName(s.aggregation.rule)));
  line("aggregation.trim_fraction", FormatDouble(s.aggregation.trim_fraction));
  line("aggregation.byzantine", std::to_string(s.aggregation.byzantine));
  line("aggregation.select", std::to_string(s.aggregation.select));
  line("aggregation.clip_norm", FormatDouble(s.aggregation.clip_norm));
  line("privacy.mechanism", Quote(DpMechanismName(s.privacy.mechanism)));
  line("privacy.noise_multiplier", FormatDouble(s.privacy.noise_multiplier));
  line("privacy.delta", FormatDouble(s.privacy.delta));
  line("privacy.epsilon_budget", FormatDouble(s.privacy.epsilon_budget));
  if (s.secure_aggregation.enabled) {  // absent when off, so the specs of plain jobs keep their hash
    const SecureAggregationOptions& a = s.secure_aggregation;
    line("secure_aggregation.enabled", "true");
    line("secure_aggregation.threshold", std::to_string(a.threshold));
    line("secure_aggregation.neighbours", std::to_string(a.neighbours));
    line("secure_aggregation.clip", FormatDouble(a.clip));
    line("secure_aggregation.rounding", Quote(QuantizeRoundingName(a.rounding)));
    line("secure_aggregation.stage_timeout_s", FormatDouble(a.stage_timeout_s));
  }
  if (s.mode == "cluster") {  // absent otherwise, so the specs of federated jobs keep their hash
    const ClusterOptions& c = s.cluster;
    line("cluster.outer_optimizer", Quote(c.outer_optimizer));
    line("cluster.outer_lr", FormatDouble(c.outer_lr));
    if (c.outer_optimizer == "nesterov") line("cluster.outer_momentum", FormatDouble(c.outer_momentum));
    line("cluster.codec", Quote(c.codec));
    line("cluster.islands", QuoteList(c.islands));
    line("cluster.balance_batches", c.balance_batches ? "true" : "false");
    line("cluster.collective_timeout_s", FormatDouble(c.collective_timeout_s));
    line("cluster.bucket_elems", std::to_string(c.bucket_elems));
  }
  if (s.mode == "fedkseed") {  // absent otherwise, so the specs of other jobs keep their hash
    line("fedkseed.k", std::to_string(s.fedkseed.K));
    line("fedkseed.eps", FormatDouble(s.fedkseed.eps));
    line("fedkseed.distribution", Quote(DistributionName(s.fedkseed.distribution)));
    line("fedkseed.seed_mode", Quote(SeedModeName(s.fedkseed.seed_mode)));
  }
  line("eval.dataset", Quote(s.eval_dataset));
  line("eval.every", std::to_string(s.eval_every));
  line("checkpoint.snapshot_every", std::to_string(s.snapshot_every));
  return os.str();
}

std::string EffectiveJobSpecYaml(const JobSpec& spec) {
  // The canonical lines are "section.key: value" with YAML scalars; nest them under their sections.
  std::istringstream in(CanonicalJobSpec(spec));
  std::ostringstream out;
  out << "# effective job spec (every field, defaults and --set overrides included)\n";
  std::string line;
  std::string section;
  while (std::getline(in, line)) {
    const size_t colon = line.find(": ");
    const std::string key = line.substr(0, colon);
    const size_t dot = key.find('.');
    if (dot == std::string::npos || dot > colon) {
      out << line << "\n";
      continue;
    }
    const std::string this_section = key.substr(0, dot);
    // A method's options section is only allowed (and only meaningful) under its method.
    const std::vector<std::string> sections = OptionSections();
    if (this_section != MethodOf(spec).options_section && !SectionApplies(spec, this_section) &&
        std::find(sections.begin(), sections.end(), this_section) != sections.end())
      continue;
    // Likewise eval.every only counts with an eval dataset, and an aggregation key with its rule.
    if (key == "eval.every" && spec.eval_dataset.empty()) continue;
    if (this_section == "aggregation" && !AggregationKeyApplies(spec.aggregation, key)) continue;
    if (this_section == "privacy" && key != "privacy.mechanism" && spec.privacy.mechanism == DpMechanism::kNone)
      continue;
    if (this_section != section) {
      section = this_section;
      out << section << ":\n";
    }
    out << "  " << line.substr(dot + 1) << "\n";
  }
  return out.str();
}

uint64_t JobSpecHash(const JobSpec& spec) {
  const std::string text = CanonicalJobSpec(spec);
  return Fnv1a64(text.data(), text.size());
}

}  // namespace tributary
