// Server/Client channels over real loopback sockets (CURVE unless a test says otherwise).
#include "transport/channel.h"

#include <atomic>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/transport/loopback_util.h"

namespace tributary::transport {
namespace {

using testing::CurveSetup;
using testing::MakeCurveSetup;
using testing::SampleEnvelope;

constexpr int kWaitMs = 3000;  // generous bound for loopback delivery (tests stop at the first message)

struct Pair {
  std::unique_ptr<Server> server;
  std::unique_ptr<Client> client;
};

Pair SecurePair(const CurveSetup& setup, ServerOptions server_options, ClientOptions client_options) {
  Pair pair;
  pair.server = Server::Bind(testing::kLoopbackAny, std::move(server_options)).value();
  pair.client = Client::Connect(pair.server->endpoint(), std::move(client_options)).value();
  (void)setup;
  return pair;
}

Envelope Heartbeat(uint64_t sequence) {
  Envelope envelope = NewEnvelope("worker-a");
  envelope.mutable_heartbeat()->set_worker_id("worker-a");
  envelope.mutable_heartbeat()->set_sequence(sequence);
  return envelope;
}

// Receives on the server until a message arrives (errors are returned, timeouts end the wait).
Result<Incoming> ReceiveOne(Server& server) {
  return server.Receive(kWaitMs);
}

// One good heartbeat round trip: proves the server is still serving.
void ExpectServes(Server& server, Client& client, uint64_t sequence) {
  ASSERT_TRUE(client.Send(Heartbeat(sequence)).ok());
  Result<Incoming> incoming = ReceiveOne(server);
  ASSERT_TRUE(incoming.ok()) << incoming.status().ToString();
  ASSERT_EQ(incoming->message.envelope.body_case(), Envelope::kHeartbeat);
  EXPECT_EQ(incoming->message.envelope.heartbeat().sequence(), sequence);
  Envelope ack = NewEnvelope("server");
  ack.mutable_heartbeat_ack()->set_sequence(sequence);
  ASSERT_TRUE(server.Reply(*incoming, ack).ok());
  Result<Message> reply = client.Receive(kWaitMs);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.heartbeat_ack().sequence(), sequence);
}

TEST(ChannelTest, EveryMessageTypeRoundTripsOverCurve) {
  const CurveSetup setup = MakeCurveSetup();
  Pair pair = SecurePair(setup, testing::SecureServerOptions(setup), testing::SecureClientOptions(setup, setup.client));
  int to_server = 0;
  int to_client = 0;
  for (Envelope::BodyCase body : testing::AllBodyCases()) {
    if (body == Envelope::kBulkChunkHeader) continue;  // needs its data frame: covered by bulk_test
    const Envelope sent = SampleEnvelope(body);
    if (BodyAllowed(body, Direction::kToServer)) {
      ASSERT_TRUE(pair.client->Send(sent).ok());
      Result<Incoming> got = ReceiveOne(*pair.server);
      ASSERT_TRUE(got.ok()) << BodyName(body) << ": " << got.status().ToString();
      EXPECT_TRUE(testing::SameEnvelope(got->message.envelope, sent)) << BodyName(body);
      EXPECT_EQ(got->peer.public_key, setup.client.public_key);
      EXPECT_EQ(got->peer.name, "worker-a");
      ++to_server;
    }
    if (BodyAllowed(body, Direction::kToClient)) {
      // The server needs the client's routing id: obtain it from a heartbeat.
      ASSERT_TRUE(pair.client->Send(Heartbeat(1)).ok());
      Result<Incoming> hello = ReceiveOne(*pair.server);
      ASSERT_TRUE(hello.ok()) << hello.status().ToString();
      ASSERT_TRUE(pair.server->Send(hello->peer.routing_id, sent).ok());
      Result<Message> got = pair.client->Receive(kWaitMs);
      ASSERT_TRUE(got.ok()) << BodyName(body) << ": " << got.status().ToString();
      EXPECT_TRUE(testing::SameEnvelope(got->envelope, sent)) << BodyName(body);
      ++to_client;
    }
  }
  EXPECT_GE(to_server, 9);
  EXPECT_GE(to_client, 11);
}

TEST(ChannelTest, RequestMatchesRepliesAndSurfacesErrors) {
  const CurveSetup setup = MakeCurveSetup();
  Pair pair = SecurePair(setup, testing::SecureServerOptions(setup), testing::SecureClientOptions(setup, setup.client));
  std::thread server_thread([&] {
    for (int i = 0; i < 2; ++i) {
      Result<Incoming> request = ReceiveOne(*pair.server);
      if (!request.ok()) return;
      if (request->message.envelope.body_case() == Envelope::kGetJob) {
        pair.server->Reply(*request, ErrorEnvelope("coordinator", 0, Status::NotFound("job 'j9' does not exist")))
            .IgnoreError();
        continue;
      }
      // A stale, unrelated message first: Request must skip it.
      Envelope stale = NewEnvelope("coordinator");
      stale.set_in_reply_to(42);
      stale.mutable_list_jobs_reply();
      pair.server->Send(request->peer.routing_id, stale).IgnoreError();
      Envelope reply = NewEnvelope("coordinator");
      reply.mutable_list_jobs_reply()->add_jobs()->set_job_id("j1");
      pair.server->Reply(*request, reply).IgnoreError();
    }
  });
  Envelope list = NewEnvelope("cli");
  list.mutable_list_jobs();
  Result<Message> reply = pair.client->Request(list, kWaitMs);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_EQ(reply->envelope.list_jobs_reply().jobs_size(), 1);
  EXPECT_EQ(reply->envelope.list_jobs_reply().jobs(0).job_id(), "j1");

  Envelope get = NewEnvelope("cli");
  get.mutable_get_job()->set_job_id("j9");
  reply = pair.client->Request(get, kWaitMs);
  EXPECT_TRUE(reply.status().IsNotFound()) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("job 'j9' does not exist"), std::string::npos);
  server_thread.join();
}

