#include "transport/multistream_serve.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <sodium.h>

#include "transport/bulk.h"

namespace tributary::transport {
namespace {

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  return static_cast<int>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
}

Status ParsePort(const std::string& text, const std::string& key, int* port) {
  try {
    size_t used = 0;
    *port = std::stoi(text, &used);
    if (used == text.size() && *port >= 1 && *port <= 65535) return Status::OK();
  } catch (const std::exception&) {
  }
  return Status::InvalidArgument(key + ": '" + text + "' is not a port in 1..65535");
}

}  // namespace

Status ParsePortRange(const std::string& text, const std::string& key, MultistreamServeOptions* options) {
  options->port_low = options->port_high = 0;
  if (text.empty()) return Status::OK();
  const size_t dash = text.find('-');
  int low = 0;
  int high = 0;
  TRIB_RETURN_IF_ERROR(ParsePort(text.substr(0, dash), key, &low));
  high = low;
  if (dash != std::string::npos) TRIB_RETURN_IF_ERROR(ParsePort(text.substr(dash + 1), key, &high));
  if (high < low) return Status::InvalidArgument(key + ": '" + text + "': the range ends below its start");
  options->port_low = low;
  options->port_high = high;
  return Status::OK();
}

struct MultistreamServer::Transfer {
  std::thread thread;
  std::atomic<bool> done{false};
  std::mutex mu;  // guards the fds against the destructor's shutdown
  int listen_fd = -1;
  std::vector<int> fds;
  MultistreamKey key{};
  MultistreamServeReport report;
};

MultistreamServer::MultistreamServer(MultistreamServeOptions options,
                                     std::function<void(const MultistreamServeReport&)> on_done)
    : options_(std::move(options)), on_done_(std::move(on_done)) {
  // Random start: a transfer id of an earlier coordinator run never matches a fresh one.
  randombytes_buf(&next_transfer_id_, sizeof(next_transfer_id_));
  next_transfer_id_ = (next_transfer_id_ >> 1) + 1;
}

MultistreamServer::~MultistreamServer() {
  stopping_ = true;
  for (auto& t : transfers_) {
    std::lock_guard<std::mutex> lock(t->mu);
    for (int fd : t->fds) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : transfers_) t->thread.join();
}

void MultistreamServer::Reap() {
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = transfers_.erase(it);
    } else {
      ++it;
    }
  }
}

int MultistreamServer::active() {
  Reap();
  return static_cast<int>(transfers_.size());
}

Result<v1::MultistreamOffer> MultistreamServer::Offer(const std::string& object_id,
                                                      std::shared_ptr<const std::string> data,
                                                      const std::string& checksum, int streams,
                                                      const std::string& peer) {
  Reap();
  if (static_cast<int>(transfers_.size()) >= options_.max_transfers)
    return Status::FailedPrecondition(options_.name + ": " + std::to_string(transfers_.size()) +
                                      " transfers in flight (the most allowed)");
  streams = std::clamp(streams, 1, kMaxMultistreamStreams);
  int port = 0;
  Result<int> listen = Status::IOError("no port");
  for (int p = options_.port_low; p <= options_.port_high; ++p) {
    listen = ListenTcp(options_.host, p, &port);
    if (listen.ok()) break;
  }
  if (!listen.ok())
    return Status::IOError(options_.name + ": no free port in " + std::to_string(options_.port_low) + "-" +
                           std::to_string(options_.port_high) + " on " + options_.host + ": " +
                           listen.status().message());
  auto t = std::make_unique<Transfer>();
  t->listen_fd = *listen;
  t->key = RandomMultistreamKey();
  t->report.object_id = object_id;
  t->report.peer = peer;
  t->report.transfer_id = next_transfer_id_++;
  t->report.streams = streams;

  v1::MultistreamOffer offer;
  offer.set_object_id(object_id);
  offer.set_transfer_id(t->report.transfer_id);
  offer.set_port(static_cast<uint32_t>(port));
  offer.set_key(t->key.data(), t->key.size());
  offer.set_streams(static_cast<uint32_t>(streams));
  offer.set_size(data->size());
  offer.set_checksum(checksum);
  offer.set_accept_timeout_ms(static_cast<uint32_t>(options_.accept_timeout_ms));
  Transfer* raw = t.get();
  t->thread = std::thread([this, raw, data = std::move(data)]() mutable { RunTransfer(raw, std::move(data)); });
  transfers_.push_back(std::move(t));
  return offer;
}

