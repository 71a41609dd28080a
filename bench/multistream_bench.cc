// B13 (docs/benchmarks.md): goodput of the multi-connection transfer (transport/multistream.h) over one shaped,
// delayed link for N = 1, 2, 4, 8, 16 streams, side by side. Run by bench/multistream_testbed_bench.sh.
//
//   multistream_bench relay --listen IP:PORT --target IP:PORT --delay-ms D --window BYTES
//       a TCP relay that delays each direction by D and lets at most BYTES per stream and direction be "in flight"
//       (read, and not yet past delivery + D, i.e. not yet acknowledged on a 2D round trip): each relayed stream
//       behaves like a TCP connection with a fixed window BYTES over an RTT of 2D, so it carries <= BYTES / 2D.
//   multistream_bench recv --listen IP:PORT --streams 1,2,4 --key HEX
//   multistream_bench send --target IP:PORT --streams 1,2,4 --bytes B --key HEX --line-mbit R --rtt-ms T --window W
//       one transfer of B bytes per stream count (same order on both sides); prints one row per N.
// The relay terminates TCP, so the kernel's windows on its two short legs never bind: the emulated window does.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/multistream.h"
#include "transport/multistream_wire.h"

namespace {

using tributary::transport::MultistreamKey;
using tributary::transport::MultistreamOptions;
namespace ms = tributary::transport;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "multistream_bench: %s\n", msg.c_str());
  std::exit(2);
}

std::pair<std::string, int> HostPort(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) Die("expected IP:PORT, got " + text);
  return {text.substr(0, colon), std::atoi(text.c_str() + colon + 1)};
}

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = text.find(',', at);
    out.push_back(std::atoi(text.substr(at, comma - at).c_str()));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

MultistreamKey ParseKey(const std::string& hex) {
  MultistreamKey key{};
  if (hex.size() != 2 * key.size()) Die("--key needs 64 hex digits");
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return key;
}

// ---- relay ----

// One direction of a relayed connection, with the emulated window.
struct Direction {
  int src = -1, dst = -1;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<Clock::time_point, std::string>> queue;  // due time, bytes
  std::deque<std::pair<Clock::time_point, size_t>> releases;    // window credit back at (delivery + D)
  size_t inflight = 0;
  bool eof = false;
};

void RelayRead(Direction* d, Clock::duration delay, size_t window) {
  std::string buf(64 * 1024, '\0');
  while (true) {
    size_t room = 0;
    {
      std::unique_lock<std::mutex> lock(d->mu);
      while (true) {
        const auto now = Clock::now();
        while (!d->releases.empty() && d->releases.front().first <= now) {
          d->inflight -= d->releases.front().second;
          d->releases.pop_front();
        }
        if (d->inflight < window) break;
        if (d->releases.empty())
          d->cv.wait(lock);
        else
          d->cv.wait_until(lock, d->releases.front().first);
      }
      room = std::min(buf.size(), window - d->inflight);
    }
    const ssize_t n = ::recv(d->src, buf.data(), room, 0);
    std::lock_guard<std::mutex> lock(d->mu);
    if (n <= 0) {
      d->eof = true;
      d->cv.notify_all();
      return;
    }
    d->queue.emplace_back(Clock::now() + delay, buf.substr(0, static_cast<size_t>(n)));
    d->inflight += static_cast<size_t>(n);
    d->cv.notify_all();
  }
}

void RelayWrite(Direction* d, Clock::duration delay) {
  while (true) {
    std::pair<Clock::time_point, std::string> chunk;
    {
      std::unique_lock<std::mutex> lock(d->mu);
      d->cv.wait(lock, [&] { return !d->queue.empty() || d->eof; });
      if (d->queue.empty()) break;
      chunk = std::move(d->queue.front());
      d->queue.pop_front();
    }
    std::this_thread::sleep_until(chunk.first);
    if (!ms::multistream_wire::WriteAll(d->dst, chunk.second.data(), chunk.second.size()).ok()) {
      ::shutdown(d->src, SHUT_RDWR);
      break;
    }
    std::lock_guard<std::mutex> lock(d->mu);
    d->releases.emplace_back(Clock::now() + delay, chunk.second.size());
    d->cv.notify_all();
  }
  ::shutdown(d->dst, SHUT_WR);  // forward the half-close once everything before it is delivered
}

struct Relayed {
  int a = -1, b = -1;
  Direction up, down;
  ~Relayed() {
    ::close(a);
    ::close(b);
  }
};

int Relay(const std::string& listen, const std::string& target, int delay_ms, size_t window) {
  const auto [lhost, lport] = HostPort(listen);
  const auto [thost, tport] = HostPort(target);
  auto listener = ms::ListenTcp(lhost, lport, nullptr);
  if (!listener.ok()) Die(listener.status().ToString());
  const auto delay = std::chrono::milliseconds(delay_ms);
  std::fprintf(stderr, "relay %s -> %s delay %d ms each way, window %zu B per stream and direction\n", listen.c_str(),
               target.c_str(), delay_ms, window);
  while (true) {
    auto accepted = ms::AcceptStreams(*listener, 1, 24 * 3600 * 1000);
    if (!accepted.ok()) continue;
    auto out = ms::ConnectStreams(thost, tport, 1);
    if (!out.ok()) {
      std::fprintf(stderr, "relay: %s\n", out.status().ToString().c_str());
      ::close((*accepted)[0]);
      continue;
    }
    auto r = std::make_shared<Relayed>();
    r->a = (*accepted)[0];
    r->b = (*out)[0];
    r->up.src = r->down.dst = r->a;
    r->up.dst = r->down.src = r->b;
    for (Direction* d : {&r->up, &r->down}) {
      std::thread([r, d, delay, window] { RelayRead(d, delay, window); }).detach();
      std::thread([r, d, delay] { RelayWrite(d, delay); }).detach();
    }
  }
}

