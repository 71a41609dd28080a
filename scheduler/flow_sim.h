// A flow-level network simulator for cluster-mode plans (docs/placement.md): it predicts the inner
// step, inner phase and outer sync of one outer round of a plan on a link model, so the planner can be
// compared with other placements at thousands of workers without running them.
//
// Link model: every worker has an Ethernet NIC on its site's LAN and optionally a fabric NIC (an RDMA
// island); sites join a WAN core through one uplink each; the coordinator hangs off the core; two sites
// may also be joined directly (a site link, e.g. a private line). Every link is full duplex (one
// capacity per direction). A flow between two workers on the same fabric takes their fabric NICs;
// otherwise their Ethernet NICs and, between sites, the site link joining them when there is one, else
// both sites' uplinks through the core.
// Flows that run together share links max-min fairly (progressive filling) and finish after their
// transfer plus their path's latency.
// Round model: every inner step an island computes (each member its share of the batch) then runs a
// bandwidth-optimal ring all-reduce: 2 (n-1) synchronous steps, each sending G/n bytes from every
// member to its ring successor, with every island's step flows competing at once (the worst case
// for links islands share). The outer sync uploads each leader's payload to the coordinator at once,
// then every worker downloads the mean at once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

// Capacities are payload rates. TCP over Ethernet carries 1448 payload bytes (MSS at a 1500-byte MTU with
// TCP timestamps) per 1514-byte frame as a shaper (tbf) counts it, so a link shaped to R carries TCP
// payload at this fraction of R; the link probes measure 0.957-0.959 of the tbf rate (docs/benchmarks.md).
constexpr double kTcpPayloadPerWireByte = 1448.0 / 1514.0;

struct SimFlow {
  std::vector<int> links;  // directed link ids the flow crosses
  double bytes = 0;
};

// Directed links and max-min fair flow completion.
class SimNetwork {
 public:
  // A directed link; returns its id.
  int AddLink(double mbps, double latency_ms);
  // Completion time in seconds of each flow, all starting at time 0.
  std::vector<double> RunFlows(const std::vector<SimFlow>& flows) const;
  size_t link_count() const { return mbps_.size(); }

 private:
  std::vector<double> mbps_, latency_s_;
};

struct SimWorker {
  std::string id;
  std::string site;
  std::string fabric;  // "" = no fabric NIC
  double fabric_mbps = 0;
  double eth_mbps = 0;
  double tokens_per_s = 0;  // compute for the job's model
};

struct SimSite {
  std::string name;
  double wan_mbps = 0;  // its uplink to the WAN core, each direction
  double wan_latency_ms = 0;
};

// A direct link between two sites, each direction at mbps; worker traffic between them takes it
// instead of the WAN core (the coordinator is still reached through the sites' uplinks).
struct SimSiteLink {
  std::string a, b;  // site names, a != b
  double mbps = 0;
  double latency_ms = 0;
};

struct SimCluster {
  std::vector<SimWorker> workers;
  std::vector<SimSite> sites;
  std::vector<SimSiteLink> site_links;  // at most one per pair of sites
  double coordinator_mbps = 0;          // the coordinator's link to the core, each direction
  double coordinator_latency_ms = 0;
  double fabric_latency_ms = 0.005;
  double eth_latency_ms = 0.05;
  // TCP acknowledgements: every ring all-reduce flow also sends this many bytes per payload byte back
  // along the reverse path, where they share the links with the flows going that way (a ring's links
  // carry data both ways when it crosses a link twice). 0 = not modelled; the namespace testbed
  // measures 0.019 (one 66-byte ACK per 2.5 full segments; docs/benchmarks.md).
  double ack_bytes_per_payload_byte = 0;
};

struct SimIsland {
  std::vector<std::string> ring;         // ring order; ring[0] leads
  std::map<std::string, double> shares;  // fraction of the island's batch per member
  int64_t batch_tokens = 0;              // per inner step
};

struct SimRound {
  std::vector<SimIsland> islands;
  int64_t local_steps = 0;    // H
  double gradient_bytes = 0;  // all-reduced every inner step
  double payload_bytes = 0;   // one outer upload (and the broadcast mean)
};

struct SimResult {
  double inner_step_s = 0;   // the slowest island's compute + all-reduce
  double allreduce_s = 0;    // the slowest island's all-reduce
  double inner_phase_s = 0;  // H x inner_step_s
  double outer_sync_s = 0;
  double round_s = 0;       // inner phase + outer sync
  double tokens_per_s = 0;  // tokens of all islands' H steps / round_s
};

// One outer round of `round` on `cluster`. InvalidArgument naming the worker or site for an unknown
// id, a worker in two islands, a missing share, a capacity that is not > 0, or a site link that joins a
// site to itself, names an unknown site or repeats a pair.
Result<SimResult> SimulateRound(const SimCluster& cluster, const SimRound& round);

}  // namespace tributary
