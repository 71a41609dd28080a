#include "coordinator/cluster_plan.h"

#include <cstdio>
#include <map>
#include <vector>

#include "federation/outer_codec.h"
#include "peft/ferret.h"

namespace tributary {
namespace {

// Encoded bytes of one pseudo-gradient of `table` under `codec` (per tensor, as cluster mode sends it);
// for ferret, the upper bound of K coefficients per block.
Result<uint64_t> CodecBytes(const std::string& codec, const JobSpec& spec, const TensorTable& table) {
  if (codec == "ferret") {
    const FerretOptions& options = spec.ferret;
    TRIB_ASSIGN_OR_RETURN(std::vector<Block> blocks, MakeFerretBlocks(options, table));
    return static_cast<uint64_t>(PayloadBytes(options.wire_dtype, std::vector<int>(blocks.size(), options.K)));
  }
  TRIB_ASSIGN_OR_RETURN(OuterCodec c, ParseOuterCodec(codec));
  uint64_t bytes = 0;
  for (const TensorEntry& entry : table.entries()) bytes += OuterCodecBytes(c, entry.numel);
  return bytes;
}

std::string Seconds(double s) {
  if (s <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g s", s);
  return buf;
}

std::string Joined(const std::vector<std::string>& names, const char* separator) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : separator) + n;
  return out.empty() ? "-" : out;
}

std::string IslandRow(const v1::IslandPlanView& island) {
  std::string ring;
  for (const std::string& member : island.ring()) {
    auto share = island.shares().find(member);
    char text[160];
    std::snprintf(text, sizeof(text), "%s%s(%.2f)", ring.empty() ? "" : " > ", member.c_str(),
                  share == island.shares().end() ? 0.0 : share->second);
    ring += text;
  }
  char bottleneck[32];
  std::snprintf(bottleneck, sizeof(bottleneck), "%.0f Mb/s", island.bottleneck_mbps());
  char row[512];
  std::snprintf(row, sizeof(row), "%-18s %-22s %-8s %-10lld %-12s %-10s %-10s ", island.name().c_str(),
                island.fabric().c_str(), island.leader().c_str(), static_cast<long long>(island.batch_tokens()),
                island.members_size() > 1 ? bottleneck : "-",
                Seconds(island.step_compute_s() + island.step_allreduce_s()).c_str(),
                Seconds(island.inner_phase_s()).c_str());
  return row + ring + "\n";
}

}  // namespace

Result<PlanJob> PlanJobForSpec(const JobSpec& spec, const TensorTable& table, const PlanChoices& choices) {
  if (spec.mode != "cluster")
    return Status::InvalidArgument("federation.mode is '" + spec.mode +
                                   "'; a plan is for cluster-mode jobs (federation.mode: cluster)");
  if (choices.local_steps < -1) return Status::InvalidArgument("local_steps: expected auto or an integer >= 1");
  PlanJob job;
  job.parameters = table.param_count();
  job.tokens_per_step = spec.batch_size * spec.grad_accum * spec.seq_len;
  job.ring_objective = choices.ring_objective;
  // The spec's train.local_steps auto is 0, as choices.local_steps 0: chosen by the cost model.
  job.local_steps = choices.local_steps < 0 ? spec.local_steps : choices.local_steps;
  const std::string codec = choices.codec.empty() ? spec.cluster.codec : choices.codec;
  std::vector<std::string> codecs = {codec};
  if (codec == "auto") {
    codecs.clear();
    for (OuterCodec c : AutoOuterCodecs()) codecs.push_back(OuterCodecName(c));
  }
  for (const std::string& name : codecs) {
    TRIB_ASSIGN_OR_RETURN(uint64_t bytes, CodecBytes(name, spec, table));
    job.codecs.push_back({name, bytes});
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<IslandSpec> islands, ParseIslands(spec.cluster.islands));
  for (const IslandSpec& island : islands) job.islands.push_back({island.name, island.workers});
  return job;
}

RoundOuter ChooseRoundOuter(const JobSpec& spec, const ClusterPlan* plan) {
  RoundOuter out;
  const bool auto_h = spec.local_steps == 0, auto_codec = spec.cluster.codec == "auto";
  out.local_steps = auto_h ? (plan != nullptr ? plan->local_steps : kFallbackLocalSteps) : spec.local_steps;
  if (auto_codec) out.codec = plan != nullptr ? plan->codec : kFallbackCodec;
  if (!auto_h && !auto_codec) return out;
  const std::string chosen = std::string(auto_h ? "H " + std::to_string(out.local_steps) : "") +
                             (auto_h && auto_codec ? ", " : "") + (auto_codec ? "codec " + out.codec : "");
  out.reason = plan != nullptr ? chosen + " (auto: the plan's)"
                               : chosen + " (auto, but no plan: the planner's choice without measurements)";
  return out;
}