TEST(ChannelTest, BadMessagesAreRejectedAndTheServerKeepsServing) {
  const CurveSetup setup = MakeCurveSetup();
  ServerOptions server_options = testing::SecureServerOptions(setup);
  server_options.socket.limits.max_control_bytes = 64 * 1024;
  server_options.socket.limits.max_bulk_frame_bytes = 1 << 20;
  Pair pair = SecurePair(setup, server_options, testing::SecureClientOptions(setup, setup.client));
  Server& server = *pair.server;
  Client& client = *pair.client;
  ExpectServes(server, client, 1);

  struct Case {
    std::string name;
    std::vector<std::string> frames;
    std::string expected;
  };
  auto encoded = [](const Envelope& envelope) { return EncodeControlFrame(envelope, 0, Limits{}).value().to_string(); };
  Envelope future = Heartbeat(5);
  future.set_protocol_version(kProtocolVersion + 1);
  Envelope big_upload = NewEnvelope("worker-a");
  big_upload.mutable_upload_update()->set_payload(std::string(100 * 1024, 'u'));  // over the 64 KiB limit
  std::string truncated = encoded(Heartbeat(6));
  truncated.resize(truncated.size() - 4);
  std::string garbage_body = encoded(Heartbeat(7));
  for (size_t i = kFrameHeaderBytes; i < garbage_body.size(); ++i) garbage_body[i] = static_cast<char>(0xff);

  const std::vector<Case> cases = {
      {"empty frame", {""}, "truncated"},
      {"bad magic", {"GET / HTTP/1.1\r\n\r\n"}, "bad magic"},
      {"truncated envelope", {truncated}, "truncated"},
      {"malformed protobuf", {garbage_body}, "malformed"},
      {"future version", {encoded(future)}, "protocol_version"},
      {"wrong type for a server", {encoded(SampleEnvelope(Envelope::kRoundStart))}, "unexpected message type"},
      {"oversized", {encoded(big_upload)}, "oversized"},
      {"unexpected extra frame", {encoded(Heartbeat(8)), "extra"}, "unexpected extra frames"},
      {"too many frames", std::vector<std::string>(40, "x"), "more frames"},
  };
  uint64_t sequence = 100;
  for (const Case& c : cases) {
    std::vector<zmq::message_t> frames;
    for (const std::string& f : c.frames) frames.emplace_back(f.data(), f.size());
    ASSERT_TRUE(client.SendRawFramesForTesting(std::move(frames)).ok()) << c.name;
    Result<Incoming> got = ReceiveOne(server);
    ASSERT_FALSE(got.ok()) << c.name;
    EXPECT_NE(got.status().code(), StatusCode::kTimeout) << c.name;
    EXPECT_NE(got.status().message().find(c.expected), std::string::npos) << c.name << ": " << got.status().message();
    EXPECT_NE(got.status().message().find("worker-a"), std::string::npos) << c.name << ": names the peer";
    // The sender is told why (an Error with no request id), then the server serves normally.
    Result<Message> error = client.Receive(kWaitMs);
    ASSERT_TRUE(error.ok()) << c.name << ": " << error.status().ToString();
    EXPECT_EQ(error->envelope.body_case(), Envelope::kError) << c.name;
    if (c.name == "future version") {
      EXPECT_EQ(error->envelope.in_reply_to(), future.message_id());  // names the rejected request
    }
    ExpectServes(server, client, ++sequence);
  }
  EXPECT_EQ(server.rejected_messages(), cases.size());
}

