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
// the reconnect (up to the high-water mark). A Client's ZMTP heartbeats (ZMQ_HEARTBEAT_IVL/TIMEOUT)
// detect a dead TCP connection; the Server sends none (libzmq 4.3.4 aborts on a heartbeat timer that
// fires on a connection whose input was stopped and then failed, docs/security.md "Hostile and slow
// peers") and relies on TCP keepalive instead. Requests lost in a server crash must be retried by
// the caller (the bulk fetcher does this from the first missing chunk).
//
// Slow peers: a Server never waits to send. A message for a peer whose queue is full (its send
// high-water mark) is dropped and counted for that peer; a peer that keeps not reading is reported
// by TakeSlowPeers() so the caller can treat it as gone.
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
#include <map>
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
  int send_high_water_mark = 1000;  // messages queued per peer; then a Client's send waits, a Server's drops
  int receive_high_water_mark = 1000;
  int send_timeout_ms = 5000;        // Client only: a send that cannot be queued within this fails with Timeout
  int heartbeat_interval_ms = 2000;  // Client only (see ServerOptions::zmtp_heartbeats): ZMTP PING; 0 disables
  int heartbeat_timeout_ms = 10000;  // drop a connection silent this long
  // TCP keepalive (both ends): a peer that vanished without closing is detected after about
  // idle + interval * count seconds. 0 leaves the system default.
  int tcp_keepalive_idle_s = 30;
  int tcp_keepalive_interval_s = 10;
  int tcp_keepalive_count = 3;
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

// A peer whose messages the Server kept dropping because its queue stayed full (it does not read).
struct SlowPeer {
  std::string routing_id;
  std::string describe;         // the peer as logs name it
  uint64_t dropped_in_row = 0;  // messages dropped since the last one delivered to it
  uint64_t dropped_total = 0;   // messages dropped for it while connected
};

struct ServerOptions {
  std::string name = "server";  // used in logs
  bool insecure = false;        // no CURVE, no allow-list: for tests and trusted networks only
  KeyPair keys;                 // the server's CURVE key pair (required unless insecure)
  AllowList allow_list;         // admitted client keys (required unless insecure)
  SocketOptions socket;
  bool reply_errors = true;  // answer a rejected message with an Error envelope
  // ZMTP heartbeats from the server side. Off: libzmq 4.3.4's heartbeat timer asserts (!_io_error)
  // on a connection whose input was stopped by a full receive queue and then failed; TCP keepalive
  // detects dead peers instead. On only to reproduce that abort (tests/transport/hostile_peers_test.cc).
  bool zmtp_heartbeats = false;
  // A peer is reported by TakeSlowPeers() after this many messages in a row were dropped for it.
  uint64_t slow_peer_drops = 100;
  // At most one warning per peer per interval for rejected messages, with the count since the last.
  int reject_log_interval_ms = 10000;
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
  // Sends to the peer with the given routing id without waiting. Unavailable if that peer is not
  // connected; Timeout at once if its queue is full (the message is dropped and counted).
  Status Send(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk = {});
  // Send of one envelope to each of `routing_ids`, encoded once (the peers' messages share its bytes): a push
  // to thousands of peers costs one encoding. Returns each send's status, in order; an envelope that cannot be
  // encoded fails every send.
  std::vector<Status> SendToEach(const std::vector<std::string>& routing_ids, const Envelope& envelope);
  // Sends `reply` to the sender of `request`, with in_reply_to set to the request's message_id.
  Status Reply(const Incoming& request, Envelope reply, std::vector<zmq::message_t> bulk = {});

  // Replaces the allow-list (e.g. after the operator added a worker's key); new connections only.
  // FailedPrecondition in insecure mode.
  Status SetAllowList(AllowList allow_list);
  // Keys the ZAP handler refused so far (empty when insecure).
  std::vector<std::string> RefusedKeys() const;
  // Messages refused by validation (DecodeFrames) so far.
  uint64_t rejected_messages() const { return rejected_messages_; }
  // Messages dropped because the peer's queue was full: for one peer while it is connected (0 once a
  // send found it gone), and in total.
  uint64_t dropped_messages(const std::string& routing_id) const;
  uint64_t dropped_messages() const { return dropped_messages_; }
  // Peers that became slow (options.slow_peer_drops drops in a row) since the last call. A peer is
  // reported again only after as many messages in a row were delivered to it.
  std::vector<SlowPeer> TakeSlowPeers();
  // Connections whose handshake failed (no CURVE, wrong server key, refused key), as reported by
  // the socket monitor; counted (and logged) while Receive runs.
  uint64_t handshake_failures() const { return handshake_failures_; }

 private:
  Server() = default;
  void DrainMonitor();
  // How logs name the peer of `routing_id` (its last Describe, or a prefix of the id).
  std::string PeerName(const std::string& routing_id) const;
  // Encodes and sends `envelope` (+ bulk frames) to `routing_id`, counting it (count_traffic).
  Status SendCounted(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk,
                     const std::string& peer);
  // Updates the per-peer drop accounting after a send attempt.
  void NoteSendResult(const std::string& routing_id, const std::string& peer, const Status& status);
  // Remembers how logs name the peer with this routing id (bounded), for messages sent to it.
  void RememberPeer(const std::string& routing_id, const std::string& describe);
  // Logs a rejected message, at most once per peer per options.reject_log_interval_ms.
  void LogRejected(const PeerInfo& peer, const Status& status);

  struct DropState {
    std::string describe;
    uint64_t in_row = 0;            // dropped since the last delivered message
    uint64_t total = 0;             // dropped while connected
    uint64_t delivered_in_row = 0;  // delivered since the last drop
    bool reported = false;
  };
  struct RejectLogState {
    std::chrono::steady_clock::time_point last_line;
    uint64_t since_last_line = 0;
  };

  ServerOptions options_;
  std::string endpoint_;
  zmq::context_t context_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;  // PAIR receiving handshake events of socket_
  uint64_t rejected_messages_ = 0;
  uint64_t dropped_messages_ = 0;
  uint64_t handshake_failures_ = 0;
  std::map<std::string, DropState> drops_;  // by routing id; only peers that had a message dropped
  std::vector<SlowPeer> new_slow_peers_;
  std::map<std::string, std::string> peer_names_;     // routing id -> PeerInfo::Describe() (bounded)
  std::map<std::string, RejectLogState> reject_log_;  // by peer identity (key, or address when insecure)
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
