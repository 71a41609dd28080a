// B12 (docs/benchmarks.md): ring order on the namespace testbed. One process per rank, each in its
// worker's namespace (bench/ring_testbed_bench.sh starts them):
//   1. probe: every pair of members is measured with the link prober (transport/link_probe.h), one probe
//      at a time (the smaller index sends), into the bandwidth matrix;
//   2. plan: the ring solver the planner uses (scheduler/ring_order.h) orders the ring for both
//      objectives (max_min, min_sum_inverse);
//   3. run: real gloo ring all-reduces through the islands' group code (cluster/island.h, IslandGroup,
//      as the workers' IslandReducer calls it) in index order, in each planned order and in any order
//      given with --order, each starting at an instant the members agree on in a barrier; the sums are
//      checked;
//   4. report (index rank 0): seconds per all-reduce (from the first member's start to the last member's
//      end on the shared monotonic clock, median over iterations), the ratio to index order, and the
//      flow-level simulator's prediction for the same topology and ring (scheduler/flow_sim.h): at the
//      tbf rates, at TCP's payload share of them, and with the reverse flows' ACKs too.
// Rendezvous (probe ports, results, gloo addresses): a directory shared by the processes (the
// namespaces only separate networks), one file per key written by rename.
//
//   ring_testbed_bench --rank R --member NAME:SITE:IP [--member ...] --store DIR --probe-key HEX64
//       [--values 396288] [--iters 5] [--warmup 1] [--probe-target-s 1] [--order NAME:M1,M2,...]
//       [--sim-site-link A-B:MBIT] [--sim-uplink SITE:MBIT] [--sim-lan-mbit 10000]
// Members are listed in index order (the rank order of the baseline ring); R is this process's index.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/island.h"
#include "scheduler/flow_sim.h"
#include "scheduler/ring_order.h"
#include "transport/link_probe.h"

namespace tributary {
namespace {

constexpr int kStoreTimeoutMs = 300000;
// ACK bytes per payload byte of a flow, measured on the testbed's tbf counters (bench/ring_testbed_bench.sh
// prints them per order): one 66-byte ACK per about 2.5 full segments.
constexpr double kAckBytesPerPayloadByte = 0.019;

struct Member {
  std::string name, site, ip;
};

struct NamedOrder {
  std::string name;
  std::vector<int> order;  // member indices, order[k] is gloo rank k
};

struct Options {
  int rank = -1;
  std::vector<Member> members;
  std::string store_dir, probe_key;
  int64_t values = 396288;  // the demo model's parameters (1.59 MB of fp32 gradients)
  int iters = 5, warmup = 1;
  double probe_target_s = 1.0;
  std::vector<std::pair<std::string, std::string>> extra_orders;  // name, comma-separated members
  std::vector<SimSiteLink> site_links;
  std::map<std::string, double> uplinks;
  double lan_mbit = 10000;
};

// One file per key in a shared directory; a value appears at once (written aside, then renamed).
class FileStore final : public RendezvousStore {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}
  Status Set(const std::string& key, const std::vector<uint8_t>& value) override {
    const std::string path = Path(key), tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(value.data()), static_cast<std::streamsize>(value.size()));
    out.close();
    if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) return Status::IOError("store: cannot write " + path);
    return Status::OK();
  }
  Result<std::vector<uint8_t>> Get(const std::string& key, int timeout_ms) override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    const std::string path = Path(key);
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() > deadline)
        return Status::Timeout("store: key '" + key + "' not set within " + std::to_string(timeout_ms) + " ms");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }
  Status SetString(const std::string& key, const std::string& value) {
    return Set(key, std::vector<uint8_t>(value.begin(), value.end()));
  }
  Result<std::string> GetString(const std::string& key) {
    TRIB_ASSIGN_OR_RETURN(std::vector<uint8_t> v, Get(key, kStoreTimeoutMs));
    return std::string(v.begin(), v.end());
  }

 private:
  std::string Path(const std::string& key) const {
    std::string file;
    for (char c : key) file += c == '/' ? '%' : c;
    return dir_ + "/" + file;
  }
  std::string dir_;
};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

