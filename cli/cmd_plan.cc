// `tributary plan`: the cluster-mode plan of a job (scheduler/planner.h) for an inventory, as a table
// or JSON (docs/placement.md).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/plan_inventory.h"
#include "cli/worker_calibrations.h"
#include "coordinator/worker_registry.h"
#include "engine/io/model_dir.h"
#include "engine/model/llama_config.h"
#include "federation/job_spec.h"
#include "federation/outer_codec.h"
#include "peft/ferret.h"

namespace tributary::cli {
namespace {

struct PlanFlags {
  std::string job_file;
  std::string inventory_file;
  std::string codec;        // "" = the job's; "auto" = chosen among fp32, bf16, int8, fp4
  std::string local_steps;  // "" = the job's; "auto" = chosen by the cost model
  std::string objective = "max_min";
  std::string format = "text";
  std::string job_id;  // live inventory: the running job whose calibrated compute rates to plan with
  std::vector<std::string> sets;
  ConnectionFlags connection;  // without --inventory: the coordinator whose live inventory is planned
};

// Encoded bytes of one pseudo-gradient of `table` under `codec` (per tensor, as cluster mode sends it);
// for ferret, the upper bound of K coefficients per block.
Result<uint64_t> CodecBytes(const std::string& codec, const JobSpec& spec, const TensorTable& table) {
  if (codec == "ferret") {
    FerretOptions options = spec.ferret;
    TRIB_ASSIGN_OR_RETURN(std::vector<Block> blocks, MakeFerretBlocks(options, table));
    return static_cast<uint64_t>(PayloadBytes(options.wire_dtype, std::vector<int>(blocks.size(), options.K)));
  }
  TRIB_ASSIGN_OR_RETURN(OuterCodec c, ParseOuterCodec(codec));
  uint64_t bytes = 0;
  for (const TensorEntry& entry : table.entries()) bytes += OuterCodecBytes(c, entry.numel);
  return bytes;
}

Result<PlanJob> PlanJobOf(const JobSpec& spec, const PlanFlags& f) {
  if (spec.mode != "cluster")
    return Status::InvalidArgument(f.job_file + ": federation.mode is '" + spec.mode +
                                   "'; plan is for cluster-mode jobs (federation.mode: cluster)");
  TRIB_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(spec.base_model + "/config.json"));
  const std::shared_ptr<TensorTable> table = BuildLlamaTensorTable(config);
  PlanJob job;
  job.parameters = table->param_count();
  job.tokens_per_step = spec.batch_size * spec.grad_accum * spec.seq_len;
  job.ring_objective = f.objective == "min_sum_inverse" ? RingObjective::kMinSumInverse : RingObjective::kMaxMin;
  if (f.local_steps != "auto") {
    job.local_steps = spec.local_steps;
    if (!f.local_steps.empty()) {
      try {
        job.local_steps = std::stoll(f.local_steps);
      } catch (...) {
        job.local_steps = 0;
      }
      if (job.local_steps < 1) return Status::InvalidArgument("--local-steps: expected auto or an integer >= 1");
    }
  }
  std::vector<std::string> codecs = {f.codec.empty() ? spec.cluster.codec : f.codec};
  if (f.codec == "auto") codecs = {"fp32", "bf16", "int8", "fp4"};
  for (const std::string& name : codecs) {
    TRIB_ASSIGN_OR_RETURN(uint64_t bytes, CodecBytes(name, spec, *table));
    job.codecs.push_back({name, bytes});
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<IslandSpec> islands, ParseIslands(spec.cluster.islands));
  for (const IslandSpec& island : islands) job.islands.push_back({island.name, island.workers});
  return job;
}

nlohmann::json IslandJson(const IslandPlan& island) {
  nlohmann::json shares = nlohmann::json::object();
  for (const auto& [member, share] : island.shares) shares[member] = share;
  return {{"name", island.name},
          {"fabric", island.fabric},
          {"members", island.members},
          {"ring", island.ring},
          {"leader", island.leader},
          {"shares", shares},
          {"tokens_per_s", island.tokens_per_s},
          {"batch_tokens", island.batch_tokens},
          {"bottleneck_mbps", island.bottleneck_mbps},
          {"uplink_mbps", island.uplink_mbps},
          {"step_compute_s", island.step_compute_s},
          {"step_allreduce_s", island.step_allreduce_s},
          {"inner_phase_s", island.inner_phase_s},
          {"reasons", island.reasons}};
}

nlohmann::json PlanJson(const ClusterPlan& plan) {
  nlohmann::json islands = nlohmann::json::array();
  for (const IslandPlan& island : plan.islands) islands.push_back(IslandJson(island));
  return {{"islands", islands},
          {"local_steps", plan.local_steps},
          {"codec", plan.codec},
          {"outer_payload_bytes", plan.outer_payload_bytes},
          {"inner_phase_s", plan.inner_phase_s},
          {"outer_sync_s", plan.outer_sync_s},
          {"outer_fraction", plan.outer_fraction},
          {"meets_target", plan.meets_target},
          {"reasons", plan.reasons}};
}

std::string Seconds(double s) {
  if (s <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g s", s);
  return buf;
}

void PrintPlanText(const ClusterPlan& plan) {
  std::printf("%-18s %-22s %-8s %-10s %-12s %-10s %-10s %s\n", "ISLAND", "FABRIC", "LEADER", "BATCH", "BOTTLENECK",
              "STEP", "INNER", "RING (shares)");
  for (const IslandPlan& island : plan.islands) {
    std::string ring;
    for (const std::string& member : island.ring) {
      char share[64];
      std::snprintf(share, sizeof(share), "%s%s(%.2f)", ring.empty() ? "" : " > ", member.c_str(),
                    island.shares.at(member));
      ring += share;
    }
    char bottleneck[32];
    std::snprintf(bottleneck, sizeof(bottleneck), "%.0f Mb/s", island.bottleneck_mbps);
    std::printf("%-18s %-22s %-8s %-10lld %-12s %-10s %-10s %s\n", island.name.c_str(), island.fabric.c_str(),
                island.leader.c_str(), static_cast<long long>(island.batch_tokens),
                island.members.size() > 1 ? bottleneck : "-",
                Seconds(island.step_compute_s + island.step_allreduce_s).c_str(), Seconds(island.inner_phase_s).c_str(),
                ring.c_str());
  }
  std::printf("\nH %lld, codec %s (%llu bytes per island), inner phase %s, outer sync %s",
              static_cast<long long>(plan.local_steps), plan.codec.c_str(),
              static_cast<unsigned long long>(plan.outer_payload_bytes), Seconds(plan.inner_phase_s).c_str(),
              Seconds(plan.outer_sync_s).c_str());
  if (plan.outer_fraction > 0) std::printf(" (%.2g%% of the inner phase)", 100 * plan.outer_fraction);
  std::printf("\nwhy:\n");
  for (const IslandPlan& island : plan.islands)
    for (const std::string& reason : island.reasons) std::printf("  %s: %s\n", island.name.c_str(), reason.c_str());
  for (const std::string& reason : plan.reasons) std::printf("  %s\n", reason.c_str());
}

// The coordinator's alive workers with their reported NICs and, with --job-id, their calibrated compute
// for that job (0 = not calibrated); no links are measured yet.
Result<PlanInventory> LiveInventory(const PlanFlags& f, const CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(ConnectionProfile profile, ResolveConnectionProfile(ctx.config, f.connection));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorClient> client, CoordinatorClient::Connect(profile));
  TRIB_ASSIGN_OR_RETURN(v1::ListWorkersReply reply, client->ListWorkers());
  const std::map<std::string, double> rates =
      f.job_id.empty() ? std::map<std::string, double>{} : CalibratedTokensPerSecond(reply, f.job_id);
  PlanInventory inventory;
  for (const v1::WorkerStatus& w : reply.workers()) {
    if (!w.alive()) continue;
    auto rate = rates.find(w.worker_id());
    inventory.workers.push_back(
        {InventoryFromCapabilities(w.worker_id(), w.capabilities()), rate == rates.end() ? 0.0 : rate->second});
  }
  if (inventory.workers.empty()) return Status::FailedPrecondition("the coordinator has no alive workers to plan for");
  if (!f.job_id.empty() && rates.empty())
    std::fprintf(stderr, "tributary plan: no worker reports a calibrated compute rate for job %s; planning without\n",
                 f.job_id.c_str());
  return inventory;
}

Status RunPlan(const PlanFlags& f, const CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, LoadJobSpec(f.job_file, f.sets));
  TRIB_ASSIGN_OR_RETURN(PlanJob job, PlanJobOf(spec, f));
  if (!f.job_id.empty() && !f.inventory_file.empty())
    return Status::InvalidArgument(
        "--job-id takes the calibrations from the coordinator; it cannot be used with "
        "--inventory (give tokens_per_s in the inventory file instead)");
  PlanInventory inventory;
  if (f.inventory_file.empty()) {
    TRIB_ASSIGN_OR_RETURN(inventory, LiveInventory(f, ctx));
  } else {
    TRIB_ASSIGN_OR_RETURN(inventory, LoadPlanInventory(f.inventory_file));
  }
  Result<ClusterPlan> plan = PlanCluster(inventory.workers, inventory.links, job);
  if (!plan.ok()) return plan.status().WithContext(f.job_file);
  if (f.format == "json") {
    PrintJsonOk("plan", PlanJson(*plan));
  } else {
    PrintPlanText(*plan);
  }
  return Status::OK();
}

}  // namespace

