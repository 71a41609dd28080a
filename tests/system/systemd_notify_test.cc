// The daemons under systemd's notify protocol (sd_notify(3), docs/deploy.md), as real processes: each
// gets NOTIFY_SOCKET pointing at a datagram socket of this test and WATCHDOG_USEC, and must send
// READY=1, then STATUS= lines, WATCHDOG=1 from its event loop, and STOPPING=1 on SIGTERM. A loop
// stalled on purpose (TRIBUTARY_FAULT_STALL_LOOP_MS + SIGUSR2) must stop the watchdog pings for
// longer than the watchdog interval while the process stays alive.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

constexpr int64_t kWatchdogUsec = 400000;  // pings every 200 ms
constexpr int kStallMs = 2000;             // well past the watchdog interval
constexpr int kWaitMs = 60000;             // for any expected message (a loaded machine is slow)

struct Notification {
  std::string text;
  int64_t kernel_us = 0;  // when the kernel queued it (SO_TIMESTAMP): the sender's order and gaps
};

// An AF_UNIX datagram socket like systemd's notify socket, recording every message received.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    EXPECT_LT(path.size(), sizeof(addr.sun_path)) << path;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path;
    const int on = 1;
    EXPECT_EQ(setsockopt(fd_, SOL_SOCKET, SO_TIMESTAMP, &on, sizeof(on)), 0);
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }

  const std::string& path() const { return path_; }
  const std::vector<Notification>& received() const { return received_; }

  // Receives until a message satisfies `match` (its index in received()), or -1 after timeout_ms.
  int WaitFor(const std::function<bool(const Notification&)>& match, int timeout_ms = kWaitMs) {
    for (size_t i = checked_; i < received_.size(); ++i) {
      checked_ = i + 1;
      if (match(received_[i])) return static_cast<int>(i);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!ReceiveOne(100)) continue;
      checked_ = received_.size();
      if (match(received_.back())) return static_cast<int>(received_.size() - 1);
    }
    return -1;
  }
  int WaitForText(const std::string& prefix, int timeout_ms = kWaitMs) {
    return WaitFor([&](const Notification& n) { return n.text.rfind(prefix, 0) == 0; }, timeout_ms);
  }
  int Count(const std::string& text) const {
    int n = 0;
    for (const Notification& m : received_) n += m.text == text ? 1 : 0;
    return n;
  }
  std::string Dump() const {
    std::string out;
    for (const Notification& m : received_) out += "  " + std::to_string(m.kernel_us) + " " + m.text + "\n";
    return out;
  }

 private:
  bool ReceiveOne(int timeout_ms) {
    pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char data[4096];
    char control[CMSG_SPACE(sizeof(timeval))];
    iovec iov = {data, sizeof(data)};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(fd_, &msg, 0);
    if (n < 0) return false;
    Notification note{std::string(data, static_cast<size_t>(n)), 0};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMP) {
        timeval tv;
        std::memcpy(&tv, CMSG_DATA(c), sizeof(tv));
        note.kernel_us = static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
      }
    }
    received_.push_back(std::move(note));
    return true;
  }

  std::string path_;
  int fd_ = -1;
  std::vector<Notification> received_;
  size_t checked_ = 0;
};

// The environment systemd gives a Type=notify service with WatchdogSec=, set while `start` spawns it.
void SpawnSupervised(const NotifySocket& socket, const std::function<void()>& start) {
  setenv("NOTIFY_SOCKET", socket.path().c_str(), 1);
  setenv("WATCHDOG_USEC", std::to_string(kWatchdogUsec).c_str(), 1);
  setenv("TRIBUTARY_FAULT_STALL_LOOP_MS", std::to_string(kStallMs).c_str(), 1);
  start();
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("TRIBUTARY_FAULT_STALL_LOOP_MS");
}

std::unique_ptr<cli::LocalCluster> NewCluster(const std::string& dir) {
  cli::LocalClusterOptions options;
  options.binary = TRIBUTARY_BINARY;
  options.dir = dir;
  options.num_workers = 0;
  options.insecure = true;
  options.heartbeat_interval_s = 0.5;
  auto cluster = std::make_unique<cli::LocalCluster>(options);
  Status prepared = cluster->Prepare();
  EXPECT_TRUE(prepared.ok()) << prepared.ToString();
  return cluster;
}

