#include "scheduler/flow_sim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace tributary {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Max-min fair rates (bytes/s) of the active flows by progressive filling: all unfrozen flows rise
// together until a link saturates, whose flows freeze at that rate.
std::vector<double> FairRates(const std::vector<SimFlow>& flows, const std::vector<int>& active,
                              const std::vector<double>& capacity) {
  std::vector<double> rate(flows.size(), 0), frozen_sum(capacity.size(), 0);
  std::vector<int> unfrozen_count(capacity.size(), 0);
  std::vector<bool> frozen(flows.size(), false);
  for (int f : active)
    for (int l : flows[f].links) ++unfrozen_count[l];
  size_t left = active.size();
  while (left > 0) {
    double level = kInf;
    for (size_t l = 0; l < capacity.size(); ++l)
      if (unfrozen_count[l] > 0) level = std::min(level, (capacity[l] - frozen_sum[l]) / unfrozen_count[l]);
    if (level == kInf) {  // flows on no link: not limited by the network
      for (int f : active) rate[f] = frozen[f] ? rate[f] : kInf;
      break;
    }
    std::vector<bool> saturated(capacity.size(), false);
    for (size_t l = 0; l < capacity.size(); ++l)
      saturated[l] = unfrozen_count[l] > 0 && (capacity[l] - frozen_sum[l]) / unfrozen_count[l] <= level * (1 + 1e-12);
    for (int f : active) {
      if (frozen[f]) continue;
      bool hits = false;
      for (int l : flows[f].links) hits = hits || saturated[l];
      if (!hits) continue;
      frozen[f] = true;
      rate[f] = std::max(level, 0.0);
      --left;
      for (int l : flows[f].links) {
        frozen_sum[l] += rate[f];
        --unfrozen_count[l];
      }
    }
  }
  return rate;
}

}  // namespace

int SimNetwork::AddLink(double mbps, double latency_ms) {
  mbps_.push_back(mbps);
  latency_s_.push_back(latency_ms / 1000.0);
  return static_cast<int>(mbps_.size()) - 1;
}

std::vector<double> SimNetwork::RunFlows(const std::vector<SimFlow>& flows) const {
  std::vector<double> capacity(mbps_.size());
  for (size_t l = 0; l < mbps_.size(); ++l) capacity[l] = mbps_[l] * 1e6 / 8;  // bytes/s
  std::vector<double> remaining(flows.size()), done(flows.size(), 0);
  std::vector<int> active;
  for (size_t f = 0; f < flows.size(); ++f) {
    remaining[f] = flows[f].bytes;
    if (remaining[f] > 0) active.push_back(static_cast<int>(f));
  }
  double now = 0;
  while (!active.empty()) {
    const std::vector<double> rate = FairRates(flows, active, capacity);
    double step = kInf;
    for (int f : active) step = std::min(step, rate[f] == kInf ? 0.0 : remaining[f] / rate[f]);
    now += step;
    std::vector<int> still;
    for (int f : active) {
      remaining[f] -= rate[f] == kInf ? remaining[f] : rate[f] * step;
      if (remaining[f] <= flows[f].bytes * 1e-9) {
        done[f] = now;
      } else {
        still.push_back(f);
      }
    }
    active.swap(still);
  }
  for (size_t f = 0; f < flows.size(); ++f)
    for (int l : flows[f].links) done[f] += latency_s_[l];
  return done;
}