Result<std::string> HexBytes(const std::string& hex) {
  if (hex.size() != 2 * kProbeKeyBytes) return Status::InvalidArgument("--probe-key: needs 64 hex digits");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

Status ParseFlag(const std::string& flag, const std::string& value, Options* o) {
  if (flag == "--rank")
    o->rank = std::stoi(value);
  else if (flag == "--store")
    o->store_dir = value;
  else if (flag == "--probe-key") {
    TRIB_ASSIGN_OR_RETURN(o->probe_key, HexBytes(value));
  } else if (flag == "--values")
    o->values = std::stoll(value);
  else if (flag == "--iters")
    o->iters = std::stoi(value);
  else if (flag == "--warmup")
    o->warmup = std::stoi(value);
  else if (flag == "--probe-target-s")
    o->probe_target_s = std::stod(value);
  else if (flag == "--sim-lan-mbit")
    o->lan_mbit = std::stod(value);
  else if (flag == "--member" || flag == "--order" || flag == "--sim-site-link" || flag == "--sim-uplink") {
    const auto colon = value.find(':');
    if (colon == std::string::npos) return Status::InvalidArgument(flag + " '" + value + "': no ':'");
    const std::string head = value.substr(0, colon), tail = value.substr(colon + 1);
    if (flag == "--member") {
      const std::vector<std::string> p = Split(value, ':');
      if (p.size() != 3) return Status::InvalidArgument("--member '" + value + "': want NAME:SITE:IP");
      o->members.push_back({p[0], p[1], p[2]});
    } else if (flag == "--order") {
      o->extra_orders.push_back({head, tail});
    } else if (flag == "--sim-uplink") {
      o->uplinks[head] = std::stod(tail);
    } else {
      const std::vector<std::string> ab = Split(head, '-');
      if (ab.size() != 2) return Status::InvalidArgument("--sim-site-link '" + value + "': want A-B:MBIT");
      o->site_links.push_back({ab[0], ab[1], std::stod(tail), 0.05});
    }
  } else {
    return Status::InvalidArgument("unknown flag " + flag);
  }
  return Status::OK();
}

Result<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return Status::InvalidArgument(std::string(argv[i]) + ": missing value");
    try {
      TRIB_RETURN_IF_ERROR(ParseFlag(argv[i], argv[i + 1], &o));
    } catch (const std::exception&) {
      return Status::InvalidArgument(std::string(argv[i]) + ": bad value '" + argv[i + 1] + "'");
    }
  }
  if (o.members.size() < 2) return Status::InvalidArgument("at least two --member");
  if (o.rank < 0 || o.rank >= static_cast<int>(o.members.size()))
    return Status::InvalidArgument("--rank must index a --member");
  if (o.store_dir.empty() || o.probe_key.empty())
    return Status::InvalidArgument("--store and --probe-key are required");
  if (o.values < 1 || o.iters < 1 || o.warmup < 0) return Status::InvalidArgument("bad --values/--iters/--warmup");
  return o;
}

// Every pair (i < j) in turn, i probing j while every other member waits, so probes never share a link.
Result<BandwidthMatrix> ProbeAll(const Options& o, FileStore& store) {
  const int n = static_cast<int>(o.members.size());
  ProbeServerOptions so;
  so.address = o.members[o.rank].ip;
  so.key = o.probe_key;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<ProbeServer> server, ProbeServer::Start(so));
  TRIB_RETURN_IF_ERROR(store.SetString("probe/port/" + std::to_string(o.rank), std::to_string(server->port())));
  BandwidthMatrix mbps(n, std::vector<double>(n, 0));
  int pair = 0;
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j, ++pair) {
      const std::string done = "probe/done/" + std::to_string(pair);
      if (i == o.rank) {
        if (pair > 0) TRIB_RETURN_IF_ERROR(store.GetString("probe/done/" + std::to_string(pair - 1)).status());
        TRIB_ASSIGN_OR_RETURN(std::string port, store.GetString("probe/port/" + std::to_string(j)));
        ProbeOptions po;
        po.key = o.probe_key;
        po.target_s = o.probe_target_s;
        auto r = ProbeLink(o.members[j].ip, std::stoi(port), po);
        if (!r.ok())
          return Status::Unavailable("probe " + o.members[i].name + " -> " + o.members[j].name + ": " +
                                     r.status().message());
        TRIB_RETURN_IF_ERROR(store.SetString(done, std::to_string(r->mbps) + " " + std::to_string(r->rtt_ms)));
      }
      TRIB_ASSIGN_OR_RETURN(std::string result, store.GetString(done));
      mbps[i][j] = mbps[j][i] = std::stod(result);
      if (o.rank == 0)
        std::printf("probe %-4s <-> %-4s %9.1f Mbit/s  rtt %.3f ms\n", o.members[i].name.c_str(),
                    o.members[j].name.c_str(), mbps[i][j], std::stod(Split(result, ' ').at(1)));
    }
  }
  return mbps;
}

