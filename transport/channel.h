// Server (ROUTER, bind) and Client (DEALER, connect) channels carrying framed Envelopes.
//
// Security: CURVE is on unless `insecure` is set (which logs a warning every time a channel
// starts). A Server runs a ZAP handler admitting only allow-listed client keys; each received
// message carries the authenticated key and its allow-list name (PeerInfo). Envelope.sender is
// only the peer's claim: authorize on PeerInfo.public_key.
//
// Control vs bulk (heartbeats must never wait behind a transfer): bulk data moves in chunks that
// the receiver pulls with a bounded window (transport/bulk.h), one message per chunk, so on a
// shared connection a control message waits behind at most `window` chunks. There is no separate
// bulk port: the coordinator binds one Server on one endpoint, and a bulk transfer travels on the
// connection of the request it belongs to. A worker connects two Clients to that endpoint
// (docs/protocol.md): a control connection (Register, Heartbeat, pushed RoundStart/RoundCommitted)
// and a work connection carrying catch-up, uploads and every bulk transfer (the snapshots and
// aggregates it fetches, the upload payloads the coordinator pulls from it), so its heartbeats never
// share a TCP connection with bulk chunks. The Server's ROUTER socket fair-queues incoming messages
// across connections.
//
// Reconnects: a Client reconnects by itself with exponential backoff (ZMQ_RECONNECT_IVL doubling
// up to ZMQ_RECONNECT_IVL_MAX); messages sent while disconnected are queued and delivered after
// the reconnect (up to the high-water mark). ZMTP heartbeats (ZMQ_HEARTBEAT_IVL/TIMEOUT) detect a
// dead TCP connection. Requests lost in a server crash must be retried by the caller (the bulk
// fetcher does this from the first missing chunk).
//
// Threading: a channel is used by one thread at a time (ZeroMQ sockets are not thread-safe). Each
// channel owns its ZeroMQ context, so channels are independent (and each Server has its own ZAP
// handler and allow-list).
//
// Typical use (coordinator side; a worker mirrors it with Client::Connect + Send/Receive):
//   ServerOptions options;
//   options.keys = LoadKeyPair("/etc/tributary/coordinator").value();
//   options.allow_list = LoadAllowList("/etc/tributary/workers.allow").value();
//   auto server = Server::Bind("tcp://0.0.0.0:7500", options);
//   while (running) {
//     Result<Incoming> in = (*server)->Receive(100);
//     if (!in.ok()) continue;                    // Timeout, or a rejected message (already logged)
//     switch (in->message.envelope.body_case()) { ... (*server)->Reply(*in, reply); }
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "base/status.h"
#include "transport/message.h"
#include "transport/security.h"

