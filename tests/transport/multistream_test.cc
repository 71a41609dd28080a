// Multi-connection transfer (transport/multistream.h) over real loopback sockets, sender and receiver as threads.
#include "transport/multistream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "transport/multistream_wire.h"

namespace tributary::transport {
namespace {

namespace wire = multistream_wire;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// n connected socket pairs over loopback TCP: .first the sender ends, .second the receiver ends.
std::pair<std::vector<int>, std::vector<int>> Connected(int n, int socket_buffer_bytes = 0) {
  int port = 0;
  auto listener = ListenTcp("127.0.0.1", 0, &port);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  auto senders = ConnectStreams("127.0.0.1", port, n, socket_buffer_bytes);
  EXPECT_TRUE(senders.ok()) << senders.status().ToString();
  auto receivers = AcceptStreams(*listener, n, 5000, socket_buffer_bytes);
  EXPECT_TRUE(receivers.ok()) << receivers.status().ToString();
  ::close(*listener);
  return {*senders, *receivers};
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

struct Outcome {
  Result<MultistreamStats> sent = Status::Internal("not run");
  Result<MultistreamReceived> received = Status::Internal("not run");
};

// Runs a whole transfer with the sender on its own thread; receive_fds may be a subset of the receiver ends.
Outcome Transfer(const std::vector<int>& send_fds, const std::vector<int>& receive_fds, const std::string& data,
                 const MultistreamOptions& send_opts, const MultistreamOptions& receive_opts,
                 const MultistreamKey& send_key, const MultistreamKey& receive_key) {
  Outcome out;
  std::thread sender([&] { out.sent = SendMultistream(send_fds, send_key, data.data(), data.size(), send_opts); });
  out.received = ReceiveMultistream(receive_fds, receive_key, receive_opts);
  sender.join();
  return out;
}

MultistreamOptions Options(uint32_t chunk_bytes) {
  MultistreamOptions o;
  o.transfer_id = 42;
  o.peer = "test-peer";
  o.chunk_bytes = chunk_bytes;
  o.timeout_ms = 60000;
  return o;
}

TEST(StreamsForPathTest, CeilOfBdpOverWindowClamped) {
  // 100 Mbit/s x 50 ms = 625,000 B.
  EXPECT_EQ(StreamsForPath(100e6, 0.050, 256 * 1024), 3);
  EXPECT_EQ(StreamsForPath(100e6, 0.050, 625000), 1);
  EXPECT_EQ(StreamsForPath(100e6, 0.050, 624999), 2);
  EXPECT_EQ(StreamsForPath(10e9, 0.100, 256 * 1024), kMaxMultistreamStreams);
  EXPECT_EQ(StreamsForPath(10e9, 0.100, 256 * 1024, 8), 8);
  EXPECT_EQ(StreamsForPath(1e6, 0.001, 256 * 1024), 1);
  EXPECT_EQ(StreamsForPath(0, 0.05, 1024), 1);
  EXPECT_EQ(StreamsForPath(100e6, 0.05, 0), kMaxMultistreamStreams);
}

TEST(PlanMultistreamChunksTest, EqualByDefaultProportionalWithWeights) {
  const uint64_t size = (uint64_t{10} << 20) + 12345;
  for (const auto& weights : {std::vector<double>{}, std::vector<double>{3, 1}}) {
    const auto plan = PlanMultistreamChunks(size, weights, 1 << 20, 2);
    ASSERT_EQ(plan.size(), 2u);
    std::vector<ByteRange> all;
    uint64_t share[2] = {0, 0};
    for (int j = 0; j < 2; ++j) {
      for (const auto& r : plan[j]) {
        EXPECT_LE(r.len, uint64_t{1} << 20);
        share[j] += r.len;
        all.push_back(r);
      }
    }
    std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
    uint64_t at = 0;
    for (const auto& r : all) {
      EXPECT_EQ(r.offset, at);
      at += r.len;
    }
    EXPECT_EQ(at, size);
    const double expected_first = weights.empty() ? 0.5 : 0.75;
    EXPECT_NEAR(static_cast<double>(share[0]) / size, expected_first, 0.01);
  }
}

TEST(MultistreamTest, ByteExactForOneFourEightStreamsAndOddSizes) {
  const MultistreamKey key = RandomMultistreamKey();
  for (int n : {1, 4, 8}) {
    for (size_t size : {size_t{1}, size_t{65537}, size_t{3 * 1000 * 1000 + 7}}) {
      auto [s, r] = Connected(n);
      const std::string data = RandomBytes(size, static_cast<uint32_t>(n * 1000 + size));
      auto out = Transfer(s, r, data, Options(100 * 1000 + 3), Options(100 * 1000 + 3), key, key);
      ASSERT_TRUE(out.sent.ok()) << "n=" << n << " size=" << size << ": " << out.sent.status().ToString();
      ASSERT_TRUE(out.received.ok()) << "n=" << n << " size=" << size << ": " << out.received.status().ToString();
      EXPECT_TRUE(out.received->data == data) << "n=" << n << " size=" << size;
      EXPECT_EQ(out.received->stats.payload_bytes, size);
      CloseAll(s);
      CloseAll(r);
    }
  }
}

// Hand-crafted frames on one raw connection: all chunks in shuffled order, then a replay of one of them.
class RawSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [s, r] = Connected(1);
    send_fd_ = s[0];
    receive_fd_ = r[0];
    data_ = RandomBytes(10 * 4096 + 100, 7);
    for (uint64_t at = 0; at < data_.size(); at += 4096) {
      const auto len = static_cast<uint32_t>(std::min<uint64_t>(4096, data_.size() - at));
      chunks_.push_back(wire::SealFrame(key_, {wire::FrameType::kData, 0, 42, at, len}, data_.data() + at, len));
    }
    std::shuffle(chunks_.begin(), chunks_.end(), std::mt19937(3));
  }
  void TearDown() override {
    ::close(send_fd_);
    ::close(receive_fd_);
  }
  void Send(const std::string& frame) { ASSERT_TRUE(wire::WriteAll(send_fd_, frame.data(), frame.size()).ok()); }
  std::string Hello() { return wire::SealFrame(key_, {wire::FrameType::kHello, 0, 42, data_.size(), 0}, nullptr, 0); }
  Result<MultistreamReceived> Receive() {
    MultistreamOptions o = Options(4096);
    o.timeout_ms = 10000;
    return ReceiveMultistream({receive_fd_}, key_, o);
  }