TEST(ChannelTest, MessageAtTheControlLimitGetsThroughOverCurve) {
  const CurveSetup setup = MakeCurveSetup();
  ServerOptions server_options = testing::SecureServerOptions(setup);
  server_options.socket.limits.max_control_bytes = 64 * 1024;
  server_options.socket.limits.max_bulk_frame_bytes = 16 * 1024;  // the socket limit follows the control limit
  Pair pair = SecurePair(setup, server_options, testing::SecureClientOptions(setup, setup.client));
  Envelope upload = NewEnvelope("worker-a");
  size_t payload = 64 * 1024;
  for (int i = 0; i < 4; ++i) {
    upload.mutable_upload_update()->set_payload(std::string(payload, 'p'));
    payload += 64 * 1024 - upload.ByteSizeLong();
  }
  upload.mutable_upload_update()->set_payload(std::string(payload, 'p'));
  ASSERT_EQ(upload.ByteSizeLong(), 64u * 1024u);
  ASSERT_TRUE(pair.client->Send(upload).ok());
  Result<Incoming> got = ReceiveOne(*pair.server);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->message.envelope.upload_update().payload().size(), payload);
}

TEST(ChannelTest, FramesOverTheSocketLimitDropTheConnectionNotTheServer) {
  const CurveSetup setup = MakeCurveSetup();
  ServerOptions server_options = testing::SecureServerOptions(setup);
  server_options.socket.limits.max_control_bytes = 64 * 1024;
  server_options.socket.limits.max_bulk_frame_bytes = 256 * 1024;  // ZMQ_MAXMSGSIZE = 256 KiB
  Pair pair = SecurePair(setup, server_options, testing::SecureClientOptions(setup, setup.client));
  ExpectServes(*pair.server, *pair.client, 1);

  std::vector<zmq::message_t> frames;
  frames.emplace_back(std::string(2 << 20, 'z').data(), size_t{2} << 20);
  ASSERT_TRUE(pair.client->SendRawFramesForTesting(std::move(frames)).ok());
  // libzmq refuses the frame before buffering it and drops the connection; nothing is delivered.
  Result<Incoming> got = pair.server->Receive(300);
  EXPECT_EQ(got.status().code(), StatusCode::kTimeout) << got.status().ToString();

  // The client reconnects by itself; a normal request then gets through.
  std::atomic<bool> stop{false};
  std::thread server_thread([&] {
    while (!stop.load()) {
      Result<Incoming> request = pair.server->Receive(50);
      if (!request.ok()) continue;
      Envelope ack = NewEnvelope("server");
      ack.mutable_heartbeat_ack()->set_sequence(request->message.envelope.heartbeat().sequence());
      pair.server->Reply(*request, ack).IgnoreError();
    }
  });
  Result<Message> reply = testing::RequestWithRetries(*pair.client, Heartbeat(2), 500, 10000);
  EXPECT_TRUE(reply.ok()) << reply.status().ToString();
  stop.store(true);
  server_thread.join();
}

// Server options admitting `n` new client keys (named worker-0..worker-n-1), returned in `keys`.
ServerOptions AdmitClients(const CurveSetup& setup, int n, std::vector<KeyPair>* keys) {
  ServerOptions options = testing::SecureServerOptions(setup);
  for (int i = 0; i < n; ++i) {
    keys->push_back(GenerateKeyPair().value());
    EXPECT_TRUE(options.allow_list.Add(keys->back().public_key, "worker-" + std::to_string(i)).ok());
  }
  return options;
}

