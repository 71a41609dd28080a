// cluster.islands entries ("NAME=WORKER,WORKER,...") parsed into IslandSpecs (federation/job_spec.h).
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "federation/job_spec.h"

namespace tributary {

Result<std::vector<IslandSpec>> ParseIslands(const std::vector<std::string>& entries) {
  std::vector<IslandSpec> islands;
  std::map<std::string, std::string> island_of;  // worker -> island
  for (const std::string& entry : entries) {
    const size_t eq = entry.find('=');
    IslandSpec island;
    island.name = entry.substr(0, eq);
    if (eq == std::string::npos || island.name.empty())
      return Status::InvalidArgument("'" + entry + "': expected NAME=WORKER,WORKER,...");
    for (const IslandSpec& other : islands)
      if (other.name == island.name) return Status::InvalidArgument("island '" + island.name + "' is listed twice");
    std::istringstream workers(entry.substr(eq + 1));
    std::string worker;
    while (std::getline(workers, worker, ',')) {
      if (worker.empty()) return Status::InvalidArgument("'" + entry + "': an empty worker id");
      auto [it, fresh] = island_of.emplace(worker, island.name);
      if (!fresh)
        return Status::InvalidArgument("worker '" + worker + "' is in islands '" + it->second + "' and '" +
                                       island.name + "'");
      island.workers.push_back(worker);
    }
    if (island.workers.empty()) return Status::InvalidArgument("island '" + island.name + "' has no workers");
    islands.push_back(std::move(island));
  }
  return islands;
}

}  // namespace tributary