void RegisterPlanCommand(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* plan = app.add_subcommand(
      "plan", "Plan a cluster-mode job: islands, rings, leaders, shares, H and codec, with the reasons");
  plan->add_option("--job", f->job_file, "Job spec (YAML), federation.mode cluster")->required();
  plan->add_option("--inventory", f->inventory_file,
                   "Workers, NICs and measured links (YAML; docs/placement.md); default: the coordinator's alive "
                   "workers");
  plan->add_option("--codec", f->codec, "auto|fp32|bf16|int8|fp4|ferret (default: the job's cluster.codec)");
  plan->add_option("--local-steps", f->local_steps, "auto|N (default: the job's train.local_steps)");
  plan->add_option("--ring-objective", f->objective, "max_min|min_sum_inverse (default max_min)")
      ->check(CLI::IsMember({"max_min", "min_sum_inverse"}));
  plan->add_option("--job-id", f->job_id,
                   "Without --inventory: plan with the compute rates the workers calibrated for this running job");
  plan->add_option("--set", f->sets, "Override a job spec key: --set key=value");
  plan->add_option("--format", f->format, "text|json")->check(CLI::IsMember({"text", "json"}));
  AddConnectionFlags(plan, f->connection);
  registry.handlers["plan"] = [f](CommandContext& ctx) -> Status { return RunPlan(*f, ctx); };
}

}  // namespace tributary::cli