TEST(ChannelTest, ManyClientThreadsAgainstOneServer) {
  const CurveSetup setup = MakeCurveSetup();
  constexpr int kClients = 8;
  constexpr int kRequestsEach = 25;
  std::vector<KeyPair> keys;
  const ServerOptions server_options = AdmitClients(setup, kClients, &keys);
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, server_options).value();
  const std::string endpoint = server->endpoint();

  std::atomic<bool> stop{false};
  std::set<std::string> names_seen;
  std::set<std::string> routing_ids;
  int served = 0;
  std::thread server_thread([&] {
    while (!stop.load()) {
      Result<Incoming> request = server->Receive(50);
      if (!request.ok()) continue;
      names_seen.insert(request->peer.name);
      routing_ids.insert(request->peer.routing_id);
      // Echo the sequence and the authenticated name so each client can check it got its own answer.
      Envelope ack = NewEnvelope(request->peer.name);
      ack.mutable_heartbeat_ack()->set_sequence(request->message.envelope.heartbeat().sequence());
      if (server->Reply(*request, ack).ok()) ++served;
    }
  });
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::unique_ptr<Client> client = Client::Connect(endpoint, testing::SecureClientOptions(setup, keys[c])).value();
      for (int r = 0; r < kRequestsEach; ++r) {
        const uint64_t sequence = static_cast<uint64_t>(c) * 1000 + r;
        Result<Message> reply = client->Request(Heartbeat(sequence), kWaitMs);
        if (!reply.ok() || reply->envelope.heartbeat_ack().sequence() != sequence ||
            reply->envelope.sender() != "worker-" + std::to_string(c)) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  stop.store(true);
  server_thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(served, kClients * kRequestsEach);
  EXPECT_EQ(names_seen.size(), static_cast<size_t>(kClients));
  EXPECT_EQ(routing_ids.size(), static_cast<size_t>(kClients));
}

TEST(ChannelTest, ClientReconnectsAfterServerRestart) {
  const CurveSetup setup = MakeCurveSetup();
  Pair pair = SecurePair(setup, testing::SecureServerOptions(setup), testing::SecureClientOptions(setup, setup.client));
  const std::string endpoint = pair.server->endpoint();
  ExpectServes(*pair.server, *pair.client, 1);
  pair.server.reset();  // coordinator dies

  Result<Message> lost = pair.client->Request(Heartbeat(2), 200);
  EXPECT_EQ(lost.status().code(), StatusCode::kTimeout);

  // Restarted on the same port with the same keys: the client finds it without being recreated.
  pair.server = Server::Bind(endpoint, testing::SecureServerOptions(setup)).value();
  std::thread server_thread([&] {
    for (int i = 0; i < 3; ++i) {
      Result<Incoming> request = ReceiveOne(*pair.server);
      if (!request.ok()) continue;
      Envelope ack = NewEnvelope("server");
      ack.mutable_heartbeat_ack()->set_sequence(request->message.envelope.heartbeat().sequence());
      pair.server->Reply(*request, ack).IgnoreError();
      if (request->message.envelope.heartbeat().sequence() == 3) return;
    }
  });
  Result<Message> reply = pair.client->Request(Heartbeat(3), 5000);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.heartbeat_ack().sequence(), 3u);
  server_thread.join();
}

TEST(ChannelTest, SendToUnknownPeerIsUnavailable) {
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  const Status status = server->Send("no-such-peer", Heartbeat(1));
  EXPECT_TRUE(status.IsUnavailable()) << status.ToString();
}

// One envelope pushed to many peers is encoded once and arrives whole at each; a peer that is gone gets
// Unavailable in its place without failing the others.
TEST(ChannelTest, SendToEachDeliversTheSameEnvelopeToEveryPeer) {
  const CurveSetup setup = MakeCurveSetup();
  constexpr int kClients = 3;
  std::vector<KeyPair> keys;
  const ServerOptions server_options = AdmitClients(setup, kClients, &keys);
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, server_options).value();
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::string> routing_ids;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, keys[c])).value());
    ASSERT_TRUE(clients.back()->Send(Heartbeat(static_cast<uint64_t>(c))).ok());
    Result<Incoming> hello = ReceiveOne(*server);
    ASSERT_TRUE(hello.ok()) << hello.status().ToString();
    routing_ids.push_back(hello->peer.routing_id);
  }
  routing_ids.insert(routing_ids.begin() + 1, "no-such-peer");

  Envelope push = NewEnvelope("server");
  v1::RoundCommitted* committed = push.mutable_round_committed();
  committed->set_job_id("job-a");
  committed->set_round(7);
  std::string aggregate(100000, '\0');
  for (size_t i = 0; i < aggregate.size(); ++i) aggregate[i] = static_cast<char>(i * 31 + 7);
  committed->set_aggregate(aggregate);
  const std::vector<Status> sent = server->SendToEach(routing_ids, push);
  ASSERT_EQ(sent.size(), routing_ids.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    if (i == 1) {
      EXPECT_TRUE(sent[i].IsUnavailable()) << sent[i].ToString();
    } else {
      EXPECT_TRUE(sent[i].ok()) << i << ": " << sent[i].ToString();
    }
  }
  for (auto& client : clients) {
    Result<Message> got = client->Receive(kWaitMs);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->envelope.has_round_committed());
    EXPECT_EQ(got->envelope.round_committed().round(), 7u);
    EXPECT_EQ(got->envelope.round_committed().aggregate(), aggregate);
  }
}

