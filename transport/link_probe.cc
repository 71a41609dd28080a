#include "transport/link_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint8_t kMagic[4] = {'T', 'R', 'P', 'B'};
constexpr uint8_t kVersion = 1;
constexpr uint64_t kWarmupBytes = 256 << 10;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void SetTimeouts(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool WriteAll(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t size) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = recv(fd, p, size, 0);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteU64(int fd, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  return WriteAll(fd, b, 8);
}

bool ReadU64(int fd, uint64_t* v) {
  uint8_t b[8];
  if (!ReadAll(fd, b, 8)) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(b[i]) << (8 * i);
  return true;
}

// crypto_auth (HMAC-SHA-512-256) of the parts, concatenated.
void Tag(const std::string& key, const std::vector<const std::string*>& parts, uint8_t out[crypto_auth_BYTES]) {
  std::string message;
  for (const std::string* p : parts) message += *p;
  crypto_auth(out, reinterpret_cast<const uint8_t*>(message.data()), message.size(),
              reinterpret_cast<const uint8_t*>(key.data()));
}

bool TagMatches(const std::string& key, const std::vector<const std::string*>& parts, const uint8_t* tag) {
  uint8_t expected[crypto_auth_BYTES];
  Tag(key, parts, expected);
  return sodium_memcmp(expected, tag, crypto_auth_BYTES) == 0;
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  randombytes_buf(s.data(), n);
  return s;
}

Status CheckKey(const std::string& key) {
  if (sodium_init() < 0) return Status::Internal("libsodium failed to initialise");
  if (key.size() != kProbeKeyBytes)
    return Status::InvalidArgument("probe key: expected " + std::to_string(kProbeKeyBytes) + " bytes, got " +
                                   std::to_string(key.size()));
  return Status::OK();
}

// Receives one bulk phase: u64 n (at most max_bytes), n bytes; answers received and first..last ns.
bool ReceiveBulk(int fd, uint64_t max_bytes) {
  uint64_t n = 0;
  if (!ReadU64(fd, &n) || n == 0 || n > max_bytes) return false;
  std::vector<uint8_t> buf(1 << 16);
  uint64_t got = 0;
  Clock::time_point first, last;
  while (got < n) {
    const ssize_t r = recv(fd, buf.data(), std::min<uint64_t>(buf.size(), n - got), 0);
    if (r <= 0) return false;
    if (got == 0) first = Clock::now();
    got += static_cast<uint64_t>(r);
    last = Clock::now();
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(last - first).count();
  return WriteU64(fd, got) && WriteU64(fd, static_cast<uint64_t>(std::max<int64_t>(ns, 1)));
}

}  // namespace

Result<std::unique_ptr<ProbeServer>> ProbeServer::Start(const ProbeServerOptions& options) {
  TRIB_RETURN_IF_ERROR(CheckKey(options.key));
  std::unique_ptr<ProbeServer> server(new ProbeServer());
  server->options_ = options;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(options.port));
  if (inet_pton(AF_INET, options.address.c_str(), &addr.sin_addr) != 1)
    return Status::InvalidArgument("probe address '" + options.address + "': not an IPv4 address");
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 8) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    return Status::IOError("probe server: cannot listen on " + options.address + ":" + std::to_string(options.port) +
                           ": " + why);
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  server->listen_fd_ = fd;
  server->port_ = ntohs(addr.sin_port);
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

ProbeServer::~ProbeServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void ProbeServer::Serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    Fd conn(accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) continue;
    SetTimeouts(conn.get(), options_.io_timeout_ms);
    if (ServeOne(conn.get())) {
      ++served_;
    } else {
      ++refused_;
    }
  }
}

Status ProbeServer::AddKey(const std::string& key) {
  TRIB_RETURN_IF_ERROR(CheckKey(key));
  std::lock_guard<std::mutex> lock(keys_mu_);
  extra_keys_.push_back(key);
  if (extra_keys_.size() > kMaxExtraKeys) extra_keys_.pop_front();
  return Status::OK();
}

std::string ProbeServer::MatchKey(const std::string& nonce_c, const uint8_t* tag) {
  static const std::string kClient = "client";
  if (TagMatches(options_.key, {&nonce_c, &kClient}, tag)) return options_.key;
  std::lock_guard<std::mutex> lock(keys_mu_);
  for (const std::string& key : extra_keys_)
    if (TagMatches(key, {&nonce_c, &kClient}, tag)) return key;
  return "";
}

