#include "cli/plan_inventory.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "base/file_util.h"
#include "worker/capabilities.h"

namespace tributary::cli {
namespace {

Status Bad(const std::string& source, const YAML::Node& node, const std::string& key, const std::string& what) {
  return Status::InvalidArgument(source + ":" + std::to_string(node.Mark().line + 1) + ": " + key + ": " + what);
}

Status CheckKeys(const std::string& source, const YAML::Node& map, const std::string& where,
                 const std::set<std::string>& allowed) {
  if (!map.IsMap()) return Bad(source, map, where, "expected a mapping");
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (allowed.count(key) == 0) return Bad(source, kv.first, where + "." + key, "unknown key");
  }
  return Status::OK();
}

Result<double> NonNegative(const std::string& source, const YAML::Node& node, const std::string& key) {
  double value = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value) || !std::isfinite(value) || value < 0)
    return Bad(source, node, key, "expected a number >= 0");
  return value;
}

Result<LinkMeasurement> ParseLink(const std::string& source, const YAML::Node& node, const std::string& key) {
  TRIB_RETURN_IF_ERROR(CheckKeys(source, node, key, {"a", "b", "mbps", "rtt_ms"}));
  if (!node["mbps"]) return Bad(source, node, key + ".mbps", "missing");
  LinkMeasurement link;
  TRIB_ASSIGN_OR_RETURN(link.mbps, NonNegative(source, node["mbps"], key + ".mbps"));
  if (link.mbps <= 0) return Bad(source, node["mbps"], key + ".mbps", "must be > 0");
  if (node["rtt_ms"]) {
    TRIB_ASSIGN_OR_RETURN(link.rtt_ms, NonNegative(source, node["rtt_ms"], key + ".rtt_ms"));
  }
  return link;
}

Result<PlanWorker> ParseWorker(const std::string& source, const YAML::Node& node, const std::string& key,
                               LinkMatrix* links) {
  TRIB_RETURN_IF_ERROR(CheckKeys(source, node, key, {"id", "nics", "tokens_per_s", "uplink"}));
  PlanWorker worker;
  if (!node["id"] || !node["id"].IsScalar() || node["id"].as<std::string>().empty())
    return Bad(source, node, key + ".id", "a non-empty worker id is required");
  worker.inventory.worker_id = node["id"].as<std::string>();
  worker.inventory.alive = true;
  if (node["nics"]) {
    if (!node["nics"].IsSequence()) return Bad(source, node["nics"], key + ".nics", "expected a list");
    std::vector<std::string> specs;
    for (const YAML::Node& nic : node["nics"]) specs.push_back(nic.as<std::string>());
    WorkerCapabilities caps;
    Status s = ApplyNicOverrides(specs, &caps);
    if (!s.ok()) return Bad(source, node["nics"], key + ".nics", s.message());
    worker.inventory.nics = caps.nics;
  }
  if (node["tokens_per_s"]) {
    TRIB_ASSIGN_OR_RETURN(worker.tokens_per_s, NonNegative(source, node["tokens_per_s"], key + ".tokens_per_s"));
  }
  if (node["uplink"]) {
    YAML::Node up = node["uplink"];
    TRIB_RETURN_IF_ERROR(CheckKeys(source, up, key + ".uplink", {"mbps", "rtt_ms"}));
    TRIB_ASSIGN_OR_RETURN(LinkMeasurement link, ParseLink(source, up, key + ".uplink"));
    links->SetUplink(worker.inventory.worker_id, link);
  }
  return worker;
}

}  // namespace

Result<PlanInventory> ParsePlanInventory(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  TRIB_RETURN_IF_ERROR(CheckKeys(source, root, "inventory", {"workers", "links"}));
  if (!root["workers"] || !root["workers"].IsSequence())
    return Bad(source, root, "workers", "expected a list of workers");
  PlanInventory inventory;
  std::set<std::string> ids;
  for (size_t i = 0; i < root["workers"].size(); ++i) {
    const std::string key = "workers[" + std::to_string(i) + "]";
    TRIB_ASSIGN_OR_RETURN(PlanWorker worker, ParseWorker(source, root["workers"][i], key, &inventory.links));
    if (!ids.insert(worker.inventory.worker_id).second)
      return Bad(source, root["workers"][i], key + ".id", "worker '" + worker.inventory.worker_id + "' listed twice");
    inventory.workers.push_back(std::move(worker));
  }
  if (root["links"]) {
    if (!root["links"].IsSequence()) return Bad(source, root["links"], "links", "expected a list");
    for (size_t i = 0; i < root["links"].size(); ++i) {
      const YAML::Node node = root["links"][i];
      const std::string key = "links[" + std::to_string(i) + "]";
      TRIB_ASSIGN_OR_RETURN(LinkMeasurement link, ParseLink(source, node, key));
      for (const char* end : {"a", "b"}) {
        if (!node[end] || ids.count(node[end].as<std::string>()) == 0)
          return Bad(source, node, key + "." + end, "must name a worker of the inventory");
      }
      if (node["a"].as<std::string>() == node["b"].as<std::string>())
        return Bad(source, node, key, "a link needs two different workers");
      inventory.links.Set(node["a"].as<std::string>(), node["b"].as<std::string>(), link);
    }
  }
  return inventory;
}

Result<PlanInventory> LoadPlanInventory(const std::string& path) {
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParsePlanInventory(text, path);
}

}  // namespace tributary::cli