// A chunk header with its data frame of `bytes` bytes.
Envelope ChunkOf(size_t bytes) {
  Envelope envelope = NewEnvelope("sender");
  v1::BulkChunkHeader* chunk = envelope.mutable_bulk_chunk_header();
  chunk->set_object_id("obj");
  chunk->set_num_chunks(1);
  chunk->set_size(static_cast<uint32_t>(bytes));
  chunk->set_total_size(bytes);
  chunk->set_chunk_size(static_cast<uint32_t>(bytes));
  return envelope;
}

std::vector<zmq::message_t> DataFrame(size_t bytes) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back(bytes);
  return frames;
}

TEST(ChannelTest, ServerCountsTheBytesOfEveryMessageItSendsAndReceives) {
  const CurveSetup setup = MakeCurveSetup();
  struct Counted {
    bool received;
    Envelope::BodyCase body;
    uint64_t envelope_bytes;
    uint64_t bulk_bytes;
  };
  std::vector<Counted> counted;  // the server is used by this thread only
  ServerOptions server_options = testing::SecureServerOptions(setup);
  server_options.count_traffic = [&counted](bool received, Envelope::BodyCase body, uint64_t envelope_bytes,
                                            uint64_t bulk_bytes) {
    counted.push_back({received, body, envelope_bytes, bulk_bytes});
  };
  Pair pair = SecurePair(setup, server_options, testing::SecureClientOptions(setup, setup.client));
  const Limits limits;
  const Envelope heartbeat = Heartbeat(7);
  ASSERT_TRUE(pair.client->Send(heartbeat).ok());
  Result<Incoming> in = ReceiveOne(*pair.server);
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  ASSERT_EQ(counted.size(), 1u);
  EXPECT_TRUE(counted[0].received);
  EXPECT_EQ(counted[0].body, Envelope::kHeartbeat);
  EXPECT_EQ(counted[0].envelope_bytes, EncodeControlFrame(heartbeat, 0, limits).value().size());
  EXPECT_EQ(counted[0].bulk_bytes, 0u);

  // A chunk each way: the data frame counts as bulk bytes.
  const Envelope out_chunk = ChunkOf(1000);
  ASSERT_TRUE(pair.server->Send(in->peer.routing_id, out_chunk, DataFrame(1000)).ok());
  ASSERT_TRUE(pair.client->Receive(kWaitMs).ok());
  ASSERT_EQ(counted.size(), 2u);
  EXPECT_FALSE(counted[1].received);
  EXPECT_EQ(counted[1].body, Envelope::kBulkChunkHeader);
  EXPECT_EQ(counted[1].envelope_bytes, EncodeControlFrame(out_chunk, 1, limits).value().size());
  EXPECT_EQ(counted[1].bulk_bytes, 1000u);
  ASSERT_TRUE(pair.client->Send(ChunkOf(300), DataFrame(300)).ok());
  ASSERT_TRUE(ReceiveOne(*pair.server).ok());
  ASSERT_EQ(counted.size(), 3u);
  EXPECT_TRUE(counted[2].received);
  EXPECT_EQ(counted[2].bulk_bytes, 300u);

  // A send that fails counts nothing.
  EXPECT_FALSE(pair.server->Send("no-such-peer", heartbeat).ok());
  EXPECT_EQ(counted.size(), 3u);
}

TEST(ChannelTest, MissingKeysAreRefusedAtSetup) {
  ServerOptions server_options;  // secure by default, but no keys
  EXPECT_TRUE(Server::Bind(testing::kLoopbackAny, server_options).status().IsInvalidArgument());
  ClientOptions client_options;
  client_options.keys = GenerateKeyPair().value();
  client_options.server_public_key = "not-a-key";
  const Status status = Client::Connect("tcp://127.0.0.1:1", client_options).status();
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("server's public key"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace tributary::transport
