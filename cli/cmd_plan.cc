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
#include "coordinator/cluster_plan.h"
#include "coordinator/worker_registry.h"
#include "engine/io/model_dir.h"
#include "engine/model/llama_config.h"
#include "federation/job_spec.h"

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

Result<PlanJob> PlanJobOf(const JobSpec& spec, const PlanFlags& f) {
  PlanChoices choices;
  choices.codec = f.codec;
  choices.ring_objective = f.objective == "min_sum_inverse" ? RingObjective::kMinSumInverse : RingObjective::kMaxMin;
  if (f.local_steps == "auto") {
    choices.local_steps = 0;
  } else if (!f.local_steps.empty()) {
    try {
      choices.local_steps = std::stoll(f.local_steps);
    } catch (...) {
      choices.local_steps = 0;
    }
    if (choices.local_steps < 1) return Status::InvalidArgument("--local-steps: expected auto or an integer >= 1");
  }
  if (spec.mode != "cluster")
    return Status::InvalidArgument(f.job_file + ": federation.mode is '" + spec.mode +
                                   "'; plan is for cluster-mode jobs (federation.mode: cluster)");
  TRIB_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(spec.base_model + "/config.json"));
  const std::shared_ptr<TensorTable> table = BuildLlamaTensorTable(config);
  Result<PlanJob> job = PlanJobForSpec(spec, *table, choices);
  if (!job.ok()) return job.status().WithContext(f.job_file);
  return job;
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
  const v1::ClusterPlanView view = ClusterPlanToView(*plan, 0);
  if (f.format == "json") {
    PrintJsonOk("plan", ClusterPlanJson(view));
  } else {
    std::fputs(ClusterPlanText(view).c_str(), stdout);
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