namespace {

// Directed link ids of a built cluster.
struct BuiltCluster {
  SimNetwork net;
  struct Ports {
    int fabric_up = -1, fabric_down = -1, eth_up = -1, eth_down = -1, site = -1;
  };
  std::map<std::string, Ports> ports;           // by worker id
  std::vector<std::pair<int, int>> site_links;  // per site: (up, down)
  std::map<std::pair<int, int>, int> direct;    // (from site, to site) -> the site link's direction
  int coordinator_in = -1, coordinator_out = -1;
  std::map<std::string, const SimWorker*> workers;
};

Status AddSiteLinks(const SimCluster& cluster, const std::map<std::string, int>& site_index, BuiltCluster* b) {
  for (const SimSiteLink& link : cluster.site_links) {
    const std::string name = "site link '" + link.a + "-" + link.b + "'";
    auto a = site_index.find(link.a), z = site_index.find(link.b);
    if (a == site_index.end() || z == site_index.end()) return Status::InvalidArgument(name + ": unknown site");
    if (a->second == z->second) return Status::InvalidArgument(name + ": joins a site to itself");
    if (!(link.mbps > 0)) return Status::InvalidArgument(name + ": mbps must be > 0");
    if (b->direct.count({a->second, z->second}) > 0) return Status::InvalidArgument(name + ": listed twice");
    b->direct[{a->second, z->second}] = b->net.AddLink(link.mbps, link.latency_ms);
    b->direct[{z->second, a->second}] = b->net.AddLink(link.mbps, link.latency_ms);
  }
  return Status::OK();
}

Result<BuiltCluster> Build(const SimCluster& cluster) {
  BuiltCluster b;
  std::map<std::string, int> site_index;
  for (const SimSite& site : cluster.sites) {
    if (!(site.wan_mbps > 0)) return Status::InvalidArgument("site '" + site.name + "': wan_mbps must be > 0");
    site_index[site.name] = static_cast<int>(b.site_links.size());
    b.site_links.push_back(
        {b.net.AddLink(site.wan_mbps, site.wan_latency_ms), b.net.AddLink(site.wan_mbps, site.wan_latency_ms)});
  }
  TRIB_RETURN_IF_ERROR(AddSiteLinks(cluster, site_index, &b));
  if (!(cluster.coordinator_mbps > 0)) return Status::InvalidArgument("coordinator_mbps: must be > 0");
  b.coordinator_in = b.net.AddLink(cluster.coordinator_mbps, cluster.coordinator_latency_ms);
  b.coordinator_out = b.net.AddLink(cluster.coordinator_mbps, cluster.coordinator_latency_ms);
  for (const SimWorker& w : cluster.workers) {
    auto site = site_index.find(w.site);
    if (site == site_index.end())
      return Status::InvalidArgument("worker '" + w.id + "': unknown site '" + w.site + "'");
    if (!(w.eth_mbps > 0) || (!w.fabric.empty() && !(w.fabric_mbps > 0)))
      return Status::InvalidArgument("worker '" + w.id + "': NIC speeds must be > 0");
    BuiltCluster::Ports p;
    p.site = site->second;
    p.eth_up = b.net.AddLink(w.eth_mbps, cluster.eth_latency_ms);
    p.eth_down = b.net.AddLink(w.eth_mbps, cluster.eth_latency_ms);
    if (!w.fabric.empty()) {
      p.fabric_up = b.net.AddLink(w.fabric_mbps, cluster.fabric_latency_ms);
      p.fabric_down = b.net.AddLink(w.fabric_mbps, cluster.fabric_latency_ms);
    }
    if (!b.ports.emplace(w.id, p).second) return Status::InvalidArgument("worker '" + w.id + "' listed twice");
    b.workers[w.id] = &w;
  }
  return b;
}

std::vector<int> WorkerPath(const BuiltCluster& b, const std::string& from, const std::string& to) {
  const BuiltCluster::Ports& p = b.ports.at(from);
  const BuiltCluster::Ports& q = b.ports.at(to);
  const SimWorker& a = *b.workers.at(from);
  if (!a.fabric.empty() && a.fabric == b.workers.at(to)->fabric) return {p.fabric_up, q.fabric_down};
  if (p.site == q.site) return {p.eth_up, q.eth_down};
  auto direct = b.direct.find({p.site, q.site});
  if (direct != b.direct.end()) return {p.eth_up, direct->second, q.eth_down};
  return {p.eth_up, b.site_links[p.site].first, b.site_links[q.site].second, q.eth_down};
}

std::vector<int> UpPath(const BuiltCluster& b, const std::string& worker) {
  const BuiltCluster::Ports& p = b.ports.at(worker);
  return {p.eth_up, b.site_links[p.site].first, b.coordinator_in};
}

std::vector<int> DownPath(const BuiltCluster& b, const std::string& worker) {
  const BuiltCluster::Ports& p = b.ports.at(worker);
  return {b.coordinator_out, b.site_links[p.site].second, p.eth_down};
}

Status CheckRound(const BuiltCluster& b, const SimRound& round) {
  if (round.islands.empty()) return Status::InvalidArgument("a round needs at least one island");
  std::set<std::string> seen;
  for (const SimIsland& island : round.islands) {
    if (island.ring.empty()) return Status::InvalidArgument("an island has no members");
    for (const std::string& id : island.ring) {
      if (b.ports.count(id) == 0) return Status::InvalidArgument("worker '" + id + "' is not in the cluster");
      if (!seen.insert(id).second) return Status::InvalidArgument("worker '" + id + "' is in two islands");
      if (island.shares.count(id) == 0) return Status::InvalidArgument("worker '" + id + "': no batch share");
      if (!(b.workers.at(id)->tokens_per_s > 0))
        return Status::InvalidArgument("worker '" + id + "': tokens_per_s must be > 0");
    }
  }
  return Status::OK();
}

}  // namespace

