// Multistream: the split plan, the stream-count formula and the TCP socket helpers. The sender and the receiver
// live in multistream_send.cc and multistream_recv.cc.
#include "transport/multistream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <sodium.h>

namespace tributary::transport {
namespace {

constexpr uint64_t kCutAlign = uint64_t{64} << 10;

std::string Errno(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

Status TuneSocket(int fd, int socket_buffer_bytes) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) return Status::IOError(Errno("TCP_NODELAY"));
  if (socket_buffer_bytes > 0) {
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &socket_buffer_bytes, sizeof(int)) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &socket_buffer_bytes, sizeof(int)) != 0) {
      return Status::IOError(Errno("SO_SNDBUF/SO_RCVBUF"));
    }
  }
  return Status::OK();
}

Result<sockaddr_in> ParseIpv4(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (port < 0 || port > 65535 || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("multistream: bad IPv4 address " + host + ":" + std::to_string(port));
  }
  return addr;
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

}  // namespace

MultistreamKey RandomMultistreamKey() {
  MultistreamKey key;
  randombytes_buf(key.data(), key.size());
  return key;
}

int StreamsForPath(double bandwidth_bits_per_s, double rtt_s, uint64_t per_stream_window_bytes, int max_streams) {
  max_streams = std::max(1, max_streams);
  if (per_stream_window_bytes == 0) return max_streams;
  if (!(bandwidth_bits_per_s > 0) || !(rtt_s > 0)) return 1;
  const double bdp_bytes = bandwidth_bits_per_s / 8.0 * rtt_s;
  const double n = std::ceil(bdp_bytes / static_cast<double>(per_stream_window_bytes));
  return static_cast<int>(std::clamp(n, 1.0, static_cast<double>(max_streams)));
}

std::vector<std::vector<ByteRange>> PlanMultistreamChunks(uint64_t size, const std::vector<double>& weights,
                                                          uint64_t chunk_bytes, size_t connections) {
  connections = std::max<size_t>(1, connections);
  chunk_bytes = std::max<uint64_t>(1, chunk_bytes);
  std::vector<double> w(connections, 1.0);
  const bool usable = weights.size() == connections &&
                      std::all_of(weights.begin(), weights.end(), [](double x) { return x > 0 && std::isfinite(x); });
  if (usable) w = weights;
  double total_w = 0;
  for (double x : w) total_w += x;
  std::vector<std::vector<ByteRange>> plan(connections);
  uint64_t begin = 0;
  double cumulative = 0;
  for (size_t j = 0; j < connections; ++j) {
    cumulative += w[j];
    uint64_t end = size;
    if (j + 1 < connections) {
      // Cut at the bandwidth-proportional target T_j, rounded to 64 KiB (holmes-spec §9.2).
      const double target = static_cast<double>(size) * cumulative / total_w;
      end = static_cast<uint64_t>(std::llround(target / kCutAlign)) * kCutAlign;
      end = std::clamp(end, begin, size);
    }
    for (uint64_t at = begin; at < end; at += chunk_bytes) plan[j].push_back({at, std::min(chunk_bytes, end - at)});
    begin = end;
  }
  return plan;
}

Result<int> ListenTcp(const std::string& host, int port, int* bound_port) {
  TRIB_ASSIGN_OR_RETURN(sockaddr_in addr, ParseIpv4(host, port));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(Errno("multistream: socket"));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
    const Status st = Status::IOError(Errno("multistream: listen on " + host + ":" + std::to_string(port)));
    ::close(fd);
    return st;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (bound_port != nullptr) *bound_port = ntohs(addr.sin_port);
  return fd;
}

Result<std::vector<int>> ConnectStreams(const std::string& host, int port, int n, int socket_buffer_bytes) {
  TRIB_ASSIGN_OR_RETURN(sockaddr_in addr, ParseIpv4(host, port));
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Status st = fd < 0 ? Status::IOError(Errno("socket")) : TuneSocket(fd, socket_buffer_bytes);
    if (st.ok() && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      st = Status::IOError(Errno("connect"));
    }
    if (!st.ok()) {
      if (fd >= 0) ::close(fd);
      CloseAll(fds);
      return st.WithContext("multistream: connection " + std::to_string(i) + " to " + host + ":" +
                            std::to_string(port));
    }
    fds.push_back(fd);
  }
  return fds;
}

Result<std::vector<int>> AcceptStreams(int listen_fd, int n, int timeout_ms, int socket_buffer_bytes) {
  std::vector<int> fds;
  while (static_cast<int>(fds.size()) < n) {
    pollfd p{listen_fd, POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r <= 0) {
      CloseAll(fds);
      return Status::Timeout("multistream: accepted " + std::to_string(fds.size()) + " of " + std::to_string(n) +
                             " connections within " + std::to_string(timeout_ms) + " ms");
    }
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (Status st = TuneSocket(fd, socket_buffer_bytes); !st.ok()) {
      ::close(fd);
      CloseAll(fds);
      return st.WithContext("multistream: accepted connection");
    }
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace tributary::transport
