// The offline inventory for `tributary plan --inventory FILE` (docs/placement.md): workers with their
// NICs, measured compute and uplink, and measured links between workers, as YAML:
//
//   workers:
//     - id: ib0
//       nics: [ "fab0:infiniband:100000:ib-a" ]   # NAME:FABRIC:MBPS[:FABRIC_ID], as worker.nics
//       tokens_per_s: 1200                        # optional: measured compute for the job's model
//       uplink: { mbps: 1000, rtt_ms: 20 }        # optional: to the coordinator
//   links:
//     - { a: ib0, b: ib1, mbps: 90000, rtt_ms: 0.02 }
//
// Unknown keys, bad values and links naming unknown workers are errors naming FILE:LINE and the key.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "scheduler/planner.h"

namespace tributary::cli {

struct PlanInventory {
  std::vector<PlanWorker> workers;
  LinkMatrix links;
};

Result<PlanInventory> ParsePlanInventory(const std::string& yaml_text, const std::string& source);
Result<PlanInventory> LoadPlanInventory(const std::string& path);

}  // namespace tributary::cli