  MultistreamKey key_ = RandomMultistreamKey();
  int send_fd_ = -1, receive_fd_ = -1;
  std::string data_;
  std::vector<std::string> chunks_;
};

TEST_F(RawSenderTest, ShuffledChunksReassembleByOffset) {
  Send(Hello());
  for (const auto& c : chunks_) Send(c);
  ::shutdown(send_fd_, SHUT_WR);
  auto got = Receive();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->data == data_);
}

TEST_F(RawSenderTest, TamperedChunkIsAnErrorNamingThePeer) {
  Send(Hello());
  std::string bad = chunks_[0];
  bad[wire::kHeaderBytes + 5] ^= 1;  // one ciphertext bit
  Send(bad);
  for (size_t i = 1; i < chunks_.size(); ++i) Send(chunks_[i]);
  auto got = Receive();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied) << got.status().ToString();
  EXPECT_NE(got.status().message().find("peer 'test-peer' conn 0"), std::string::npos) << got.status().ToString();
  EXPECT_NE(got.status().message().find("failed authentication"), std::string::npos) << got.status().ToString();
}

TEST_F(RawSenderTest, TamperedHeaderFieldIsRejected) {
  Send(Hello());
  std::string bad = chunks_[0];
  bad[16] ^= 1;  // the offset: authenticated as additional data
  Send(bad);
  auto got = Receive();
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("failed authentication"), std::string::npos) << got.status().ToString();
}

TEST_F(RawSenderTest, ReplayedChunkIsRejected) {
  Send(Hello());
  Send(chunks_[0]);
  Send(chunks_[0]);
  auto got = Receive();
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("replayed frame"), std::string::npos) << got.status().ToString();
}

