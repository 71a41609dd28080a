// delay_relay: a TCP relay that adds one-way latency to each direction of every connection, for the
// one-machine cluster testbed (scripts/cluster-testbed, docs/testbed.md) on kernels without netem.
//
//   delay_relay --listen IP:PORT --target IP:PORT --delay-ms D [--jitter-ms J] [--seed S]
//       relay: every chunk read from one side is held until arrival + D (+ a uniform sample in [-J, +J]),
//       never earlier than the chunk before it in the same direction (no reordering within a stream).
//   delay_relay --echo --listen IP:PORT        test helper: echo server
//   delay_relay --sink --listen IP:PORT        test helper: read and discard; one line per connection
//   delay_relay --rtt --target IP:PORT [--count N] [--size B]
//       test helper: N request/response round trips of B bytes against an echo server; prints
//       "rtt_ms min=.. avg=.. max=.. count=N"
//   delay_relay --send BYTES --target IP:PORT
//       test helper: send BYTES, half-close, wait for the peer to close; prints "sent bytes=.. secs=.. mbit_s=.."
//
// The relay is single-threaded: one epoll loop, a timerfd armed at the earliest due chunk and a signalfd for
// SIGTERM/SIGINT (clean shutdown). Half-close is forwarded once everything before the EOF has been delivered.
// Per direction at most kMaxQueued bytes are held; beyond that the relay stops reading (TCP backpressure).
// One line per connection goes to stderr when it ends.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxQueued = 8 * 1024 * 1024;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "delay_relay: %s\n", msg.c_str());
  std::exit(2);
}

std::string ErrnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

std::optional<sockaddr_in> ParseAddr(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &addr.sin_addr) != 1) return std::nullopt;
  char* end = nullptr;
  const long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port <= 0 || port > 65535) return std::nullopt;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

std::string AddrText(const sockaddr_in& addr) {
  char ip[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip));
  return std::string(ip) + ":" + std::to_string(ntohs(addr.sin_port));
}

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) Die(ErrnoText("fcntl"));
}

void SetNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int Listen(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(ErrnoText("socket"));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die(ErrnoText(("bind " + AddrText(addr)).c_str()));
  }
  if (listen(fd, 512) != 0) Die(ErrnoText("listen"));
  return fd;
}

int ConnectBlocking(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(ErrnoText("socket"));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die(ErrnoText(("connect " + AddrText(addr)).c_str()));
  }
  SetNoDelay(fd);
  return fd;
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// ---------------------------------------------------------------------------------------------------------
// Relay mode.

struct Chunk {
  Clock::time_point due;
  std::string data;
  size_t offset = 0;
};

// One direction of a connection: bytes read from `src` wait in `queue` until due, then go to `dst`.
struct Direction {
  std::deque<Chunk> queue;
  size_t queued_bytes = 0;
  Clock::time_point last_due{};
  bool src_eof = false;         // read returned 0
  bool shut_forwarded = false;  // shutdown(dst, SHUT_WR) done
  bool write_blocked = false;   // the due head chunk hit EAGAIN; wait for EPOLLOUT
  uint64_t bytes = 0;
};

struct Conn {
  uint64_t id = 0;
  int fds[2] = {-1, -1};          // 0: accepted client, 1: connection to the target
  bool connected = false;         // fds[1] finished its non-blocking connect
  Direction dirs[2];              // dirs[0]: client -> target, dirs[1]: target -> client
  uint32_t interest[2] = {0, 0};  // registered epoll events per fd; 0: not in the epoll set
  std::string peer;
  Clock::time_point start;
};

