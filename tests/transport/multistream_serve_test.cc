// The daemons' multistream handshake over real loopback sockets: a MultistreamRequest on a ZeroMQ channel,
// answered from a MultistreamServer's offer, the object received over the offered TCP streams with its size
// and checksum checked; the server's bound on offers in flight, an unclaimed offer lapsing, and the failures a
// fetching daemon falls back from (connect refused, a wrong checksum).
#include "transport/multistream_serve.h"

#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/transport/loopback_util.h"
#include "transport/bulk.h"

namespace tributary::transport {
namespace {

constexpr int kWaitMs = 10000;

std::shared_ptr<const std::string> Pattern(size_t size) {
  auto data = std::make_shared<std::string>(size, '\0');
  for (size_t i = 0; i < size; ++i) (*data)[i] = static_cast<char>((i * 131 + i / 977) & 0xff);
  return data;
}

// A ZeroMQ server answering MultistreamRequests from a MultistreamServer, as the coordinator does.
class MultistreamServeTest : public ::testing::Test {
 protected:
  void Start(MultistreamServeOptions options, std::shared_ptr<const std::string> object, std::string checksum = "") {
    auto server = Server::Bind(testing::kLoopbackAny, testing::InsecureServerOptions());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    auto client = Client::Connect(server_->endpoint(), testing::InsecureClientOptions());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    options.host = "127.0.0.1";
    multistream_ = std::make_unique<MultistreamServer>(options, [this](const MultistreamServeReport& report) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(report);
    });
    object_ = std::move(object);
    checksum_ = checksum.empty() ? ObjectChecksum(object_->data(), object_->size()) : checksum;
  }

  // Answers one MultistreamRequest (on this thread) while `fetch` runs on another.
  Result<MultistreamFetched> Fetch(const MultistreamFetchOptions& options) {
    auto future = std::async(std::launch::async, [&] {
      MultistreamRequestFn request = [&](const Envelope& envelope) { return client_->Request(envelope, kWaitMs); };
      return FetchMultistream(request, "aggregate/j1/3", options);
    });
    Result<Incoming> in = server_->Receive(kWaitMs);
    EXPECT_TRUE(in.ok()) << in.status().ToString();
    if (in.ok()) {
      const v1::MultistreamRequest& req = in->message.envelope.multistream_request();
      EXPECT_EQ(req.worker_id(), "w1");
      EXPECT_EQ(req.job_id(), "j1");
      auto offer = multistream_->Offer(req.object_id(), object_, checksum_, 3, "worker 'w1'");
      Envelope reply = NewEnvelope("server");
      if (offer.ok()) {
        *reply.mutable_multistream_offer() = *offer;
      } else {
        reply = ErrorEnvelope("server", in->message.envelope.message_id(), offer.status());
      }
      EXPECT_TRUE(server_->Reply(*in, reply).ok());
    }
    return future.get();
  }

  MultistreamFetchOptions FetchOptions() const {
    MultistreamFetchOptions options;
    options.host = "127.0.0.1";
    options.peer = "test server";
    options.sender = "w1";
    options.worker_id = "w1";
    options.job_id = "j1";
    options.expected_size = object_->size();
    options.timeout_ms = kWaitMs;
    return options;
  }