v1::ClusterPlanView ClusterPlanToView(const ClusterPlan& plan, uint64_t round) {
  v1::ClusterPlanView view;
  for (const IslandPlan& island : plan.islands) {
    v1::IslandPlanView* out = view.add_islands();
    out->set_name(island.name);
    out->set_fabric(island.fabric);
    for (const std::string& m : island.members) out->add_members(m);
    for (const std::string& m : island.ring) out->add_ring(m);
    out->set_leader(island.leader);
    for (const auto& [member, share] : island.shares) (*out->mutable_shares())[member] = share;
    out->set_tokens_per_s(island.tokens_per_s);
    out->set_batch_tokens(island.batch_tokens);
    out->set_bottleneck_mbps(island.bottleneck_mbps);
    out->set_uplink_mbps(island.uplink_mbps);
    out->set_step_compute_s(island.step_compute_s);
    out->set_step_allreduce_s(island.step_allreduce_s);
    out->set_inner_phase_s(island.inner_phase_s);
    for (const std::string& r : island.reasons) out->add_reasons(r);
  }
  view.set_local_steps(plan.local_steps);
  view.set_codec(plan.codec);
  view.set_outer_payload_bytes(plan.outer_payload_bytes);
  view.set_inner_phase_s(plan.inner_phase_s);
  view.set_outer_sync_s(plan.outer_sync_s);
  view.set_outer_fraction(plan.outer_fraction);
  view.set_meets_target(plan.meets_target);
  for (const std::string& r : plan.reasons) view.add_reasons(r);
  view.set_round(round);
  return view;
}

nlohmann::json ClusterPlanJson(const v1::ClusterPlanView& plan) {
  nlohmann::json islands = nlohmann::json::array();
  for (const v1::IslandPlanView& island : plan.islands()) {
    // std::map: the members in a fixed order whatever the proto map's iteration order.
    const std::map<std::string, double> shares(island.shares().begin(), island.shares().end());
    islands.push_back({{"name", island.name()},
                       {"fabric", island.fabric()},
                       {"members", std::vector<std::string>(island.members().begin(), island.members().end())},
                       {"ring", std::vector<std::string>(island.ring().begin(), island.ring().end())},
                       {"leader", island.leader()},
                       {"shares", shares},
                       {"tokens_per_s", island.tokens_per_s()},
                       {"batch_tokens", island.batch_tokens()},
                       {"bottleneck_mbps", island.bottleneck_mbps()},
                       {"uplink_mbps", island.uplink_mbps()},
                       {"step_compute_s", island.step_compute_s()},
                       {"step_allreduce_s", island.step_allreduce_s()},
                       {"inner_phase_s", island.inner_phase_s()},
                       {"reasons", std::vector<std::string>(island.reasons().begin(), island.reasons().end())}});
  }
  return {{"islands", islands},
          {"local_steps", plan.local_steps()},
          {"codec", plan.codec()},
          {"outer_payload_bytes", plan.outer_payload_bytes()},
          {"inner_phase_s", plan.inner_phase_s()},
          {"outer_sync_s", plan.outer_sync_s()},
          {"outer_fraction", plan.outer_fraction()},
          {"meets_target", plan.meets_target()},
          {"reasons", std::vector<std::string>(plan.reasons().begin(), plan.reasons().end())},
          {"round", plan.round()}};
}

std::string ClusterPlanText(const v1::ClusterPlanView& plan) {
  char line[512];
  std::snprintf(line, sizeof(line), "%-18s %-22s %-8s %-10s %-12s %-10s %-10s %s\n", "ISLAND", "FABRIC", "LEADER",
                "BATCH", "BOTTLENECK", "STEP", "INNER", "RING (shares)");
  std::string out = line;
  for (const v1::IslandPlanView& island : plan.islands()) out += IslandRow(island);
  std::snprintf(line, sizeof(line), "\nH %lld, codec %s (%llu bytes per island), inner phase %s, outer sync %s",
                static_cast<long long>(plan.local_steps()), plan.codec().c_str(),
                static_cast<unsigned long long>(plan.outer_payload_bytes()), Seconds(plan.inner_phase_s()).c_str(),
                Seconds(plan.outer_sync_s()).c_str());
  out += line;
  if (plan.outer_fraction() > 0) {
    std::snprintf(line, sizeof(line), " (%.2g%% of the inner phase)", 100 * plan.outer_fraction());
    out += line;
  }
  out += "\nwhy:\n";
  for (const v1::IslandPlanView& island : plan.islands())
    for (const std::string& reason : island.reasons()) out += "  " + island.name() + ": " + reason + "\n";
  for (const std::string& reason : plan.reasons()) out += "  " + reason + "\n";
  return out;
}

std::string DescribePlanChange(const ClusterPlan& before, const ClusterPlan& after) {
  std::map<std::string, const IslandPlan*> old;
  for (const IslandPlan& island : before.islands) old[island.name] = &island;
  std::vector<std::string> changes;
  for (const IslandPlan& island : after.islands) {
    auto it = old.find(island.name);
    if (it == old.end()) {
      changes.push_back("island " + island.name + " formed (" + Joined(island.ring, " > ") + ")");
      continue;
    }
    const IslandPlan& was = *it->second;
    old.erase(it);
    if (island.members != was.members) {
      changes.push_back("island " + island.name + ": members " + Joined(island.members, ",") + " (was " +
                        Joined(was.members, ",") + ")");
    } else if (island.ring != was.ring) {
      changes.push_back("island " + island.name + ": ring " + Joined(island.ring, " > ") + " (was " +
                        Joined(was.ring, " > ") + ")");
    }
    if (island.leader != was.leader)
      changes.push_back("island " + island.name + ": leader " + island.leader + " (was " + was.leader + ")");
  }
  for (const auto& [name, island] : old) changes.push_back("island " + name + " gone");
  if (after.local_steps != before.local_steps)
    changes.push_back("H " + std::to_string(after.local_steps) + " (was " + std::to_string(before.local_steps) + ")");
  if (after.codec != before.codec) changes.push_back("codec " + after.codec + " (was " + before.codec + ")");
  std::string out;
  for (const std::string& c : changes) out += (out.empty() ? "" : "; ") + c;
  return out;
}

}  // namespace tributary