// The receiver's header checks on their own (the fuzz harness drives the same class).
TEST(ReceiveLedgerTest, HelloFirstRangesInsideDuplicatesAndReplays) {
  using Accepted = wire::ReceiveLedger::Accepted;
  wire::ReceiveLedger ledger(42, 1000, 2);
  auto data = [](uint64_t offset, uint32_t len) {
    return wire::FrameHeader{wire::FrameType::kData, 0, 42, offset, len};
  };
  const wire::FrameHeader hello{wire::FrameType::kHello, 0, 42, 300, 0};
  EXPECT_TRUE(ledger.Accept(0, data(0, 100), "n0").status().IsCorruption());  // before the connection's hello
  EXPECT_EQ(*ledger.Accept(0, hello, "n1"), Accepted::kHello);
  EXPECT_EQ(ledger.size(), 300u);
  EXPECT_TRUE(ledger.Accept(1, data(0, 100), "n2").status().IsCorruption());  // connection 1 has no hello yet
  EXPECT_EQ(*ledger.Accept(0, data(0, 200), "n3"), Accepted::kNewBytes);
  EXPECT_EQ(*ledger.Accept(0, data(50, 100), "n4"), Accepted::kDuplicate);
  EXPECT_EQ(*ledger.Accept(0, data(150, 150), "n5"), Accepted::kNewBytes);  // overlaps: 100 new bytes
  EXPECT_EQ(ledger.have_bytes(), 300u);
  EXPECT_TRUE(ledger.complete());
  EXPECT_TRUE(ledger.Accept(0, data(250, 51), "n6").status().IsCorruption());                    // past the end
  EXPECT_TRUE(ledger.Accept(0, data(~uint64_t{0}, 1), "n7").status().IsCorruption());            // offset overflow
  EXPECT_EQ(ledger.Accept(0, data(0, 1), "n3").status().code(), StatusCode::kPermissionDenied);  // replayed nonce
  EXPECT_EQ(ledger.Accept(0, {wire::FrameType::kData, 0, 7, 0, 1}, "n8").status().code(),
            StatusCode::kPermissionDenied);  // another transfer
  EXPECT_EQ(ledger.Accept(1, {wire::FrameType::kHello, 1, 42, 301, 0}, "n9").status().code(),
            StatusCode::kInvalidArgument);  // a different size
  wire::ReceiveLedger small(42, 1000, 1);
  EXPECT_EQ(small.Accept(0, {wire::FrameType::kHello, 0, 42, 1001, 0}, "h").status().code(),
            StatusCode::kInvalidArgument);  // over max_bytes
}

TEST(MultistreamTest, WrongKeyFailsBothSides) {
  auto [s, r] = Connected(2);
  MultistreamOptions o = Options(64 * 1024);
  o.timeout_ms = 10000;
  auto out = Transfer(s, r, RandomBytes(1 << 20, 1), o, o, RandomMultistreamKey(), RandomMultistreamKey());
  ASSERT_FALSE(out.received.ok());
  EXPECT_NE(out.received.status().message().find("failed authentication"), std::string::npos)
      << out.received.status().ToString();
  ASSERT_FALSE(out.sent.ok());
  EXPECT_NE(out.sent.status().message().find("to peer 'test-peer' conn "), std::string::npos)
      << out.sent.status().ToString();
  CloseAll(s);
  CloseAll(r);
}

TEST(MultistreamTest, KilledConnectionCompletesOnTheOthers) {
  auto [s, r] = Connected(4, 64 * 1024);
  const MultistreamKey key = RandomMultistreamKey();
  const std::string data = RandomBytes(24 << 20, 11);
  MultistreamOptions ro = Options(64 * 1024);
  std::atomic<int> seen_on_1{0};
  const int victim = r[1];
  ro.on_chunk = [&](size_t conn, const ByteRange&) {
    if (conn == 1 && ++seen_on_1 == 3) ::shutdown(victim, SHUT_RDWR);  // mid-transfer, from the receiving side
  };
  auto out = Transfer(s, r, data, Options(64 * 1024), ro, key, key);
  ASSERT_TRUE(out.sent.ok()) << out.sent.status().ToString();
  ASSERT_TRUE(out.received.ok()) << out.received.status().ToString();
  EXPECT_TRUE(out.received->data == data);
  // The killed connection carried a few chunks at most (what was already buffered), far from its 96-chunk share.
  EXPECT_LT(seen_on_1.load(), 96);
  EXPECT_GE(out.sent->connections_failed + out.sent->connections_stalled, 1);
  EXPECT_GE(out.received->stats.connections_failed, 1);
  CloseAll(s);
  CloseAll(r);
}

TEST(MultistreamTest, StalledConnectionIsResentElsewhere) {
  // The receiver never reads connection 3 (a peer that stops reading): its chunks sit unacknowledged in the
  // socket buffers until the stall rule moves them to the other three.
  auto [s, r] = Connected(4, 64 * 1024);
  const MultistreamKey key = RandomMultistreamKey();
  const std::string data = RandomBytes(16 << 20, 12);
  const std::vector<int> reading(r.begin(), r.begin() + 3);
  auto out = Transfer(s, reading, data, Options(64 * 1024), Options(64 * 1024), key, key);
  ASSERT_TRUE(out.sent.ok()) << out.sent.status().ToString();
  ASSERT_TRUE(out.received.ok()) << out.received.status().ToString();
  EXPECT_TRUE(out.received->data == data);
  EXPECT_GE(out.sent->connections_stalled, 1);  // connection 3 (a loaded machine may add a spurious one)
  EXPECT_GE(out.sent->chunks_resent, 1u);
  CloseAll(s);
  CloseAll(r);
}

}  // namespace
}  // namespace tributary::transport