namespace tributary::transport {

// Socket settings shared by both ends.
struct SocketOptions {
  Limits limits;
  int linger_ms = 0;                // pending messages are dropped at close: a closed channel never blocks
  int send_high_water_mark = 1000;  // messages queued per peer before sends block (then time out)
  int receive_high_water_mark = 1000;
  int send_timeout_ms = 5000;        // a send that cannot be queued within this fails with Timeout
  int heartbeat_interval_ms = 2000;  // ZMTP PING; 0 disables
  int heartbeat_timeout_ms = 10000;  // drop a connection silent this long
};

// The authenticated identity of the sender of one message.
struct PeerInfo {
  std::string routing_id;  // ROUTER routing id (binary); pass to Server::Send to answer
  std::string public_key;  // Z85 CURVE key admitted by the ZAP handler; empty when insecure
  std::string name;        // allow-list name of the key; empty when none
  std::string address;     // remote IP address, when known
  // "worker-1 (key rq:rC...)" or "127.0.0.1 (insecure)", used in logs and errors.
  std::string Describe() const;
};

struct Incoming {
  PeerInfo peer;
  Message message;
};

struct ServerOptions {
  std::string name = "server";  // used in logs
  bool insecure = false;        // no CURVE, no allow-list: for tests and trusted networks only
  KeyPair keys;                 // the server's CURVE key pair (required unless insecure)
  AllowList allow_list;         // admitted client keys (required unless insecure)
  SocketOptions socket;
  bool reply_errors = true;  // answer a rejected message with an Error envelope
  // Called for every message the server sent or received (after validation) with its body type, the
  // bytes of frame 0 (the 12-byte header and the envelope) and of its bulk frames (chunk data); not
  // ZMTP/CURVE overhead. Runs on the thread using the server, so it must be cheap. Unset: not counted.
  std::function<void(bool received, Envelope::BodyCase body, uint64_t envelope_bytes, uint64_t bulk_bytes)>
      count_traffic;
};

class Server {
 public:
  // Binds a ROUTER to `endpoint` ("tcp://127.0.0.1:*" picks a free port; see endpoint()).
  static Result<std::unique_ptr<Server>> Bind(const std::string& endpoint, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound endpoint with the actual port (ZMQ_LAST_ENDPOINT).
  const std::string& endpoint() const { return endpoint_; }
  const std::string& public_key() const { return options_.keys.public_key; }

  // Waits up to timeout_ms (0: no wait, -1: forever) for one message. Timeout when none came. A
  // rejected message (malformed, oversized, wrong version or type) is consumed and its error is
  // returned naming the peer; the server stays usable.
  Result<Incoming> Receive(int timeout_ms);
  // Sends to the peer with the given routing id. Unavailable if that peer is not connected.
  Status Send(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk = {});
  // Sends `reply` to the sender of `request`, with in_reply_to set to the request's message_id.
  Status Reply(const Incoming& request, Envelope reply, std::vector<zmq::message_t> bulk = {});

  // Replaces the allow-list (e.g. after the operator added a worker's key); new connections only.
  // FailedPrecondition in insecure mode.
  Status SetAllowList(AllowList allow_list);
  // Keys the ZAP handler refused so far (empty when insecure).
  std::vector<std::string> RefusedKeys() const;
  // Messages refused by validation (DecodeFrames) so far.
  uint64_t rejected_messages() const { return rejected_messages_; }
  // Connections whose handshake failed (no CURVE, wrong server key, refused key), as reported by
  // the socket monitor; counted (and logged) while Receive runs.
  uint64_t handshake_failures() const { return handshake_failures_; }

 private:
  Server() = default;
  void DrainMonitor();
  // Encodes and sends `envelope` (+ bulk frames) to `routing_id`, counting it (count_traffic).
  Status SendCounted(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk,
                     const std::string& peer);

  ServerOptions options_;
  std::string endpoint_;
  zmq::context_t context_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;  // PAIR receiving handshake events of socket_
  uint64_t rejected_messages_ = 0;
  uint64_t handshake_failures_ = 0;
  std::chrono::steady_clock::time_point last_handshake_warning_;
};

struct ClientOptions {
  std::string name = "client";  // used in logs
  bool insecure = false;
  KeyPair keys;                   // this client's CURVE key pair (required unless insecure)
  std::string server_public_key;  // Z85 key of the server (required unless insecure)
  SocketOptions socket;
  int reconnect_interval_ms = 100;       // first reconnect delay
  int reconnect_interval_max_ms = 5000;  // backoff doubles up to this
};

class Client {
 public:
  // Connects a DEALER to `endpoint`. Returns at once: the connection (and its CURVE handshake)
  // happens in the background and is retried forever with backoff.
  static Result<std::unique_ptr<Client>> Connect(const std::string& endpoint, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  Status Send(const Envelope& envelope, std::vector<zmq::message_t> bulk = {});
  // Waits up to timeout_ms for one message from the server (see Server::Receive).
  Result<Message> Receive(int timeout_ms);
  // Sends `request` and waits for the message answering it (in_reply_to == its message_id),
  // dropping other messages. For request/reply peers (the CLI), not for daemons that also
  // receive pushed messages. An Error reply becomes its Status.
  Result<Message> Request(const Envelope& request, int timeout_ms);

  // Sends arbitrary frames, bypassing the framing (tests of the server's validation).
  Status SendRawFramesForTesting(std::vector<zmq::message_t> frames);

  // Handshakes the server refused so far (our key not allow-listed, mechanism mismatch).
  uint64_t handshake_failures() const { return handshake_failures_; }

 private:
  Client() = default;
  // (Re)creates, configures and connects socket_ and its monitor.
  Status OpenSocket();
  // Drains monitor events; rebuilds the socket when a rebuild is due.
  void ServiceMonitor();

  ClientOptions options_;
  std::string endpoint_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  uint64_t sockets_opened_ = 0;
  uint64_t handshake_failures_ = 0;
  // libzmq gives up on a connection whose handshake the server refused (ZAP 400 is a protocol
  // error, which stops reconnection), so the Client rebuilds its socket itself, with backoff: a
  // worker whose key is added to the allow-list later comes back without a restart.
  std::optional<std::chrono::steady_clock::time_point> rebuild_at_;
  int rebuild_backoff_ms_ = 0;
  std::chrono::steady_clock::time_point last_refusal_warning_;
};

}  // namespace tributary::transport