float Contribution(size_t k, int member) {
  return static_cast<float>((k + static_cast<size_t>(member)) % 97) * 1e-3f;
}

// Every 997th element of the sum against the members' contributions added here.
Status CheckSum(const std::vector<float>& sum, int members, const std::string& order) {
  for (size_t k = 0; k < sum.size(); k += 997) {
    double want = 0;
    for (int m = 0; m < members; ++m) want += Contribution(k, m);
    if (std::abs(sum[k] - want) > 1e-4)
      return Status::Internal("order " + order + ": element " + std::to_string(k) + " is " + std::to_string(sum[k]) +
                              ", want " + std::to_string(want));
  }
  return Status::OK();
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A barrier that also agrees on a start 200 ms after rank 0 entered it, and sleeps until then: the
// barrier's own exits are skewed by up to tens of ms on a loaded machine (its value passes the ring hop
// by hop), the shared monotonic clock's wake-ups by far less.
Status StartTogether(IslandGroup& group) {
  const uint64_t mine = group.rank() == 0 ? static_cast<uint64_t>((Now() + 0.2) * 1e6) : 0;
  TRIB_ASSIGN_OR_RETURN(uint64_t start_us, group.AllReduceSumU64(mine));
  std::this_thread::sleep_until(std::chrono::steady_clock::time_point(std::chrono::microseconds(start_us)));
  return Status::OK();
}

// This member's (start, end) of each all-reduce in `order` (gloo rank = position in the order) on the
// monotonic clock, which every process of the machine shares; each starts after a barrier.
Result<std::vector<std::pair<double, double>>> TimeOrder(const Options& o, FileStore& store, const NamedOrder& order,
                                                         uint64_t incarnation) {
  IslandOptions io;
  io.island_id = "ringbench";
  io.incarnation = incarnation;
  io.rank = static_cast<int>(std::find(order.order.begin(), order.order.end(), o.rank) - order.order.begin());
  io.size = static_cast<int>(order.order.size());
  io.bind_address = o.members[o.rank].ip;
  io.timeout_ms = 120000;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<IslandGroup> group, IslandGroup::Join(io, &store));
  std::vector<float> grads(static_cast<size_t>(o.values));
  std::vector<std::pair<double, double>> spans;
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    for (size_t k = 0; k < grads.size(); ++k) grads[k] = Contribution(k, o.rank);
    TRIB_RETURN_IF_ERROR(StartTogether(*group));
    const double start = Now();
    TRIB_RETURN_IF_ERROR(group->AllReduceSum(grads));
    if (it >= o.warmup) spans.push_back({start, Now()});
    TRIB_RETURN_IF_ERROR(CheckSum(grads, io.size, order.name));
  }
  TRIB_RETURN_IF_ERROR(group->AllReduceSumU64(1).status());  // nobody leaves while a peer still reads
  return spans;
}