class Relay {
 public:
  Relay(sockaddr_in listen_addr, sockaddr_in target, double delay_ms, double jitter_ms, uint64_t seed)
      : target_(target),
        delay_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(delay_ms))),
        jitter_ms_(jitter_ms),
        rng_(seed) {
    listen_fd_ = Listen(listen_addr);
    SetNonBlocking(listen_fd_);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0 || signal_fd_ < 0) Die(ErrnoText("epoll/timerfd/signalfd"));
    AddFd(listen_fd_, EPOLLIN, kListenTag);
    AddFd(timer_fd_, EPOLLIN, kTimerTag);
    AddFd(signal_fd_, EPOLLIN, kSignalTag);
    std::fprintf(stderr, "delay_relay: listening on %s -> %s delay %.3f ms jitter %.3f ms\n",
                 AddrText(listen_addr).c_str(), AddrText(target).c_str(), delay_ms, jitter_ms);
  }

  int Run() {
    std::vector<epoll_event> events(256);
    while (!stop_) {
      const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die(ErrnoText("epoll_wait"));
      }
      for (int i = 0; i < n && !stop_; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kListenTag) {
          Accept();
        } else if (tag == kTimerTag) {
          uint64_t expirations = 0;
          [[maybe_unused]] const ssize_t r = read(timer_fd_, &expirations, sizeof(expirations));
        } else if (tag == kSignalTag) {
          signalfd_siginfo info{};
          [[maybe_unused]] const ssize_t r = read(signal_fd_, &info, sizeof(info));
          std::fprintf(stderr, "delay_relay: signal %u, shutting down (%zu open connections)\n", info.ssi_signo,
                       conns_.size());
          stop_ = true;
        } else {
          HandleSocket(tag >> 1, static_cast<int>(tag & 1), events[i].events);
        }
      }
      if (!stop_) FlushDue();
    }
    while (!conns_.empty()) Close(conns_.begin()->first, "relay shutdown");
    close(listen_fd_);
    return 0;
  }

 private:
  static constexpr uint64_t kListenTag = ~uint64_t{0};
  static constexpr uint64_t kTimerTag = ~uint64_t{0} - 1;
  static constexpr uint64_t kSignalTag = ~uint64_t{0} - 2;

  void AddFd(int fd, uint32_t events, uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) Die(ErrnoText("epoll_ctl add"));
  }

  void Accept() {
    while (true) {
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      const int cfd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (errno == ECONNABORTED) continue;
        std::fprintf(stderr, "delay_relay: %s\n", ErrnoText("accept").c_str());
        return;  // EMFILE and the like: try again on the next readiness event
      }
      const int tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (tfd < 0) {
        std::fprintf(stderr, "delay_relay: %s\n", ErrnoText("socket").c_str());
        close(cfd);
        continue;
      }
      SetNoDelay(cfd);
      SetNoDelay(tfd);
      auto conn = std::make_unique<Conn>();
      conn->id = next_id_++;
      conn->fds[0] = cfd;
      conn->fds[1] = tfd;
      conn->peer = AddrText(peer);
      conn->start = Clock::now();
      const int rc = connect(tfd, reinterpret_cast<const sockaddr*>(&target_), sizeof(target_));
      if (rc != 0 && errno != EINPROGRESS) {
        std::fprintf(stderr, "delay_relay: conn %llu %s -> %s: connect failed: %s\n",
                     static_cast<unsigned long long>(conn->id), conn->peer.c_str(), AddrText(target_).c_str(),
                     std::strerror(errno));
        close(cfd);
        close(tfd);
        continue;
      }
      conn->connected = (rc == 0);
      const uint64_t id = conn->id;
      conns_[id] = std::move(conn);
      UpdateInterest(*conns_[id]);
    }
  }

  Clock::time_point DueTime(Clock::time_point arrival, Direction& dir) {
    Clock::duration extra{};
    if (jitter_ms_ > 0) {
      std::uniform_real_distribution<double> dist(-jitter_ms_, jitter_ms_);
      extra = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(dist(rng_)));
    }
    Clock::time_point due = arrival + std::max(delay_ + extra, Clock::duration::zero());
    due = std::max(due, dir.last_due);  // never overtake the previous chunk of the same stream
    dir.last_due = due;
    return due;
  }

  void HandleSocket(uint64_t id, int side, uint32_t events) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = *it->second;
    if (side == 1 && !c.connected) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(c.fds[1], SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        errno = err;
        Close(id, ErrnoText("connect to target"));
        return;
      }
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      c.connected = true;
    }
    // Readable (or hung up / errored: the read reports it).
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0 && c.connected) {
      if (!ReadSide(c, side)) return;
    }
    if ((events & EPOLLOUT) != 0 && c.connected) {
      c.dirs[1 - side].write_blocked = false;  // fd `side` is the destination of direction 1 - side
      if (!WriteDue(c, 1 - side, Clock::now())) return;
    }
    if (!MaybeFinish(c)) return;
    UpdateInterest(c);
  }

  // Reads what `side` has to give into the direction it feeds. Returns false when the connection was closed.
  bool ReadSide(Conn& c, int side) {
    Direction& dir = c.dirs[side];
    while (!dir.src_eof && dir.queued_bytes < kMaxQueued) {
      std::string buf(kChunk, '\0');
      const ssize_t n = read(c.fds[side], buf.data(), buf.size());
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        const Clock::time_point due = DueTime(Clock::now(), dir);
        dir.queued_bytes += buf.size();
        dir.queue.push_back(Chunk{due, std::move(buf), 0});
        timers_.emplace(due, c.id, side);
        ArmTimer();
        continue;
      }
      if (n == 0) {
        dir.src_eof = true;
        // Forward the EOF once everything before it is delivered; an empty queue needs a timer tick too.
        const Clock::time_point due = std::max(Clock::now(), dir.last_due);
        timers_.emplace(due, c.id, side);
        ArmTimer();
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Close(c.id, ErrnoText(side == 0 ? "read client" : "read target"));
      return false;
    }
    return true;
  }

  // Writes the due head chunks of direction `d`; forwards EOF when drained. Returns false when closed.
  bool WriteDue(Conn& c, int d, Clock::time_point now) {
    Direction& dir = c.dirs[d];
    const int dst = c.fds[1 - d];
    while (!dir.queue.empty() && dir.queue.front().due <= now && !dir.write_blocked) {
      Chunk& ch = dir.queue.front();
      const ssize_t n = send(dst, ch.data.data() + ch.offset, ch.data.size() - ch.offset, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          dir.write_blocked = true;
          break;
        }
        if (errno == EINTR) continue;
        Close(c.id, ErrnoText(d == 0 ? "write target" : "write client"));
        return false;
      }
      ch.offset += static_cast<size_t>(n);
      dir.bytes += static_cast<uint64_t>(n);
      if (ch.offset == ch.data.size()) {
        dir.queued_bytes -= ch.data.size();
        dir.queue.pop_front();
      }
    }
    if (dir.queue.empty() && dir.src_eof && !dir.shut_forwarded && now >= dir.last_due) {
      shutdown(dst, SHUT_WR);
      dir.shut_forwarded = true;
    }
    return true;
  }

  // Closes the pair once both directions have forwarded their EOF. Returns false when closed.
  bool MaybeFinish(Conn& c) {
    if (c.dirs[0].shut_forwarded && c.dirs[1].shut_forwarded) {
      Close(c.id, "closed");
      return false;
    }
    return true;
  }

  void UpdateInterest(Conn& c) {
    for (int side = 0; side < 2; ++side) {
      uint32_t want = 0;
      if (side == 1 && !c.connected) {
        want = EPOLLOUT;
      } else if (c.connected) {
        const Direction& in = c.dirs[side];       // fd `side` is the source of dirs[side]
        const Direction& out = c.dirs[1 - side];  // ... and the destination of dirs[1 - side]
        if (!in.src_eof && in.queued_bytes < kMaxQueued) want |= EPOLLIN | EPOLLRDHUP;
        if (out.write_blocked) want |= EPOLLOUT;
      }
      // An fd with nothing to wait for leaves the epoll set: EPOLLHUP/EPOLLERR cannot be masked and would
      // otherwise wake the loop until the held data is due (a busy loop).
      if (want != c.interest[side]) {
        epoll_event ev{};
        ev.events = want;
        ev.data.u64 = (c.id << 1) | static_cast<uint64_t>(side);
        const int op = want == 0 ? EPOLL_CTL_DEL : (c.interest[side] == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD);
        epoll_ctl(epoll_fd_, op, c.fds[side], &ev);
        c.interest[side] = want;
      }
    }
  }

  void FlushDue() {
    const Clock::time_point now = Clock::now();
    while (!timers_.empty() && std::get<0>(timers_.top()) <= now) {
      const auto [due, id, d] = timers_.top();
      timers_.pop();
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& c = *it->second;
      if (!WriteDue(c, d, now)) continue;
      if (!MaybeFinish(c)) continue;
      UpdateInterest(c);
    }
    ArmTimer();
  }

  void ArmTimer() {
    itimerspec spec{};
    if (!timers_.empty()) {
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::get<0>(timers_.top()).time_since_epoch()).count();
      // steady_clock is CLOCK_MONOTONIC on Linux; a zero value would disarm, so use at least 1 ns.
      spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
      spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
      if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void Close(uint64_t id, const std::string& why) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = *it->second;
    std::fprintf(stderr, "delay_relay: conn %llu %s -> %s: %s after %.3f s, up %llu bytes, down %llu bytes\n",
                 static_cast<unsigned long long>(c.id), c.peer.c_str(), AddrText(target_).c_str(), why.c_str(),
                 Seconds(Clock::now() - c.start), static_cast<unsigned long long>(c.dirs[0].bytes),
                 static_cast<unsigned long long>(c.dirs[1].bytes));
    for (int side = 0; side < 2; ++side) {
      if (c.interest[side] != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fds[side], nullptr);
      close(c.fds[side]);
    }
    conns_.erase(it);
  }

  sockaddr_in target_;
  Clock::duration delay_;
  double jitter_ms_;
  std::mt19937_64 rng_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int signal_fd_ = -1;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  using TimerEntry = std::tuple<Clock::time_point, uint64_t, int>;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
};