void MultistreamServer::RunTransfer(Transfer* t, std::shared_ptr<const std::string> data) {
  MultistreamServeReport& report = t->report;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(options_.accept_timeout_ms);
  std::vector<int> fds;
  // Accept in short slices so a stopping server does not wait out the accept timeout.
  while (static_cast<int>(fds.size()) < report.streams && !stopping_.load() && MsLeft(deadline) > 0) {
    pollfd p{t->listen_fd, POLLIN, 0};
    if (::poll(&p, 1, std::min(100, MsLeft(deadline))) <= 0) continue;
    const int fd = ::accept4(t->listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(t->mu);
    t->fds.push_back(fd);
    fds.push_back(fd);
  }
  ::close(t->listen_fd);  // the port is free again as soon as the connections are in (or the offer lapsed)
  report.claimed = static_cast<int>(fds.size()) == report.streams;
  if (!report.claimed) {
    report.status = Status::Timeout(options_.name + ": transfer " + std::to_string(report.transfer_id) + " of '" +
                                    report.object_id + "' to " + report.peer + ": " + std::to_string(fds.size()) +
                                    " of " + std::to_string(report.streams) + " connections arrived within " +
                                    std::to_string(options_.accept_timeout_ms) + " ms");
  } else {
    MultistreamOptions send;
    send.transfer_id = report.transfer_id;
    send.peer = report.peer;
    send.chunk_bytes = options_.chunk_bytes;
    send.timeout_ms = options_.transfer_timeout_ms;
    Result<MultistreamStats> sent = SendMultistream(fds, t->key, data->data(), data->size(), send);
    report.status = sent.status();
    if (sent.ok()) report.stats = std::move(*sent);
  }
  {
    std::lock_guard<std::mutex> lock(t->mu);
    for (int fd : t->fds) ::close(fd);
    t->fds.clear();
  }
  sodium_memzero(t->key.data(), t->key.size());
  if (on_done_) on_done_(report);
  t->done = true;
}

Result<std::string> EndpointHost(const std::string& endpoint) {
  const size_t scheme = endpoint.find("://");
  const size_t colon = endpoint.rfind(':');
  if (scheme == std::string::npos || colon == std::string::npos || colon <= scheme + 3)
    return Status::InvalidArgument("endpoint '" + endpoint + "': expected tcp://HOST:PORT");
  return endpoint.substr(scheme + 3, colon - scheme - 3);
}

namespace {

Status CheckOffer(const v1::MultistreamOffer& offer, const std::string& object_id,
                  const MultistreamFetchOptions& options) {
  const std::string where = options.peer + ": MultistreamOffer for '" + object_id + "'";
  if (offer.object_id() != object_id)
    return Status::InvalidArgument(where + " names object '" + offer.object_id() + "'");
  if (offer.key().size() != kMultistreamKeyBytes)
    return Status::InvalidArgument(where + ": key of " + std::to_string(offer.key().size()) + " bytes");
  if (offer.streams() < 1 || offer.streams() > static_cast<uint32_t>(kMaxMultistreamStreams))
    return Status::InvalidArgument(where + ": " + std::to_string(offer.streams()) + " streams");
  if (offer.port() < 1 || offer.port() > 65535)
    return Status::InvalidArgument(where + ": port " + std::to_string(offer.port()));
  if (options.expected_size != 0 && offer.size() != options.expected_size)
    return Status::InvalidArgument(where + ": size " + std::to_string(offer.size()) + ", announced " +
                                   std::to_string(options.expected_size));
  if (!options.expected_checksum.empty() && offer.checksum() != options.expected_checksum)
    return Status::Corruption(where + ": checksum " + ToHex(offer.checksum()) + ", announced " +
                              ToHex(options.expected_checksum));
  return Status::OK();
}

}  // namespace

Result<MultistreamFetched> FetchMultistream(const MultistreamRequestFn& request, const std::string& object_id,
                                            const MultistreamFetchOptions& options) {
  Envelope envelope = NewEnvelope(options.sender);
  v1::MultistreamRequest* body = envelope.mutable_multistream_request();
  body->set_object_id(object_id);
  body->set_worker_id(options.worker_id);
  body->set_job_id(options.job_id);
  body->set_max_streams(options.max_streams);
  TRIB_ASSIGN_OR_RETURN(Message reply, request(envelope));
  if (reply.envelope.body_case() != Envelope::kMultistreamOffer)
    return Status::InvalidArgument(options.peer + " answered a MultistreamRequest with '" +
                                   BodyName(reply.envelope.body_case()) + "'");
  const v1::MultistreamOffer& offer = reply.envelope.multistream_offer();
  TRIB_RETURN_IF_ERROR(CheckOffer(offer, object_id, options));
  MultistreamKey key;
  std::memcpy(key.data(), offer.key().data(), key.size());
  TRIB_ASSIGN_OR_RETURN(std::vector<int> fds, ConnectStreams(options.host, static_cast<int>(offer.port()),
                                                             static_cast<int>(offer.streams())));
  MultistreamOptions receive;
  receive.transfer_id = offer.transfer_id();
  receive.peer = options.peer;
  receive.timeout_ms = options.timeout_ms;
  receive.max_bytes = offer.size();
  Result<MultistreamReceived> received = ReceiveMultistream(fds, key, receive);
  for (int fd : fds) ::close(fd);
  sodium_memzero(key.data(), key.size());
  TRIB_RETURN_IF_ERROR(received.status());
  if (received->data.size() != offer.size())
    return Status::Corruption(options.peer + ": multistream '" + object_id + "' brought " +
                              std::to_string(received->data.size()) + " bytes, offered " +
                              std::to_string(offer.size()));
  // The AEAD authenticates each frame; the object checksum also catches a holder that sent the wrong bytes.
  const std::string checksum = ObjectChecksum(received->data.data(), received->data.size());
  if (checksum != offer.checksum())
    return Status::Corruption(options.peer + ": multistream '" + object_id + "' has checksum " + ToHex(checksum) +
                              ", offered " + ToHex(offer.checksum()));
  MultistreamFetched fetched;
  fetched.data = std::move(received->data);
  fetched.streams = static_cast<int>(offer.streams());
  fetched.reason = offer.reason();
  fetched.stats = std::move(received->stats);
  return fetched;
}

}  // namespace tributary::transport
