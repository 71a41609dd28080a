// Link probes for NIC-aware placement (docs/placement.md): a worker measures the TCP goodput and RTT
// to a candidate peer, bounded in bytes and time, and only with a peer that proves it holds the same
// probe key (issued by the coordinator over the authenticated control channel), so a probe port is
// neither a free traffic sink nor a way to learn who is who.
//
// Wire (one TCP connection per probe, every integer little-endian):
//   client -> server  "TRPB" | version 1 | nonce_c[16] | crypto_auth(nonce_c | "client", key)[32]
//   server -> client  nonce_s[16] | crypto_auth(nonce_c | nonce_s | "server", key)[32]
//   rtt    (x rtt_samples)  client 'P' -> server 'P'
//   bulk   (x 2: a 256 KiB warm-up, then bytes sized to target_s at the warm-up's rate, capped)
//          client: u64 n, then n bytes;  server: u64 received, u64 nanoseconds first..last byte
// The server times the bytes it receives (sender-side timing would count the socket buffers).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"

namespace tributary {

constexpr size_t kProbeKeyBytes = 32;

struct ProbeServerOptions {
  std::string address = "127.0.0.1";  // the interface to measure (worker.island_address)
  int port = 0;                       // 0: any free port
  std::string key;                    // kProbeKeyBytes bytes
  uint64_t max_bytes = 64 << 20;      // per probe; a client asking for more is cut off
  int io_timeout_ms = 5000;           // per read or write
};

// Serves probes one at a time on a background thread until destroyed.
class ProbeServer {
 public:
  // IOError naming the address when it cannot listen; InvalidArgument for a key of the wrong size.
  static Result<std::unique_ptr<ProbeServer>> Start(const ProbeServerOptions& options);
  ~ProbeServer();
  int port() const { return port_; }
  uint64_t probes_served() const { return served_.load(); }
  uint64_t probes_refused() const { return refused_.load(); }  // failed authentication or bad framing
  // Accepts `key` too (besides options.key), e.g. one the coordinator issued for one probe pair; the
  // oldest added key is forgotten beyond kMaxExtraKeys. InvalidArgument for a key of the wrong size.
  Status AddKey(const std::string& key);
  static constexpr size_t kMaxExtraKeys = 256;

 private:
  ProbeServer() = default;
  void Serve();
  bool ServeOne(int fd);
  // The accepted key whose client tag matches, or "" when none does.
  std::string MatchKey(const std::string& nonce_c, const uint8_t* tag);
  ProbeServerOptions options_;
  std::mutex keys_mu_;
  std::deque<std::string> extra_keys_;  // guarded by keys_mu_
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> served_{0}, refused_{0};
  std::thread thread_;
};

struct ProbeOptions {
  std::string key;                // kProbeKeyBytes bytes
  uint64_t max_bytes = 64 << 20;  // total bulk bytes sent
  double target_s = 1.0;          // the sized bulk phase aims at this long
  int rtt_samples = 5;
  int io_timeout_ms = 5000;
};

struct ProbeResult {
  double mbps = 0;     // goodput client -> server, Mbit/s
  double rtt_ms = 0;   // the smallest of rtt_samples round trips
  uint64_t bytes = 0;  // bulk bytes sent
};

// Probes the server at host:port. Unavailable naming the peer when it cannot connect or a read or
// write times out; PermissionDenied naming the peer when the peer cannot prove it holds the key;
// InvalidArgument for a key of the wrong size.
Result<ProbeResult> ProbeLink(const std::string& host, int port, const ProbeOptions& options);

}  // namespace tributary