std::vector<NamedOrder> Orders(const Options& o, const BandwidthMatrix& mbps) {
  const int n = static_cast<int>(o.members.size());
  std::vector<NamedOrder> orders(1, {"index", {}});
  for (int i = 0; i < n; ++i) orders[0].order.push_back(i);
  for (RingObjective obj : {RingObjective::kMaxMin, RingObjective::kMinSumInverse})
    orders.push_back({RingObjectiveName(obj), SolveRingOrder(mbps, obj).order});
  for (const auto& [name, list] : o.extra_orders) {
    NamedOrder extra{name, {}};
    for (const std::string& m : Split(list, ','))
      for (int i = 0; i < n; ++i)
        if (o.members[i].name == m) extra.order.push_back(i);
    if (static_cast<int>(extra.order.size()) == n)
      orders.push_back(extra);
    else
      std::fprintf(stderr, "ring_testbed_bench: --order %s does not list every member once; skipped\n", name.c_str());
  }
  return orders;
}

// The simulator's all-reduce time for `order` on the topology given by --sim-*, capacities x `scale`,
// with `acks` ACK bytes per payload byte on the reverse paths.
Result<double> Simulate(const Options& o, const NamedOrder& order, double scale, double acks) {
  SimCluster c;
  c.ack_bytes_per_payload_byte = acks;
  c.coordinator_mbps = 1e6;
  c.eth_latency_ms = 0.025;
  for (const Member& m : o.members) {
    if (std::none_of(c.sites.begin(), c.sites.end(), [&](const SimSite& s) { return s.name == m.site; })) {
      auto up = o.uplinks.find(m.site);
      c.sites.push_back({m.site, (up == o.uplinks.end() ? 1e6 : up->second) * scale, 0.05});
    }
    c.workers.push_back({m.name, m.site, "", 0, o.lan_mbit * scale, 1});
  }
  for (SimSiteLink link : o.site_links) {
    link.mbps *= scale;
    c.site_links.push_back(link);
  }
  // gloo's ring sends from rank k to rank k-1: the simulator's ring (k -> k+1) is the order reversed.
  SimIsland island;
  island.ring.push_back(o.members[order.order[0]].name);
  for (size_t k = order.order.size() - 1; k >= 1; --k) island.ring.push_back(o.members[order.order[k]].name);
  for (const std::string& id : island.ring) island.shares[id] = 1.0 / static_cast<double>(island.ring.size());
  SimRound round;
  round.islands = {island};
  round.local_steps = 1;
  round.gradient_bytes = 4.0 * static_cast<double>(o.values);
  TRIB_ASSIGN_OR_RETURN(SimResult r, SimulateRound(c, round));
  return r.allreduce_s;
}