// ---- sender and receiver ----

int Receive(const std::string& listen, const std::vector<int>& streams, const MultistreamKey& key) {
  const auto [host, port] = HostPort(listen);
  auto listener = ms::ListenTcp(host, port, nullptr);
  if (!listener.ok()) Die(listener.status().ToString());
  for (size_t round = 0; round < streams.size() + 1; ++round) {  // round 0: the 1-byte RTT probe
    const int n = round == 0 ? 1 : streams[round - 1];
    auto fds = ms::AcceptStreams(*listener, n, 120000);
    if (!fds.ok()) Die(fds.status().ToString());
    MultistreamOptions o;
    o.transfer_id = round + 1;
    o.peer = "bench-sender";
    auto got = ms::ReceiveMultistream(*fds, key, o);
    for (int fd : *fds) ::close(fd);
    if (!got.ok()) Die(got.status().ToString());
    std::fprintf(stderr, "recv N=%d bytes=%llu secs=%.3f dup=%llu\n", n,
                 static_cast<unsigned long long>(got->stats.payload_bytes), got->stats.seconds,
                 static_cast<unsigned long long>(got->stats.duplicate_chunks));
  }
  return 0;
}

struct SendArgs {
  std::string target;
  std::vector<int> streams;
  uint64_t bytes = uint64_t{64} << 20;
  MultistreamKey key{};
  double line_mbit = 100;
  double rtt_ms = 50;
  uint64_t window = 256 * 1024;
  uint32_t chunk = 256 * 1024;
};

tributary::Result<ms::MultistreamStats> SendOnce(const SendArgs& a, int n, uint64_t transfer_id,
                                                 const std::string& data) {
  const auto [host, port] = HostPort(a.target);
  auto fds = ms::ConnectStreams(host, port, n);
  if (!fds.ok()) return fds.status();
  MultistreamOptions o;
  o.transfer_id = transfer_id;
  o.peer = "bench-receiver";
  o.chunk_bytes = a.chunk;
  o.initial_goodput.assign(n, a.line_mbit * 1e6 / 8 / n);  // "initialised from the inventory"
  auto stats = ms::SendMultistream(*fds, a.key, data.data(), data.size(), o);
  for (int fd : *fds) ::close(fd);
  return stats;
}

int Send(const SendArgs& a) {
  const std::string probe(1, 'x');
  auto rtt = SendOnce(a, 1, 1, probe);
  if (!rtt.ok()) Die(rtt.status().ToString());
  std::string data(a.bytes, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 13);
  std::printf(
      "# line %.0f Mbit/s, RTT %.0f ms (1-byte transfer incl. hello: %.1f ms), emulated window %llu B, "
      "chunk %u B, payload %llu B; StreamsForPath -> N = %d\n",
      a.line_mbit, a.rtt_ms, rtt->seconds * 1000, static_cast<unsigned long long>(a.window), a.chunk,
      static_cast<unsigned long long>(a.bytes), ms::StreamsForPath(a.line_mbit * 1e6, a.rtt_ms / 1000, a.window));
  std::printf("%-4s %10s %12s %8s %8s %8s\n", "N", "seconds", "goodput_Mb/s", "ratio", "resent", "stalled");
  for (size_t k = 0; k < a.streams.size(); ++k) {
    auto s = SendOnce(a, a.streams[k], k + 2, data);
    if (!s.ok()) Die(s.status().ToString());
    const double mbit = static_cast<double>(a.bytes) * 8 / s->seconds / 1e6;
    std::printf("%-4d %10.2f %12.1f %8.3f %8llu %8d\n", a.streams[k], s->seconds, mbit, mbit / a.line_mbit,
                static_cast<unsigned long long>(s->chunks_resent), s->connections_stalled);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Die("usage: multistream_bench relay|recv|send [flags] (see the file's header)");
  const std::string mode = argv[1];
  std::map<std::string, std::string> flags;
  for (int i = 2; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
  auto flag = [&](const std::string& name, const std::string& fallback = "") {
    const auto it = flags.find(name);
    if (it != flags.end()) return it->second;
    if (fallback.empty()) Die("missing " + name);
    return fallback;
  };
  if (mode == "relay") {
    return Relay(flag("--listen"), flag("--target"), std::stoi(flag("--delay-ms")), std::stoull(flag("--window")));
  }
  if (mode == "recv") return Receive(flag("--listen"), ParseList(flag("--streams")), ParseKey(flag("--key")));
  if (mode == "send") {
    SendArgs a;
    a.target = flag("--target");
    a.streams = ParseList(flag("--streams"));
    a.bytes = std::stoull(flag("--bytes", std::to_string(a.bytes)));
    a.key = ParseKey(flag("--key"));
    a.line_mbit = std::stod(flag("--line-mbit", "100"));
    a.rtt_ms = std::stod(flag("--rtt-ms", "50"));
    a.window = std::stoull(flag("--window", std::to_string(a.window)));
    a.chunk = static_cast<uint32_t>(std::stoul(flag("--chunk", std::to_string(a.chunk))));
    return Send(a);
  }
  Die("unknown mode " + mode);
}