// ---------------------------------------------------------------------------------------------------------
// Test helpers (blocking, a thread per connection).

bool WriteAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    const ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadExactly(int fd, char* data, size_t len) {
  while (len > 0) {
    const ssize_t n = read(fd, data, len);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Echo (echo == true) or sink server; SIGTERM ends it through the default action.
int Serve(const sockaddr_in& addr, bool echo) {
  const int lfd = Listen(addr);
  std::fprintf(stderr, "delay_relay: %s server on %s\n", echo ? "echo" : "sink", AddrText(addr).c_str());
  while (true) {
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    const int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      Die(ErrnoText("accept"));
    }
    SetNoDelay(fd);
    std::thread([fd, echo, peer_text = AddrText(peer)] {
      const Clock::time_point start = Clock::now();
      std::vector<char> buf(kChunk);
      uint64_t total = 0;
      while (true) {
        const ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += static_cast<uint64_t>(n);
        if (echo && !WriteAll(fd, buf.data(), static_cast<size_t>(n))) break;
      }
      const double secs = Seconds(Clock::now() - start);
      std::fprintf(stderr, "delay_relay: %s conn %s: %llu bytes in %.3f s (%.3f Mbit/s)\n", echo ? "echo" : "sink",
                   peer_text.c_str(), static_cast<unsigned long long>(total), secs,
                   secs > 0 ? static_cast<double>(total) * 8 / secs / 1e6 : 0.0);
      close(fd);
    }).detach();
  }
}

int Rtt(const sockaddr_in& target, int count, size_t size) {
  const int fd = ConnectBlocking(target);
  std::string out(size, 'p');
  std::string in(size, '\0');
  double min_ms = 1e300, max_ms = 0, sum_ms = 0;
  for (int i = 0; i < count; ++i) {
    const Clock::time_point t0 = Clock::now();
    if (!WriteAll(fd, out.data(), out.size()) || !ReadExactly(fd, in.data(), in.size())) Die("rtt: echo failed");
    const double ms = Seconds(Clock::now() - t0) * 1e3;
    min_ms = std::min(min_ms, ms);
    max_ms = std::max(max_ms, ms);
    sum_ms += ms;
  }
  close(fd);
  std::printf("rtt_ms min=%.3f avg=%.3f max=%.3f count=%d\n", min_ms, sum_ms / count, max_ms, count);
  return 0;
}

int Send(const sockaddr_in& target, uint64_t bytes) {
  const Clock::time_point start = Clock::now();
  const int fd = ConnectBlocking(target);
  std::vector<char> buf(kChunk, 's');
  uint64_t left = bytes;
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    if (!WriteAll(fd, buf.data(), n)) Die(ErrnoText("send"));
    left -= n;
  }
  shutdown(fd, SHUT_WR);
  while (true) {  // the sink closes after reading our EOF: then every byte has arrived
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  close(fd);
  const double secs = Seconds(Clock::now() - start);
  std::printf("sent bytes=%llu secs=%.3f mbit_s=%.3f\n", static_cast<unsigned long long>(bytes), secs,
              static_cast<double>(bytes) * 8 / secs / 1e6);
  return 0;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: delay_relay --listen IP:PORT --target IP:PORT --delay-ms D [--jitter-ms J] [--seed S]\n"
               "       delay_relay --echo --listen IP:PORT\n"
               "       delay_relay --sink --listen IP:PORT\n"
               "       delay_relay --rtt --target IP:PORT [--count N] [--size BYTES]\n"
               "       delay_relay --send BYTES --target IP:PORT\n");
  std::exit(2);
}