Result<SimResult> SimulateRound(const SimCluster& cluster, const SimRound& round) {
  TRIB_ASSIGN_OR_RETURN(BuiltCluster b, Build(cluster));
  TRIB_RETURN_IF_ERROR(CheckRound(b, round));
  // One ring step of every island at once.
  std::vector<SimFlow> flows;
  std::vector<size_t> first_flow;
  for (const SimIsland& island : round.islands) {
    first_flow.push_back(flows.size());
    const size_t n = island.ring.size();
    if (n < 2) continue;
    for (size_t k = 0; k < n; ++k)
      flows.push_back({WorkerPath(b, island.ring[k], island.ring[(k + 1) % n]), round.gradient_bytes / n});
  }
  first_flow.push_back(flows.size());
  if (cluster.ack_bytes_per_payload_byte > 0) {
    for (const SimIsland& island : round.islands) {
      const size_t n = island.ring.size();
      for (size_t k = 0; n >= 2 && k < n; ++k)
        flows.push_back({WorkerPath(b, island.ring[(k + 1) % n], island.ring[k]),
                         cluster.ack_bytes_per_payload_byte * round.gradient_bytes / static_cast<double>(n)});
    }
  }
  const std::vector<double> step_done = b.net.RunFlows(flows);
  SimResult result;
  double tokens = 0;
  for (size_t i = 0; i < round.islands.size(); ++i) {
    const SimIsland& island = round.islands[i];
    double compute = 0, ring_step = 0;
    for (const std::string& id : island.ring)
      compute = std::max(compute, island.shares.at(id) * island.batch_tokens / b.workers.at(id)->tokens_per_s);
    for (size_t f = first_flow[i]; f < first_flow[i + 1]; ++f) ring_step = std::max(ring_step, step_done[f]);
    const double allreduce = 2.0 * static_cast<double>(island.ring.size() - 1) * ring_step;
    result.allreduce_s = std::max(result.allreduce_s, allreduce);
    result.inner_step_s = std::max(result.inner_step_s, compute + allreduce);
    tokens += static_cast<double>(island.batch_tokens) * static_cast<double>(round.local_steps);
  }
  result.inner_phase_s = result.inner_step_s * static_cast<double>(round.local_steps);
  std::vector<SimFlow> up, down;
  for (const SimIsland& island : round.islands) {
    up.push_back({UpPath(b, island.ring.front()), round.payload_bytes});
    for (const std::string& id : island.ring) down.push_back({DownPath(b, id), round.payload_bytes});
  }
  const std::vector<double> up_done = b.net.RunFlows(up), down_done = b.net.RunFlows(down);
  result.outer_sync_s =
      *std::max_element(up_done.begin(), up_done.end()) + *std::max_element(down_done.begin(), down_done.end());
  result.round_s = result.inner_phase_s + result.outer_sync_s;
  result.tokens_per_s = result.round_s > 0 ? tokens / result.round_s : 0;
  return result;
}

}  // namespace tributary