// One probe: authenticate both ways, echo RTT pings, then receive bulk phases until the client closes.
bool ProbeServer::ServeOne(int fd) {
  uint8_t hello[4 + 1 + 16 + crypto_auth_BYTES];
  if (!ReadAll(fd, hello, sizeof(hello)) || std::memcmp(hello, kMagic, 4) != 0 || hello[4] != kVersion) return false;
  const std::string nonce_c(reinterpret_cast<char*>(hello + 5), 16);
  static const std::string kServer = "server";
  const std::string key = MatchKey(nonce_c, hello + 21);
  if (key.empty()) return false;
  const std::string nonce_s = RandomBytes(16);
  uint8_t reply[16 + crypto_auth_BYTES];
  std::memcpy(reply, nonce_s.data(), 16);
  Tag(key, {&nonce_c, &nonce_s, &kServer}, reply + 16);
  if (!WriteAll(fd, reply, sizeof(reply))) return false;
  uint64_t bulk_total = 0;
  for (;;) {
    uint8_t op = 0;
    const ssize_t r = recv(fd, &op, 1, 0);
    if (r == 0) return true;  // the client is done
    if (r < 0) return false;
    if (op == 'P') {
      if (!WriteAll(fd, &op, 1)) return false;
    } else if (op == 'B') {
      if (bulk_total >= options_.max_bytes || !ReceiveBulk(fd, options_.max_bytes - bulk_total)) return false;
      bulk_total = options_.max_bytes;  // one sized phase after the warm-up is all a probe gets
    } else if (op == 'W') {
      if (!ReceiveBulk(fd, kWarmupBytes)) return false;
    } else {
      return false;
    }
  }
}

namespace {

std::string Peer(const std::string& host, int port) {
  return "probe peer " + host + ":" + std::to_string(port);
}

// One bulk phase of n bytes; returns the server-timed goodput in Mbit/s (0 on failure).
double SendBulk(int fd, char op, uint64_t n) {
  if (!WriteAll(fd, &op, 1) || !WriteU64(fd, n)) return 0;
  std::vector<uint8_t> buf(1 << 16, 0x5a);
  for (uint64_t sent = 0; sent < n;) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(buf.size(), n - sent));
    if (!WriteAll(fd, buf.data(), chunk)) return 0;
    sent += chunk;
  }
  uint64_t received = 0, ns = 0;
  if (!ReadU64(fd, &received) || !ReadU64(fd, &ns) || received != n) return 0;
  return static_cast<double>(n) * 8 / (static_cast<double>(ns) / 1e9) / 1e6;
}

Status Authenticate(int fd, const std::string& key, const std::string& peer) {
  const std::string nonce_c = RandomBytes(16);
  static const std::string kClient = "client", kServer = "server";
  uint8_t hello[4 + 1 + 16 + crypto_auth_BYTES];
  std::memcpy(hello, kMagic, 4);
  hello[4] = kVersion;
  std::memcpy(hello + 5, nonce_c.data(), 16);
  Tag(key, {&nonce_c, &kClient}, hello + 21);
  uint8_t reply[16 + crypto_auth_BYTES];
  if (!WriteAll(fd, hello, sizeof(hello)) || !ReadAll(fd, reply, sizeof(reply)))
    return Status::PermissionDenied(
        peer + ": no valid answer during authentication (a different probe key, or not a probe server)");
  const std::string nonce_s(reinterpret_cast<char*>(reply), 16);
  if (!TagMatches(key, {&nonce_c, &nonce_s, &kServer}, reply + 16))
    return Status::PermissionDenied(peer + ": could not prove it holds the probe key");
  return Status::OK();
}

}  // namespace

Result<ProbeResult> ProbeLink(const std::string& host, int port, const ProbeOptions& options) {
  TRIB_RETURN_IF_ERROR(CheckKey(options.key));
  const std::string peer = Peer(host, port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return Status::InvalidArgument(peer + ": not an IPv4 address");
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SetTimeouts(fd.get(), options.io_timeout_ms);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Status::Unavailable(peer + ": cannot connect: " + std::strerror(errno));
  TRIB_RETURN_IF_ERROR(Authenticate(fd.get(), options.key, peer));
  ProbeResult result;
  result.rtt_ms = 1e300;
  for (int i = 0; i < std::max(1, options.rtt_samples); ++i) {
    const auto start = Clock::now();
    uint8_t op = 'P';
    if (!WriteAll(fd.get(), &op, 1) || !ReadAll(fd.get(), &op, 1) || op != 'P')
      return Status::Unavailable(peer + ": no answer to an RTT ping within " + std::to_string(options.io_timeout_ms) +
                                 " ms");
    result.rtt_ms = std::min(result.rtt_ms, std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  const uint64_t warmup = std::min<uint64_t>(kWarmupBytes, options.max_bytes);
  const double warm_mbps = SendBulk(fd.get(), 'W', warmup);
  if (warm_mbps <= 0) return Status::Unavailable(peer + ": the warm-up transfer failed or timed out");
  const uint64_t sized = std::clamp<uint64_t>(static_cast<uint64_t>(warm_mbps * 1e6 / 8 * options.target_s), warmup,
                                              std::max(warmup, options.max_bytes - warmup));
  result.mbps = options.max_bytes > warmup ? SendBulk(fd.get(), 'B', sized) : warm_mbps;
  result.bytes = warmup + (options.max_bytes > warmup ? sized : 0);
  if (result.mbps <= 0) return Status::Unavailable(peer + ": the measured transfer failed or timed out");
  return result;
}

}  // namespace tributary
