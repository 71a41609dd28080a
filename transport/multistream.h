// Multi-connection bulk transfer: one large buffer (an outer payload, a state copy) from a sender to a receiver
// over N parallel TCP connections, so a high-RTT path is not limited by one stream's window (docs/multistream.md).
//
// The sender cuts [0, size) into per-connection shares proportional to each connection's goodput estimate (equal
// when none is known) and each share into chunks of at most chunk_bytes. Every frame is sealed with
// XChaCha20-Poly1305 under a per-transfer 32-byte key that both sides got over the CURVE-authenticated control
// channel; the receiver writes each chunk straight to its offset and acknowledges it. A connection that errors, or
// makes no progress for max(4 x expected chunk time, min_stall_ms), is shut down and its unacknowledged ranges are
// resent on the others; the receiver drops duplicates. The transfer fails only when no connection is left, on the
// deadline, or on a frame that fails authentication.
//
// The daemons use it through transport/multistream_serve.h: workers fetch large served aggregates and snapshots
// from the coordinator this way (falling back to transport/bulk.h); uploads still travel on the bulk path.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary::transport {

inline constexpr size_t kMultistreamKeyBytes = 32;
inline constexpr int kMaxMultistreamStreams = 16;
using MultistreamKey = std::array<uint8_t, kMultistreamKeyBytes>;

// A fresh random per-transfer key (libsodium's CSPRNG).
MultistreamKey RandomMultistreamKey();

// How many parallel streams fill a path: a stream carries at most window / RTT, so
//   N = clamp(ceil(BDP / per_stream_window), 1, max_streams),  BDP = bandwidth x RTT (bytes).
// Example: 100 Mbit/s x 50 ms = 625,000 B; with a 256 KiB window N = 3.
int StreamsForPath(double bandwidth_bits_per_s, double rtt_s, uint64_t per_stream_window_bytes,
                   int max_streams = kMaxMultistreamStreams);

// One byte range [offset, offset + len) of the buffer.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t len = 0;
};

// Splits [0, size) into one contiguous share per weight, proportional to the weights (all equal when weights are
// empty or not all positive; cuts rounded to 64 KiB), then each share into chunks of at most chunk_bytes.
// Returns the chunks per connection; together they cover [0, size) exactly once.
std::vector<std::vector<ByteRange>> PlanMultistreamChunks(uint64_t size, const std::vector<double>& weights,
                                                          uint64_t chunk_bytes, size_t connections);

struct MultistreamOptions {
  uint64_t transfer_id = 1;   // bound into every frame; must match on both sides
  std::string peer = "peer";  // names the other side in errors
  uint32_t chunk_bytes = uint32_t{1} << 20;
  // Goodput estimates per connection (bytes/s), e.g. from the link matrix or a previous transfer's stats; used for
  // the split and the first stall deadlines. Empty: equal split, first deadline first_ack_timeout_ms.
  std::vector<double> initial_goodput;
  // Sender: chunks sent and not yet acknowledged per connection; bounds what a stall strands in socket buffers.
  // Per-connection rate <= max_inflight_chunks x chunk_bytes / RTT.
  int max_inflight_chunks = 8;
  int min_stall_ms = 200;
  int first_ack_timeout_ms = 5000;          // stall deadline of a connection before any goodput is known
  int timeout_ms = 300000;                  // the whole transfer
  uint64_t max_bytes = uint64_t{16} << 30;  // receiver: the largest size a sender may announce
  // Receiver only: called from a connection's reader thread after each chunk is written (progress, tests).
  std::function<void(size_t connection, const ByteRange& chunk)> on_chunk;
};

struct MultistreamStats {
  double seconds = 0;
  uint64_t payload_bytes = 0;
  uint64_t chunks = 0;            // sent (sender) or accepted (receiver), duplicates included
  uint64_t chunks_resent = 0;     // sender: ranges requeued after a connection failed or stalled
  uint64_t duplicate_chunks = 0;  // receiver: chunks whose range was already present
  int connections_failed = 0;     // errored or closed mid-transfer
  int connections_stalled = 0;    // sender: shut down for making no progress
  std::vector<double> goodput;    // sender: EWMA (alpha 0.2) bytes/s per connection, for the next transfer
};

// Sends size bytes at data over the connected TCP sockets fds (the caller keeps ownership and closes them; they
// are shut down when the call returns, one transfer per connection set). data must stay valid until it returns.
[[nodiscard]] Result<MultistreamStats> SendMultistream(const std::vector<int>& fds, const MultistreamKey& key,
                                                       const void* data, uint64_t size,
                                                       const MultistreamOptions& options);

struct MultistreamReceived {
  std::string data;
  MultistreamStats stats;
};

// Receives one transfer over fds (the size comes from the sender's authenticated hello, at most max_bytes).
[[nodiscard]] Result<MultistreamReceived> ReceiveMultistream(const std::vector<int>& fds, const MultistreamKey& key,
                                                             const MultistreamOptions& options);

// TCP helpers (IPv4). ListenTcp binds host:port (port 0: any) and returns the fd; *bound_port gets the port.
[[nodiscard]] Result<int> ListenTcp(const std::string& host, int port, int* bound_port);
// n connections to host:port with TCP_NODELAY; socket_buffer_bytes > 0 sets SO_SNDBUF and SO_RCVBUF.
[[nodiscard]] Result<std::vector<int>> ConnectStreams(const std::string& host, int port, int n,
                                                      int socket_buffer_bytes = 0);
// Accepts n connections within timeout_ms.
[[nodiscard]] Result<std::vector<int>> AcceptStreams(int listen_fd, int n, int timeout_ms, int socket_buffer_bytes = 0);

}  // namespace tributary::transport