  std::vector<MultistreamServeReport> Reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::shared_ptr<const std::string> object_;
  std::string checksum_;
  std::mutex mu_;
  std::vector<MultistreamServeReport> reports_;
  std::unique_ptr<MultistreamServer> multistream_;  // last: its threads report into reports_ until it is gone
};

TEST_F(MultistreamServeTest, RequestOfferAndTransferOverThreeStreams) {
  MultistreamServeOptions options;
  options.chunk_bytes = 256 << 10;
  Start(options, Pattern((3 << 20) + 12345));
  MultistreamFetchOptions fetch = FetchOptions();
  fetch.expected_checksum = checksum_;
  Result<MultistreamFetched> fetched = Fetch(fetch);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ(fetched->streams, 3);
  EXPECT_TRUE(fetched->data == *object_);
  multistream_.reset();  // joins the sender: its report is in
  const std::vector<MultistreamServeReport> reports = Reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_TRUE(reports[0].status.ok()) << reports[0].status.ToString();
  EXPECT_TRUE(reports[0].claimed);
  EXPECT_EQ(reports[0].streams, 3);
  EXPECT_EQ(reports[0].stats.payload_bytes, object_->size());
}

TEST_F(MultistreamServeTest, BoundsOffersInFlightAndDropsUnclaimedOnes) {
  MultistreamServeOptions options;
  options.max_transfers = 1;
  options.accept_timeout_ms = 300;
  Start(options, Pattern(1 << 20));
  auto first = multistream_->Offer("aggregate/j1/3", object_, checksum_, 2, "worker 'w1'");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = multistream_->Offer("aggregate/j1/3", object_, checksum_, 2, "worker 'w2'");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status().ToString();
  // Nobody connects: the offer lapses, its port closes, and the slot is free again.
  for (int i = 0; i < 100 && multistream_->active() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(multistream_->active(), 0);
  const std::vector<MultistreamServeReport> reports = Reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_FALSE(reports[0].claimed);
  EXPECT_EQ(reports[0].status.code(), StatusCode::kTimeout);
  EXPECT_NE(reports[0].status.message().find("0 of 2 connections"), std::string::npos) << reports[0].status.message();
  auto refused = ConnectStreams("127.0.0.1", static_cast<int>(first->port()), 1);
  EXPECT_FALSE(refused.ok()) << "the lapsed offer's port still accepts";
  EXPECT_TRUE(multistream_->Offer("aggregate/j1/3", object_, checksum_, 2, "worker 'w2'").ok());
}

TEST_F(MultistreamServeTest, ConnectRefusedIsAnErrorTheCallerFallsBackFrom) {
  Start(MultistreamServeOptions{}, Pattern(4096));
  int port = 0;
  auto listener = ListenTcp("127.0.0.1", 0, &port);
  ASSERT_TRUE(listener.ok());
  ::close(*listener);  // a port nobody listens on
  MultistreamRequestFn request = [&](const Envelope& envelope) -> Result<Message> {
    Message reply;
    v1::MultistreamOffer* offer = reply.envelope.mutable_multistream_offer();
    offer->set_object_id(envelope.multistream_request().object_id());
    offer->set_transfer_id(7);
    offer->set_port(static_cast<uint32_t>(port));
    const MultistreamKey key = RandomMultistreamKey();
    offer->set_key(key.data(), key.size());
    offer->set_streams(2);
    offer->set_size(object_->size());
    offer->set_checksum(checksum_);
    return reply;
  };
  Result<MultistreamFetched> fetched = FetchMultistream(request, "aggregate/j1/3", FetchOptions());
  ASSERT_FALSE(fetched.ok());
  EXPECT_EQ(fetched.status().code(), StatusCode::kIOError) << fetched.status().ToString();
  EXPECT_NE(fetched.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos);
}

TEST_F(MultistreamServeTest, ChecksumMismatchFailsTheFetch) {
  Start(MultistreamServeOptions{}, Pattern(200000), std::string(kObjectChecksumBytes, 'x'));
  Result<MultistreamFetched> fetched = Fetch(FetchOptions());
  ASSERT_FALSE(fetched.ok());
  EXPECT_EQ(fetched.status().code(), StatusCode::kCorruption) << fetched.status().ToString();
  EXPECT_NE(fetched.status().message().find("aggregate/j1/3"), std::string::npos);
}

TEST_F(MultistreamServeTest, PortRangeSkipsTakenPorts) {
  int taken = 0;
  auto listener = ListenTcp("127.0.0.1", 0, &taken);
  ASSERT_TRUE(listener.ok());
  MultistreamServeOptions options;
  ASSERT_TRUE(ParsePortRange(std::to_string(taken), "k", &options).ok());
  Start(options, Pattern(4096));
  auto offer = multistream_->Offer("o", object_, checksum_, 1, "p");
  ASSERT_FALSE(offer.ok());
  EXPECT_NE(offer.status().message().find("no free port"), std::string::npos) << offer.status().ToString();
  ::close(*listener);

  MultistreamServeOptions parsed;
  EXPECT_TRUE(ParsePortRange("7600-7610", "k", &parsed).ok());
  EXPECT_EQ(parsed.port_low, 7600);
  EXPECT_EQ(parsed.port_high, 7610);
  EXPECT_TRUE(ParsePortRange("", "k", &parsed).ok());
  EXPECT_EQ(parsed.port_high, 0);
  EXPECT_FALSE(ParsePortRange("7610-7600", "k", &parsed).ok());
  EXPECT_FALSE(ParsePortRange("70000", "k", &parsed).ok());
  EXPECT_FALSE(ParsePortRange("x", "coordinator.multistream_ports", &parsed).ok());
  EXPECT_EQ(EndpointHost("tcp://10.0.0.1:7400").value(), "10.0.0.1");
  EXPECT_FALSE(EndpointHost("10.0.0.1").ok());
}

}  // namespace
}  // namespace tributary::transport
