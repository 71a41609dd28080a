#include "transport/link_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace tributary {
namespace {

const std::string kKey(kProbeKeyBytes, 'k');

std::unique_ptr<ProbeServer> StartServer(const std::string& key = kKey, uint64_t max_bytes = 64 << 20) {
  ProbeServerOptions options;
  options.key = key;
  options.max_bytes = max_bytes;
  options.io_timeout_ms = 1000;
  auto server = ProbeServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(*server) : nullptr;
}

ProbeOptions Options(uint64_t max_bytes = 8 << 20) {
  ProbeOptions options;
  options.key = kKey;
  options.max_bytes = max_bytes;
  options.target_s = 0.05;
  options.io_timeout_ms = 1000;
  return options;
}

TEST(LinkProbeTest, MeasuresLoopbackWithinItsByteBudget) {
  auto server = StartServer();
  auto result = ProbeLink("127.0.0.1", server->port(), Options(4 << 20));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_GT(result->mbps, 0);
  EXPECT_GE(result->rtt_ms, 0);
  EXPECT_LT(result->rtt_ms, 1000);
  EXPECT_GT(result->bytes, 0u);
  EXPECT_LE(result->bytes, 4u << 20);
  for (int i = 0; i < 100 && server->probes_served() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->probes_served(), 1u);
}

TEST(LinkProbeTest, BothSidesMustHoldTheKey) {
  auto server = StartServer();
  ProbeOptions options = Options();
  options.key = std::string(kProbeKeyBytes, 'x');
  auto result = ProbeLink("127.0.0.1", server->port(), options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(result.status().message().find("probe peer 127.0.0.1:" + std::to_string(server->port())),
            std::string::npos);
  for (int i = 0; i < 100 && server->probes_refused() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->probes_refused(), 1u);
  EXPECT_EQ(server->probes_served(), 0u);
  EXPECT_EQ(ProbeLink("127.0.0.1", server->port(), ProbeOptions{}).status().code(), StatusCode::kInvalidArgument);
}

// A peer that sends garbage is refused and the server goes on serving.
TEST(LinkProbeTest, GarbageIsRefusedAndTheServerKeepsServing) {
  auto server = StartServer();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server->port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string junk(200, '\x7f');
  ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  close(fd);
  auto result = ProbeLink("127.0.0.1", server->port(), Options());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(server->probes_refused(), 1u);
}

// A server that accepts but never answers: the probe gives up after its I/O timeout, naming the peer.
TEST(LinkProbeTest, ASilentPeerTimesOut) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ProbeOptions options = Options();
  options.io_timeout_ms = 200;
  auto result = ProbeLink("127.0.0.1", ntohs(addr.sin_port), options);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("no valid answer during authentication"), std::string::npos)
      << result.status().ToString();
  close(listener);
}

TEST(LinkProbeTest, BadOptionsAreNamed) {
  ProbeServerOptions options;
  options.key = "short";
  EXPECT_EQ(ProbeServer::Start(options).status().message(), "probe key: expected 32 bytes, got 5");
  options.key = kKey;
  options.address = "not-an-ip";
  EXPECT_EQ(ProbeServer::Start(options).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ProbeLink("127.0.0.1", 1, Options()).status().code(), StatusCode::kUnavailable);
}

// The coordinator issues one key per probe pair: a responder accepts each added key (and still its own),
// answers with the key the client proved, and refuses a key nobody added.
TEST(LinkProbeTest, AddedKeysAreServedBesideTheServersOwn) {
  auto server = StartServer();
  const std::string pair_a(kProbeKeyBytes, 'a'), pair_b(kProbeKeyBytes, 'b');
  ASSERT_TRUE(server->AddKey(pair_a).ok());
  ASSERT_TRUE(server->AddKey(pair_b).ok());
  EXPECT_EQ(server->AddKey("short").code(), StatusCode::kInvalidArgument);
  for (const std::string* key : {&pair_a, &pair_b, &kKey}) {
    ProbeOptions options = Options(1 << 20);
    options.key = *key;
    auto result = ProbeLink("127.0.0.1", server->port(), options);
    EXPECT_TRUE(result.ok()) << key->front() << ": " << result.status().ToString();
  }
  ProbeOptions stranger = Options(1 << 20);
  stranger.key = std::string(kProbeKeyBytes, 'z');
  auto refused = ProbeLink("127.0.0.1", server->port(), stranger);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
}

TEST(LinkProbeTest, TheOldestAddedKeyIsForgottenBeyondTheBound) {
  auto server = StartServer();
  auto key = [](size_t i) {
    std::string k(kProbeKeyBytes, 'q');
    k.replace(0, 8, std::to_string(10000000 + i));
    return k;
  };
  for (size_t i = 0; i <= ProbeServer::kMaxExtraKeys; ++i) ASSERT_TRUE(server->AddKey(key(i)).ok());
  ProbeOptions options = Options(1 << 20);
  options.key = key(0);
  EXPECT_EQ(ProbeLink("127.0.0.1", server->port(), options).status().code(), StatusCode::kPermissionDenied);
  options.key = key(ProbeServer::kMaxExtraKeys);
  EXPECT_TRUE(ProbeLink("127.0.0.1", server->port(), options).ok());
}

}  // namespace
}  // namespace tributary