// "A-B x2, A-C x2": the site pairs the ring's links cross.
std::string Crossings(const Options& o, const std::vector<int>& order) {
  std::map<std::string, int> count;
  for (size_t k = 0; k < order.size(); ++k) {
    std::string a = o.members[order[k]].site, b = o.members[order[(k + 1) % order.size()]].site;
    if (a == b) continue;
    if (b < a) std::swap(a, b);
    ++count[a + "-" + b];
  }
  std::string out;
  for (const auto& [pair, n] : count) out += (out.empty() ? "" : ", ") + pair + " x" + std::to_string(n);
  return out.empty() ? "none" : out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Per iteration, the first member's start to the last member's end.
Result<std::vector<double>> CollectTimes(const Options& o, FileStore& store, size_t order_index) {
  std::vector<double> first(static_cast<size_t>(o.iters), 1e300), last(first.size(), 0);
  for (size_t r = 0; r < o.members.size(); ++r) {
    TRIB_ASSIGN_OR_RETURN(std::string line,
                          store.GetString("times/" + std::to_string(order_index) + "/" + std::to_string(r)));
    std::vector<std::string> parts = Split(line, ' ');
    if (parts.size() != 2 * first.size()) return Status::Corruption("store: times of member " + std::to_string(r));
    for (size_t i = 0; i < first.size(); ++i) {
      first[i] = std::min(first[i], std::stod(parts[2 * i]));
      last[i] = std::max(last[i], std::stod(parts[2 * i + 1]));
    }
  }
  std::vector<double> seconds;
  for (size_t i = 0; i < first.size(); ++i) seconds.push_back(last[i] - first[i]);
  return seconds;
}

// "1.058 (0.961)": a prediction and its ratio to the measured median.
std::string Predicted(double predicted_s, double measured_s) {
  char out[32];
  std::snprintf(out, sizeof out, "%.3f (%.3f)", predicted_s, predicted_s / measured_s);
  return out;
}

Status Report(const Options& o, FileStore& store, const BandwidthMatrix& mbps, const std::vector<NamedOrder>& orders) {
  std::printf("\n%-16s %-24s %-22s %10s %9s %13s %8s %15s %15s %15s\n", "order", "ring (gloo rank 0..n-1)", "crosses",
              "bneck Mb/s", "median s", "min-max s", "vs index", "sim line", "sim tcp", "sim tcp+ack");
  double index_s = 0;
  for (size_t i = 0; i < orders.size(); ++i) {
    TRIB_ASSIGN_OR_RETURN(std::vector<double> t, CollectTimes(o, store, i));
    const double median = Median(t);
    if (i == 0) index_s = median;
    TRIB_ASSIGN_OR_RETURN(double line, Simulate(o, orders[i], 1.0, 0));
    TRIB_ASSIGN_OR_RETURN(double tcp, Simulate(o, orders[i], kTcpPayloadPerWireByte, 0));
    TRIB_ASSIGN_OR_RETURN(double acks, Simulate(o, orders[i], kTcpPayloadPerWireByte, kAckBytesPerPayloadByte));
    std::string ring;
    for (int m : orders[i].order) ring += (ring.empty() ? "" : " ") + o.members[m].name;
    char range[32];
    std::snprintf(range, sizeof range, "%.3f-%.3f", *std::min_element(t.begin(), t.end()),
                  *std::max_element(t.begin(), t.end()));
    std::printf("%-16s %-24s %-22s %10.1f %9.3f %13s %7.2fx %15s %15s %15s\n", orders[i].name.c_str(), ring.c_str(),
                Crossings(o, orders[i].order).c_str(), EvaluateRing(mbps, orders[i].order).bottleneck_mbps, median,
                range, index_s / median, Predicted(line, median).c_str(), Predicted(tcp, median).c_str(),
                Predicted(acks, median).c_str());
  }
  std::printf(
      "(%lld fp32 values = %.2f MB per all-reduce, %d timed + %d warm-up per order; bneck = the ring's slowest "
      "probed link; vs index = index median / this median; sim = the flow model's seconds (predicted / "
      "measured median): line = at the tbf rates, tcp = at %.4f of them, tcp+ack = also %.3f ACK bytes per "
      "payload byte on the reverse paths)\n",
      static_cast<long long>(o.values), 4e-6 * static_cast<double>(o.values), o.iters, o.warmup, kTcpPayloadPerWireByte,
      kAckBytesPerPayloadByte);
  return Status::OK();
}

Status Run(const Options& o) {
  FileStore store(o.store_dir);
  TRIB_ASSIGN_OR_RETURN(BandwidthMatrix mbps, ProbeAll(o, store));
  const std::vector<NamedOrder> orders = Orders(o, mbps);
  for (size_t i = 0; i < orders.size(); ++i) {
    auto t = TimeOrder(o, store, orders[i], i + 1);
    if (!t.ok()) return t.status().WithContext("order " + orders[i].name);
    std::string line;
    char buf[64];
    for (const auto& [start, end] : *t) {
      std::snprintf(buf, sizeof buf, "%s%.6f %.6f", line.empty() ? "" : " ", start, end);
      line += buf;
    }
    TRIB_RETURN_IF_ERROR(store.SetString("times/" + std::to_string(i) + "/" + std::to_string(o.rank), line));
  }
  if (o.rank == 0) TRIB_RETURN_IF_ERROR(Report(o, store, mbps, orders));
  return store.SetString("finished/" + std::to_string(o.rank), "1");
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  auto options = tributary::ParseArgs(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "ring_testbed_bench: %s\n", options.status().message().c_str());
    return 2;
  }
  const tributary::Status status = tributary::Run(*options);
  if (!status.ok()) {
    std::fprintf(stderr, "ring_testbed_bench: rank %d (%s): %s\n", options->rank,
                 options->members[options->rank].name.c_str(), status.message().c_str());
    return 1;
  }
  return 0;
}
