// Hostile and slow peers against a real Server (docs/security.md "Hostile and slow peers").
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "tests/transport/loopback_util.h"
#include "tests/transport/storm_util.h"

namespace tributary::transport {
namespace {

using testing::CurveSetup;
using testing::MakeCurveSetup;
using testing::RunStorm;
using testing::StormOptions;
using testing::StormOutcome;

constexpr int kWaitMs = 3000;

Envelope Heartbeat(uint64_t sequence) {
  Envelope envelope = NewEnvelope("worker-a");
  envelope.mutable_heartbeat()->set_worker_id("worker-a");
  envelope.mutable_heartbeat()->set_sequence(sequence);
  return envelope;
}

// The routing id of `client`, learnt from one heartbeat it sends.
std::string RoutingIdOf(Server& server, Client& client) {
  EXPECT_TRUE(client.Send(Heartbeat(1)).ok());
  Result<Incoming> in = server.Receive(kWaitMs);
  EXPECT_TRUE(in.ok()) << in.status().ToString();
  return in.ok() ? in->peer.routing_id : std::string();
}

// One heartbeat round trip with a well-behaved client.
void ExpectServes(Server& server, Client& client, uint64_t sequence) {
  ASSERT_TRUE(client.Send(Heartbeat(sequence)).ok());
  Result<Incoming> in = server.Receive(kWaitMs);
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  Envelope ack = NewEnvelope("server");
  ack.mutable_heartbeat_ack()->set_sequence(sequence);
  ASSERT_TRUE(server.Reply(*in, ack).ok());
  Result<Message> reply = client.Receive(kWaitMs);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.heartbeat_ack().sequence(), sequence);
}

// A client that never reads while the server pushes thousands of messages to it: every send
// returns at once (the loop keeps serving a second client between them), the drops are counted for
// the slow peer only, and it is reported once as slow.
TEST(HostilePeersTest, ServerDropsForAPeerThatDoesNotReadAndKeepsServingOthers) {
  const CurveSetup setup = MakeCurveSetup();
  const KeyPair good_keys = GenerateKeyPair().value();
  ServerOptions server_options = testing::SecureServerOptions(setup);
  ASSERT_TRUE(server_options.allow_list.Add(good_keys.public_key, "worker-good").ok());
  server_options.socket.send_high_water_mark = 10;
  server_options.slow_peer_drops = 50;
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, server_options).value();
  ClientOptions slow_options = testing::SecureClientOptions(setup, setup.client);
  slow_options.socket.receive_high_water_mark = 10;
  std::unique_ptr<Client> slow = Client::Connect(server->endpoint(), slow_options).value();
  std::unique_ptr<Client> good =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, good_keys)).value();
  const std::string slow_id = RoutingIdOf(*server, *slow);
  const std::string good_id = RoutingIdOf(*server, *good);
  ASSERT_FALSE(slow_id.empty());
  ASSERT_FALSE(good_id.empty());

  Envelope push = NewEnvelope("server");
  push.mutable_round_committed()->set_job_id("job");
  push.mutable_round_committed()->set_aggregate(std::string(64 * 1024, 'a'));  // TCP buffers hold few
  uint64_t refused = 0;
  std::vector<SlowPeer> reported;
  for (int i = 0; i < 3000; ++i) {
    const Status sent = server->Send(slow_id, push);
    if (!sent.ok()) {
      ASSERT_EQ(sent.code(), StatusCode::kTimeout) << sent.ToString();
      ++refused;
    }
    if (i % 100 == 0) ExpectServes(*server, *good, 1000 + i);
    for (SlowPeer& peer : server->TakeSlowPeers()) reported.push_back(peer);
  }
  EXPECT_GT(refused, 1000u);
  EXPECT_EQ(server->dropped_messages(slow_id), refused);
  EXPECT_EQ(server->dropped_messages(good_id), 0u);
  EXPECT_EQ(server->dropped_messages(), refused);  // nobody else lost a message
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0].routing_id, slow_id);
  EXPECT_NE(reported[0].describe.find("worker-a"), std::string::npos) << reported[0].describe;
  EXPECT_GE(reported[0].dropped_in_row, 50u);
  EXPECT_TRUE(server->TakeSlowPeers().empty());  // reported once
}

