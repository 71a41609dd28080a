#include "transport/channel.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>
#include <zmq.h>

namespace tributary::transport {
namespace {

constexpr const char* kZapDomain = "tributary";
constexpr int kHandshakeLogIntervalS = 30;
constexpr size_t kMaxTrackedPeers = 4096;  // per-peer drop and log-throttle entries kept at most

std::string ZmqError(const zmq::error_t& e) {
  return e.what();
}

// `heartbeats` and `send_timeout_ms` differ between the ends: a Server neither sends ZMTP heartbeats
// nor waits to send (see channel.h).
Status ApplySocketOptions(zmq::socket_t& socket, const SocketOptions& options, bool heartbeats, int send_timeout_ms) {
  socket.set(zmq::sockopt::linger, options.linger_ms);
  socket.set(zmq::sockopt::sndhwm, options.send_high_water_mark);
  socket.set(zmq::sockopt::rcvhwm, options.receive_high_water_mark);
  socket.set(zmq::sockopt::sndtimeo, send_timeout_ms);
  socket.set(zmq::sockopt::maxmsgsize, options.limits.SocketMaxFrameBytes());
  if (options.tcp_keepalive_idle_s > 0) {
    socket.set(zmq::sockopt::tcp_keepalive, 1);
    socket.set(zmq::sockopt::tcp_keepalive_idle, options.tcp_keepalive_idle_s);
    if (options.tcp_keepalive_interval_s > 0)
      socket.set(zmq::sockopt::tcp_keepalive_intvl, options.tcp_keepalive_interval_s);
    if (options.tcp_keepalive_count > 0) socket.set(zmq::sockopt::tcp_keepalive_cnt, options.tcp_keepalive_count);
  }
  if (heartbeats && options.heartbeat_interval_ms > 0) {
    socket.set(zmq::sockopt::heartbeat_ivl, options.heartbeat_interval_ms);
    socket.set(zmq::sockopt::heartbeat_timeout, options.heartbeat_timeout_ms);
    socket.set(zmq::sockopt::heartbeat_ttl, options.heartbeat_timeout_ms);
  }
  return Status::OK();
}

// Receives every part of one multipart message, keeping at most `max_frames` (the rest is read and
// dropped so the socket stays in sync). Sets *truncated when parts were dropped.
std::vector<zmq::message_t> ReceiveParts(zmq::socket_t& socket, size_t max_frames, bool* truncated) {
  std::vector<zmq::message_t> parts;
  *truncated = false;
  while (true) {
    zmq::message_t part;
    if (!socket.recv(part, zmq::recv_flags::dontwait)) break;
    const bool more = part.more();
    if (parts.size() < max_frames) {
      parts.push_back(std::move(part));
    } else {
      *truncated = true;
    }
    if (!more) break;
  }
  return parts;
}

std::string Property(zmq::message_t& message, const char* name) {
  const char* value = zmq_msg_gets(message.handle(), name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string HexPrefix(const std::string& bytes, size_t max_bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max_bytes; ++i) {
    const auto byte = static_cast<unsigned char>(bytes[i]);
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
  return out;
}

// Sends frames (envelope first) as one multipart message.
Status SendFrames(zmq::socket_t& socket, const std::string* routing_id, zmq::message_t head,
                  std::vector<zmq::message_t> bulk, const std::string& peer) {
  try {
    if (routing_id != nullptr) {
      if (!socket.send(zmq::buffer(*routing_id), zmq::send_flags::sndmore)) {
        return Status::Timeout("sending to " + peer + ": send queue full (peer not reading), message dropped");
      }
    }
    if (!socket.send(head, bulk.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore)) {
      return Status::Timeout("sending to " + peer + ": send queue full (peer not reading)");
    }
    for (size_t i = 0; i < bulk.size(); ++i) {
      socket.send(bulk[i], i + 1 < bulk.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return Status::Unavailable("sending to " + peer + ": peer is not connected");
    return Status::IOError("sending to " + peer + ": " + ZmqError(e));
  }
  return Status::OK();
}

constexpr int kMonitoredEvents = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;

// Starts a socket monitor for handshake events and returns the PAIR socket receiving them (an
// empty socket if the monitor could not start: monitoring is diagnostics, never fatal).
zmq::socket_t StartMonitor(zmq::context_t& context, zmq::socket_t& target, const void* owner, uint64_t generation) {
  const std::string endpoint = "inproc://tributary-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(owner)) +
                               "-" + std::to_string(generation);
  if (zmq_socket_monitor(target.handle(), endpoint.c_str(), kMonitoredEvents) != 0) return zmq::socket_t();
  zmq::socket_t monitor(context, zmq::socket_type::pair);
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect(endpoint);
  return monitor;
}

void StopMonitor(zmq::socket_t& target, zmq::socket_t& monitor) {
  if (monitor) {
    zmq_socket_monitor(target.handle(), nullptr, 0);
    monitor.close();
  }
}

struct MonitorEvent {
  uint16_t id = 0;
  uint32_t value = 0;
};

std::vector<MonitorEvent> DrainMonitorEvents(zmq::socket_t& monitor) {
  std::vector<MonitorEvent> events;
  if (!monitor) return events;
  while (true) {
    zmq::message_t event;
    zmq::message_t address;
    if (!monitor.recv(event, zmq::recv_flags::dontwait)) break;
    if (event.more()) (void)monitor.recv(address, zmq::recv_flags::dontwait);
    if (event.size() < 6) continue;
    MonitorEvent parsed;
    std::memcpy(&parsed.id, event.data(), sizeof(parsed.id));
    std::memcpy(&parsed.value, static_cast<const char*>(event.data()) + 2, sizeof(parsed.value));
    events.push_back(parsed);
  }
  return events;
}

std::string DescribeHandshakeFailure(const MonitorEvent& event) {
  if (event.id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    return "authentication refused (key not in the server's allow-list?)";
  }
  if (event.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
    return "security mechanism mismatch (one side without CURVE / in insecure mode)";
  }
  if (event.value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
    return "cryptographic error (a client using the wrong server public key?)";
  }
  char hex[16];
  std::snprintf(hex, sizeof(hex), "0x%08x", event.value);
  return std::string("protocol error ") + hex;
}

uint64_t FrameBytes(const std::vector<zmq::message_t>& frames, size_t from) {
  uint64_t bytes = 0;
  for (size_t i = from; i < frames.size(); ++i) bytes += frames[i].size();
  return bytes;
}

// Poll timeout in ms until `deadline` (-1 when timeout_ms < 0: wait forever).
long MillisUntil(std::chrono::steady_clock::time_point deadline, int timeout_ms) {
  if (timeout_ms < 0) return -1;
  return std::max<long>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
}

}  // namespace

std::string PeerInfo::Describe() const {
  std::string out;
  if (!name.empty()) {
    out = name + " (key " + public_key.substr(0, 8) + "...)";
  } else if (!public_key.empty()) {
    out = "key " + public_key.substr(0, 8) + "...";
  } else {
    out = (address.empty() ? "peer " + HexPrefix(routing_id, 5) : address) + " (insecure)";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Server>> Server::Bind(const std::string& endpoint, ServerOptions options) {
  std::unique_ptr<Server> server(new Server());
  server->options_ = std::move(options);
  const ServerOptions& opts = server->options_;
  if (opts.insecure) {
    spdlog::warn("{}: INSECURE mode on {}: CURVE is off, any peer can connect and read the traffic", opts.name,
                 endpoint);
  } else {
    if (!IsValidZ85Key(opts.keys.secret_key) || !IsValidZ85Key(opts.keys.public_key)) {
      return Status::InvalidArgument(opts.name + ": a CURVE server key pair is required (or set insecure mode)");
    }
    if (opts.allow_list.size() == 0) {
      spdlog::warn("{}: the allow-list is empty: every client will be refused", opts.name);
    }
    TRIB_ASSIGN_OR_RETURN(server->zap_, ZapHandler::Start(server->context_, opts.allow_list, opts.name));
  }
  try {
    server->socket_ = zmq::socket_t(server->context_, zmq::socket_type::router);
    TRIB_RETURN_IF_ERROR(ApplySocketOptions(server->socket_, opts.socket, opts.zmtp_heartbeats, 0));
    server->socket_.set(zmq::sockopt::router_mandatory, 1);
    if (!opts.insecure) {
      server->socket_.set(zmq::sockopt::zap_domain, kZapDomain);
      server->socket_.set(zmq::sockopt::curve_server, 1);
      server->socket_.set(zmq::sockopt::curve_secretkey, opts.keys.secret_key);
    }
    // Handshake failures never reach the application (a client without CURVE or with the wrong
    // server key): a monitor makes them visible in the log.
    server->monitor_ = StartMonitor(server->context_, server->socket_, server.get(), 0);
    server->socket_.bind(endpoint);
    server->endpoint_ = server->socket_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::IOError(opts.name + ": cannot bind " + endpoint + ": " + ZmqError(e));
  }
  spdlog::info("{}: listening on {} ({})", opts.name, server->endpoint_, opts.insecure ? "insecure" : "CURVE");
  return server;
}

Server::~Server() {
  StopMonitor(socket_, monitor_);
  socket_.close();
  zap_.reset();
  context_.close();
}

void Server::DrainMonitor() {
  for (const MonitorEvent& event : DrainMonitorEvents(monitor_)) {
    if (event.id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) continue;
    ++handshake_failures_;
    // A misconfigured peer retries forever: warn at most every kHandshakeLogIntervalS seconds.
    const std::string why = DescribeHandshakeFailure(event);
    const auto now = std::chrono::steady_clock::now();
    if (handshake_failures_ == 1 || now - last_handshake_warning_ >= std::chrono::seconds(kHandshakeLogIntervalS)) {
      spdlog::warn("{}: refused a connection on {}: handshake failed: {} ({} handshake failures so far)", options_.name,
                   endpoint_, why, handshake_failures_);
      last_handshake_warning_ = now;
    } else {
      spdlog::debug("{}: refused a connection on {}: handshake failed: {}", options_.name, endpoint_, why);
    }
  }
}

Result<Incoming> Server::Receive(int timeout_ms) {
  Incoming incoming;
  std::vector<zmq::message_t> parts;
  bool truncated = false;
  try {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
      const size_t count = monitor_ ? 2 : 1;
      zmq::poll(items, count, std::chrono::milliseconds(MillisUntil(deadline, timeout_ms)));
      if (count == 2 && (items[1].revents & ZMQ_POLLIN) != 0) DrainMonitor();
      if ((items[0].revents & ZMQ_POLLIN) != 0) break;
      if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline) {
        return Status::Timeout(options_.name + ": no message within " + std::to_string(timeout_ms) + " ms");
      }
    }
    // routing id + frame 0 + bulk frames; one more to detect "too many".
    parts = ReceiveParts(socket_, options_.socket.limits.max_bulk_frames + 3, &truncated);
  } catch (const zmq::error_t& e) {
    return Status::IOError(options_.name + ": receive failed: " + ZmqError(e));
  }
  if (parts.empty()) return Status::Timeout(options_.name + ": message vanished before it was read");
  incoming.peer.routing_id = parts[0].to_string();
  if (parts.size() > 1) {
    incoming.peer.public_key = Property(parts[1], "User-Id");
    incoming.peer.address = Property(parts[1], "Peer-Address");
    if (zap_ != nullptr) incoming.peer.name = zap_->NameOf(incoming.peer.public_key);
  }
  const std::string peer = incoming.peer.Describe();
  RememberPeer(incoming.peer.routing_id, peer);
  std::vector<zmq::message_t> frames;
  for (size_t i = 1; i < parts.size(); ++i) frames.push_back(std::move(parts[i]));

  const uint64_t head_bytes = frames.empty() ? 0 : frames[0].size();  // before DecodeFrames consumes the frames
  Status status;
  uint64_t rejected_id = 0;
  if (truncated) {
    status = Status::InvalidArgument("peer '" + peer + "': message has more frames than the limit of " +
                                     std::to_string(options_.socket.limits.max_bulk_frames + 1));
  } else {
    status = DecodeFrames(frames, options_.socket.limits, Direction::kToServer, peer, &incoming.message, &rejected_id);
  }
  if (!status.ok()) {
    ++rejected_messages_;
    LogRejected(incoming.peer, status);
    if (options_.reply_errors) {
      SendCounted(incoming.peer.routing_id, ErrorEnvelope(options_.name, rejected_id, status), {}, peer).IgnoreError();
    }
    return status;
  }
  if (options_.count_traffic) {
    options_.count_traffic(true, incoming.message.envelope.body_case(), head_bytes,
                           FrameBytes(incoming.message.bulk, 0));
  }
  return incoming;
}

Status Server::SendCounted(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk,
                           const std::string& peer) {
  TRIB_ASSIGN_OR_RETURN(zmq::message_t head, EncodeControlFrame(envelope, bulk.size(), options_.socket.limits));
  const uint64_t head_bytes = head.size();
  const uint64_t bulk_bytes = FrameBytes(bulk, 0);
  Status sent = SendFrames(socket_, &routing_id, std::move(head), std::move(bulk), peer);
  NoteSendResult(routing_id, peer, sent);
  TRIB_RETURN_IF_ERROR(sent);
  if (options_.count_traffic) options_.count_traffic(false, envelope.body_case(), head_bytes, bulk_bytes);
  return Status::OK();
}

std::vector<Status> Server::SendToEach(const std::vector<std::string>& routing_ids, const Envelope& envelope) {
  auto head = EncodeControlFrame(envelope, 0, options_.socket.limits);
  if (!head.ok()) return std::vector<Status>(routing_ids.size(), head.status());
  std::vector<Status> out;
  out.reserve(routing_ids.size());
  uint64_t sent_bytes = 0;
  for (const std::string& routing_id : routing_ids) {
    zmq::message_t shared;
    shared.copy(*head);  // zmq_msg_copy: the bytes are shared, not copied
    const std::string peer = PeerName(routing_id);
    Status sent = SendFrames(socket_, &routing_id, std::move(shared), {}, peer);
    NoteSendResult(routing_id, peer, sent);
    if (sent.ok()) sent_bytes += head->size();
    out.push_back(std::move(sent));
  }
  if (options_.count_traffic && sent_bytes > 0) options_.count_traffic(false, envelope.body_case(), sent_bytes, 0);
  return out;
}

void Server::NoteSendResult(const std::string& routing_id, const std::string& peer, const Status& status) {
  if (status.code() == StatusCode::kUnavailable) peer_names_.erase(routing_id);  // disconnected
  if (status.code() != StatusCode::kTimeout) {
    auto it = drops_.find(routing_id);
    if (it == drops_.end()) return;
    if (!status.ok()) {
      drops_.erase(it);  // gone (or unsendable): forget it
      return;
    }
    // Delivered. A peer reported slow is reported again only after it read steadily for a while.
    it->second.in_row = 0;
    if (++it->second.delivered_in_row >= options_.slow_peer_drops) it->second.reported = false;
    return;
  }
  ++dropped_messages_;
  // Fuzzing peers come and go by the thousand: keep the table bounded, forgetting arbitrary peers.
  if (drops_.size() >= kMaxTrackedPeers && drops_.count(routing_id) == 0) drops_.erase(drops_.begin());
  DropState& state = drops_[routing_id];
  state.describe = peer;
  ++state.in_row;
  ++state.total;
  state.delivered_in_row = 0;
  if (state.in_row == 1)
    spdlog::debug("{}: {}: send queue full, dropping messages until it reads", options_.name, peer);
  if (state.in_row >= options_.slow_peer_drops && !state.reported) {
    state.reported = true;
    spdlog::warn("{}: {} is not reading: {} messages dropped in a row", options_.name, peer, state.in_row);
    new_slow_peers_.push_back(SlowPeer{routing_id, peer, state.in_row, state.total});
  }
}

uint64_t Server::dropped_messages(const std::string& routing_id) const {
  auto it = drops_.find(routing_id);
  return it == drops_.end() ? 0 : it->second.total;
}

std::vector<SlowPeer> Server::TakeSlowPeers() {
  std::vector<SlowPeer> out;
  out.swap(new_slow_peers_);
  return out;
}

void Server::LogRejected(const PeerInfo& peer, const Status& status) {
  // One peer flooding garbage must not fill the disk: one line per peer per interval, with a count.
  const std::string key = !peer.public_key.empty() ? peer.public_key
                          : !peer.address.empty()  ? peer.address
                                                   : peer.routing_id;
  const auto now = std::chrono::steady_clock::now();
  const auto interval = std::chrono::milliseconds(options_.reject_log_interval_ms);
  auto it = reject_log_.find(key);
  if (it == reject_log_.end()) {
    if (reject_log_.size() >= kMaxTrackedPeers) {
      std::erase_if(reject_log_, [&](const auto& entry) { return now - entry.second.last_line >= interval; });
    }
    if (reject_log_.size() >= kMaxTrackedPeers) {  // many distinct peers at once: throttle them as one
      it = reject_log_.try_emplace("(other peers)", RejectLogState{now - interval, 0}).first;
    } else {
      it = reject_log_.emplace(key, RejectLogState{now - interval, 0}).first;
    }
  }
  RejectLogState& state = it->second;
  if (now - state.last_line < interval) {
    ++state.since_last_line;
    spdlog::debug("{}: rejected a message: {}", options_.name, status.message());
    return;
  }
  if (state.since_last_line == 0) {
    spdlog::warn("{}: rejected a message: {}", options_.name, status.message());
  } else {
    spdlog::warn("{}: rejected a message: {} (and {} more from this peer since the last such line; {} in all)",
                 options_.name, status.message(), state.since_last_line, rejected_messages_);
  }
  state.last_line = now;
  state.since_last_line = 0;
}

std::string Server::PeerName(const std::string& routing_id) const {
  auto known = peer_names_.find(routing_id);
  return known != peer_names_.end() ? known->second : "peer " + HexPrefix(routing_id, 5);
}

Status Server::Send(const std::string& routing_id, const Envelope& envelope, std::vector<zmq::message_t> bulk) {
  return SendCounted(routing_id, envelope, std::move(bulk), PeerName(routing_id));
}

void Server::RememberPeer(const std::string& routing_id, const std::string& describe) {
  auto it = peer_names_.find(routing_id);
  if (it != peer_names_.end()) {
    if (it->second != describe) it->second = describe;
    return;
  }
  if (peer_names_.size() >= kMaxTrackedPeers) peer_names_.erase(peer_names_.begin());
  peer_names_.emplace(routing_id, describe);
}

Status Server::Reply(const Incoming& request, Envelope reply, std::vector<zmq::message_t> bulk) {
  reply.set_in_reply_to(request.message.envelope.message_id());
  return SendCounted(request.peer.routing_id, reply, std::move(bulk), request.peer.Describe());
}

Status Server::SetAllowList(AllowList allow_list) {
  if (zap_ == nullptr) return Status::FailedPrecondition(options_.name + ": insecure mode has no allow-list");
  spdlog::info("{}: allow-list replaced ({} keys)", options_.name, allow_list.size());
  zap_->SetAllowList(std::move(allow_list));
  return Status::OK();
}

std::vector<std::string> Server::RefusedKeys() const {
  return zap_ == nullptr ? std::vector<std::string>() : zap_->RefusedKeys();
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Client>> Client::Connect(const std::string& endpoint, ClientOptions options) {
  std::unique_ptr<Client> client(new Client());
  client->options_ = std::move(options);
  client->endpoint_ = endpoint;
  const ClientOptions& opts = client->options_;
  if (opts.insecure) {
    spdlog::warn("{}: INSECURE mode to {}: CURVE is off, traffic is neither authenticated nor encrypted", opts.name,
                 endpoint);
  } else {
    if (!IsValidZ85Key(opts.keys.secret_key) || !IsValidZ85Key(opts.keys.public_key)) {
      return Status::InvalidArgument(opts.name + ": a CURVE client key pair is required (or set insecure mode)");
    }
    if (!IsValidZ85Key(opts.server_public_key)) {
      return Status::InvalidArgument(opts.name + ": the server's public key for " + endpoint +
                                     " is missing or not a 40-character Z85 key");
    }
  }
  TRIB_RETURN_IF_ERROR(client->OpenSocket());
  return client;
}

Status Client::OpenSocket() {
  const ClientOptions& opts = options_;
  try {
    StopMonitor(socket_, monitor_);
    socket_.close();
    socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
    TRIB_RETURN_IF_ERROR(ApplySocketOptions(socket_, opts.socket, /*heartbeats=*/true, opts.socket.send_timeout_ms));
    socket_.set(zmq::sockopt::reconnect_ivl, opts.reconnect_interval_ms);
    socket_.set(zmq::sockopt::reconnect_ivl_max, opts.reconnect_interval_max_ms);
    if (!opts.insecure) {
      socket_.set(zmq::sockopt::curve_serverkey, opts.server_public_key);
      socket_.set(zmq::sockopt::curve_publickey, opts.keys.public_key);
      socket_.set(zmq::sockopt::curve_secretkey, opts.keys.secret_key);
    }
    monitor_ = StartMonitor(context_, socket_, this, sockets_opened_++);
    socket_.connect(endpoint_);
  } catch (const zmq::error_t& e) {
    return Status::IOError(opts.name + ": cannot connect to " + endpoint_ + ": " + ZmqError(e));
  }
  return Status::OK();
}

void Client::ServiceMonitor() {
  for (const MonitorEvent& event : DrainMonitorEvents(monitor_)) {
    if (event.id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      rebuild_backoff_ms_ = 0;
      continue;
    }
    ++handshake_failures_;
    const auto now = std::chrono::steady_clock::now();
    if (handshake_failures_ == 1 || now - last_refusal_warning_ >= std::chrono::seconds(kHandshakeLogIntervalS)) {
      spdlog::warn("{}: {} refused the connection: {}{}; retrying with backoff", options_.name, endpoint_,
                   DescribeHandshakeFailure(event),
                   options_.insecure ? "" : " (our public key: " + options_.keys.public_key + ")");
      last_refusal_warning_ = now;
    }
    // Only an authentication refusal stops libzmq's own reconnects; schedule a rebuild for it.
    if (event.id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && !rebuild_at_) {
      rebuild_backoff_ms_ = rebuild_backoff_ms_ == 0
                                ? options_.reconnect_interval_ms
                                : std::min(rebuild_backoff_ms_ * 2, options_.reconnect_interval_max_ms);
      rebuild_at_ = now + std::chrono::milliseconds(rebuild_backoff_ms_);
    }
  }
  if (rebuild_at_ && std::chrono::steady_clock::now() >= *rebuild_at_) {
    rebuild_at_.reset();
    Status status = OpenSocket();
    if (!status.ok()) spdlog::warn("{}: {}", options_.name, status.message());
  }
}

Client::~Client() {
  StopMonitor(socket_, monitor_);
  socket_.close();
  context_.close();
}

Status Client::Send(const Envelope& envelope, std::vector<zmq::message_t> bulk) {
  ServiceMonitor();
  TRIB_ASSIGN_OR_RETURN(zmq::message_t head, EncodeControlFrame(envelope, bulk.size(), options_.socket.limits));
  return SendFrames(socket_, nullptr, std::move(head), std::move(bulk), "server " + endpoint_);
}

Result<Message> Client::Receive(int timeout_ms) {
  std::vector<zmq::message_t> frames;
  bool truncated = false;
  try {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      ServiceMonitor();
      zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
      const size_t count = monitor_ ? 2 : 1;
      long wait_ms = MillisUntil(deadline, timeout_ms);
      if (rebuild_at_) {  // wake up in time to rebuild the socket
        const long until_rebuild = MillisUntil(*rebuild_at_, 0);
        wait_ms = wait_ms < 0 ? until_rebuild : std::min(wait_ms, until_rebuild);
      }
      zmq::poll(items, count, std::chrono::milliseconds(wait_ms));
      if ((items[0].revents & ZMQ_POLLIN) != 0) break;
      if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline) {
        return Status::Timeout(options_.name + ": no message from " + endpoint_ + " within " +
                               std::to_string(timeout_ms) + " ms");
      }
    }
    frames = ReceiveParts(socket_, options_.socket.limits.max_bulk_frames + 2, &truncated);
  } catch (const zmq::error_t& e) {
    return Status::IOError(options_.name + ": receive from " + endpoint_ + " failed: " + ZmqError(e));
  }
  const std::string peer = "server " + endpoint_;
  if (truncated) {
    return Status::InvalidArgument("peer '" + peer + "': message has more frames than the limit of " +
                                   std::to_string(options_.socket.limits.max_bulk_frames + 1));
  }
  Message message;
  TRIB_RETURN_IF_ERROR(DecodeFrames(frames, options_.socket.limits, Direction::kToClient, peer, &message));
  return message;
}

Result<Message> Client::Request(const Envelope& request, int timeout_ms) {
  TRIB_RETURN_IF_ERROR(Send(request));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Timeout(options_.name + ": no reply to '" + BodyName(request.body_case()) + "' from " + endpoint_ +
                             " within " + std::to_string(timeout_ms) + " ms");
    }
    Result<Message> reply = Receive(static_cast<int>(left.count()));
    if (!reply.ok()) {
      if (reply.status().code() == StatusCode::kTimeout) continue;
      return reply.status();
    }
    const Envelope& envelope = reply->envelope;
    if (envelope.in_reply_to() != request.message_id()) {
      // Unsolicited or for an earlier (timed out) request; an Error with no request id is a
      // rejection of something we sent and is reported.
      if (envelope.body_case() == Envelope::kError && envelope.in_reply_to() == 0) {
        return StatusFromError(envelope.error(), "server " + endpoint_);
      }
      spdlog::debug("{}: dropping '{}' (in_reply_to {}) while waiting for a reply to {}", options_.name,
                    BodyName(envelope.body_case()), envelope.in_reply_to(), request.message_id());
      continue;
    }
    if (envelope.body_case() == Envelope::kError) return StatusFromError(envelope.error(), "server " + endpoint_);
    return reply;
  }
}

Status Client::SendRawFramesForTesting(std::vector<zmq::message_t> frames) {
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket_.send(frames[i], i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  } catch (const zmq::error_t& e) {
    return Status::IOError(options_.name + ": raw send failed: " + ZmqError(e));
  }
  return Status::OK();
}

}  // namespace tributary::transport