double ParseNumber(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || v < 0) Die("bad value for " + flag + ": " + text);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<sockaddr_in> listen_addr, target;
  double delay_ms = -1, jitter_ms = 0, count = 10, size = 64, send_bytes = -1;
  uint64_t seed = 1;
  enum class Mode { kRelay, kEcho, kSink, kRtt, kSend } mode = Mode::kRelay;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + flag);
      return argv[++i];
    };
    if (flag == "--listen") {
      const std::string v = value();
      listen_addr = ParseAddr(v);
      if (!listen_addr) Die("bad --listen address: " + v);
    } else if (flag == "--target") {
      const std::string v = value();
      target = ParseAddr(v);
      if (!target) Die("bad --target address: " + v);
    } else if (flag == "--delay-ms") {
      delay_ms = ParseNumber(flag, value());
    } else if (flag == "--jitter-ms") {
      jitter_ms = ParseNumber(flag, value());
    } else if (flag == "--seed") {
      seed = static_cast<uint64_t>(ParseNumber(flag, value()));
    } else if (flag == "--echo") {
      mode = Mode::kEcho;
    } else if (flag == "--sink") {
      mode = Mode::kSink;
    } else if (flag == "--rtt") {
      mode = Mode::kRtt;
    } else if (flag == "--count") {
      count = ParseNumber(flag, value());
    } else if (flag == "--size") {
      size = ParseNumber(flag, value());
    } else if (flag == "--send") {
      mode = Mode::kSend;
      send_bytes = ParseNumber(flag, value());
    } else if (flag == "-h" || flag == "--help") {
      Usage();
    } else {
      Die("unknown argument: " + flag);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stderr, nullptr, _IOLBF, 0);
  switch (mode) {
    case Mode::kRelay:
      if (!listen_addr || !target || delay_ms < 0) Usage();
      return Relay(*listen_addr, *target, delay_ms, jitter_ms, seed).Run();
    case Mode::kEcho:
    case Mode::kSink:
      if (!listen_addr) Usage();
      return Serve(*listen_addr, mode == Mode::kEcho);
    case Mode::kRtt:
      if (!target || count < 1 || size < 1) Usage();
      return Rtt(*target, static_cast<int>(count), static_cast<size_t>(size));
    case Mode::kSend:
      if (!target) Usage();
      return Send(*target, static_cast<uint64_t>(send_bytes));
  }
  return 0;
}