// Counts warning lines containing `text` while it lives (replaces the default logger).
class WarningCounter {
 public:
  WarningCounter() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096)) {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("count", sink_);
    logger->set_level(spdlog::level::debug);
    sink_->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
  }
  ~WarningCounter() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> Lines(const std::string& text) const {
    std::vector<std::string> out;
    for (const std::string& line : sink_->last_formatted()) {
      if (line.rfind("warning ", 0) == 0 && line.find(text) != std::string::npos) out.push_back(line);
    }
    return out;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// A peer sending garbage gets one warning per interval, the next one counting what was skipped; the
// total stays in rejected_messages().
TEST(HostilePeersTest, RejectedMessagesAreLoggedOncePerPeerPerIntervalWithCounts) {
  WarningCounter warnings;
  const CurveSetup setup = MakeCurveSetup();
  ServerOptions server_options = testing::SecureServerOptions(setup);
  server_options.reject_log_interval_ms = 300;
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, server_options).value();
  std::unique_ptr<Client> client =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, setup.client)).value();
  auto send_garbage = [&](int count) {
    for (int i = 0; i < count; ++i) {
      std::vector<zmq::message_t> frames;
      frames.emplace_back(std::string("garbage").data(), 7);
      ASSERT_TRUE(client->SendRawFramesForTesting(std::move(frames)).ok());
      Result<Incoming> in = server->Receive(kWaitMs);
      ASSERT_FALSE(in.ok());
      ASSERT_NE(in.status().code(), StatusCode::kTimeout);
    }
  };
  send_garbage(50);
  EXPECT_EQ(server->rejected_messages(), 50u);
  EXPECT_EQ(warnings.Lines("rejected a message").size(), 1u);

  std::this_thread::sleep_for(std::chrono::milliseconds(350));  // past the interval
  send_garbage(1);
  const std::vector<std::string> lines = warnings.Lines("rejected a message");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("49 more from this peer"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("worker-a"), std::string::npos) << lines[1];
  EXPECT_EQ(server->rejected_messages(), 51u);
}

// The product's Server options (no ZMTP heartbeats from the server, TCP keepalive, sends that
// never wait) under a storm of fuzzing peers that flood and vanish mid-conversation, some of them
// sending ZMTP PINGs of their own: the server survives and still answers a well-behaved client.
TEST(HostilePeersTest, ServerSurvivesFuzzingPeersThatVanish) {
  StormOptions options;
  options.duration_ms = 3000;
  options.peer_heartbeat_ivl_ms = 5;
  const StormOutcome outcome = RunStorm(options);
  EXPECT_GT(outcome.messages_sent, 10000u) << outcome.Describe();
  EXPECT_TRUE(outcome.answered_good_client) << outcome.Describe();
  EXPECT_TRUE(outcome.child_exited_cleanly) << outcome.Describe();
}

// The reproducer of the libzmq 4.3.4 abort (`Assertion failed: !_io_error
// (src/stream_engine_base.cpp:331)`): the same storm with ZMTP heartbeats on the server, as the
// Server had before. Disabled because it is expected to abort the child; run it with
// --gtest_also_run_disabled_tests (docs/security.md records how often it aborted).
TEST(HostilePeersTest, DISABLED_ServerWithZmtpHeartbeatsAborts) {
  StormOptions options;
  options.duration_ms = 6000;
  options.server_zmtp_heartbeats = true;
  options.server_socket.heartbeat_interval_ms = 100;  // fire often: the window is input-stopped-then-failed
  const StormOutcome outcome = RunStorm(options);
  EXPECT_FALSE(outcome.child_exited_cleanly) << outcome.Describe();
  EXPECT_NE(outcome.child_stderr_tail.find("_io_error"), std::string::npos) << outcome.Describe();
  std::printf("%s\n", outcome.Describe().c_str());
}

}  // namespace
}  // namespace tributary::transport