// SIGUSR2 stalls the daemon's loop once: after the fault marker no WATCHDOG=1 is queued for longer
// than the watchdog interval (systemd would restart the unit), the process stays alive, and the pings
// come back once the loop runs again.
void ExpectStallStopsWatchdog(NotifySocket& socket, cli::ChildProcess& daemon) {
  daemon.Signal(SIGUSR2);
  const int marker = socket.WaitForText("X_TRIBUTARY_FAULT=loop-stall");
  ASSERT_GE(marker, 0) << socket.Dump();
  EXPECT_TRUE(daemon.running());
  const int next_ping = socket.WaitForText("WATCHDOG=1");
  ASSERT_GE(next_ping, 0) << "the pings must resume after the stall\n" << socket.Dump();
  EXPECT_TRUE(daemon.running());
  const int64_t gap_us = socket.received()[next_ping].kernel_us - socket.received()[marker].kernel_us;
  EXPECT_GT(gap_us, kWatchdogUsec) << socket.Dump();
}

TEST(SystemdNotifyTest, CoordinatorReadyStatusWatchdogStallStopping) {
  TestDir dir;
  NotifySocket socket(dir.path() + "/notify.sock");
  auto cluster = NewCluster(dir.path());
  SpawnSupervised(socket, [&] { ASSERT_TRUE(cluster->StartCoordinator().ok()); });
  cli::ChildProcess& coordinator = *cluster->coordinator();

  const int ready = socket.WaitForText("READY=1");
  ASSERT_EQ(ready, 0) << "READY=1 first (store open, listeners bound)\n" << socket.Dump();
  const int status = socket.WaitForText("STATUS=");
  ASSERT_GT(status, ready) << socket.Dump();
  EXPECT_EQ(socket.received()[status].text, "STATUS=no job running; 0 workers alive");
  for (int i = 0; i < 3; ++i) ASSERT_GT(socket.WaitForText("WATCHDOG=1"), status) << socket.Dump();

  ExpectStallStopsWatchdog(socket, coordinator);

  coordinator.Signal(SIGTERM);
  ASSERT_GE(socket.WaitForText("STOPPING=1"), 0) << socket.Dump();
  EXPECT_EQ(coordinator.Wait(30000), 0);
  EXPECT_EQ(socket.received().back().text, "STOPPING=1") << socket.Dump();
  EXPECT_EQ(socket.Count("READY=1"), 1);
}

TEST(SystemdNotifyTest, WorkerReadyOnlyOnceRegisteredAndLeavesOnStop) {
  TestDir dir;
  NotifySocket socket(dir.path() + "/notify.sock");
  auto cluster = NewCluster(dir.path());
  // The coordinator's port, then no coordinator: the worker starts without one to register with.
  ASSERT_TRUE(cluster->StartCoordinator().ok());
  cluster->KillCoordinator(SIGTERM);
  std::unique_ptr<cli::ChildProcess> worker;
  SpawnSupervised(socket, [&] {
    auto spawned = cli::ChildProcess::Spawn(TRIBUTARY_BINARY,
                                            {"--set", "worker.drain_timeout_s=10", "worker", "--coordinator",
                                             cluster->endpoint(), "--name", "w1", "--insecure"},
                                            dir.path() + "/w1.log");
    ASSERT_TRUE(spawned.ok()) << spawned.status().ToString();
    worker = std::move(*spawned);
  });

  // The control loop runs (status, pings) but the worker is not ready while it cannot register.
  const int registering = socket.WaitForText("STATUS=registering as w1 with coordinator " + cluster->endpoint());
  ASSERT_GE(registering, 0) << socket.Dump();
  for (int i = 0; i < 3; ++i) ASSERT_GT(socket.WaitForText("WATCHDOG=1"), registering) << socket.Dump();
  EXPECT_EQ(socket.Count("READY=1"), 0) << socket.Dump();

  ASSERT_TRUE(cluster->StartCoordinator().ok());  // same endpoint
  const int ready = socket.WaitForText("READY=1");
  ASSERT_GT(ready, registering) << socket.Dump();
  ASSERT_GT(socket.WaitForText("STATUS=registered as w1; idle"), registering) << socket.Dump();
  ASSERT_GT(socket.WaitForText("WATCHDOG=1"), ready) << socket.Dump();

  ExpectStallStopsWatchdog(socket, *worker);

  worker->Signal(SIGTERM);
  ASSERT_GE(socket.WaitForText("STOPPING=1"), 0) << socket.Dump();
  EXPECT_EQ(worker->Wait(30000), 0);
  EXPECT_EQ(socket.Count("READY=1"), 1);
  // Its last heartbeat said it is leaving: the coordinator stopped counting on it at once.
  auto log = ReadFileToString(dir.path() + "/coordinator.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("worker 'w1' is leaving"), std::string::npos) << *log;
}

}  // namespace
}  // namespace tributary::system_test
