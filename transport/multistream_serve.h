// The daemons' use of multistream (transport/multistream.h, docs/multistream.md "In the daemons"): the holder of
// a large object (the coordinator) offers it on request over parallel TCP streams, and the receiver (a worker)
// fetches it, falling back to the ZeroMQ bulk path (transport/bulk.h) when that fails.
//
//   receiver -> holder : MultistreamRequest {object_id, worker_id, job_id, max_streams} (CURVE channel)
//   holder -> receiver : MultistreamOffer {transfer_id, port, key, streams, size, checksum} or an Error
//   receiver -> holder : `streams` TCP connections to port; SendMultistream / ReceiveMultistream over them
//
// One ephemeral listener per offer (in a configured port range): the multistream wire format has the sender
// speak first, so a shared port would need a hello token in front of it; a listener of its own keeps the wire
// format, lets the offer's thread own its sockets, and an offer nobody claims within accept_timeout_ms closes
// its port. MultistreamServer bounds the offers in flight (max_transfers); a refused offer costs the receiver
// nothing but the bulk path.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "transport/message.h"
#include "transport/multistream.h"

namespace tributary::transport {

struct MultistreamServeOptions {
  std::string name = "multistream";  // in logs and errors
  std::string host = "0.0.0.0";      // where listeners bind
  int port_low = 0;                  // listeners take a free port of [port_low, port_high]; 0, 0: any free port
  int port_high = 0;
  int max_transfers = 8;             // offers in flight (listening or sending) at most
  int accept_timeout_ms = 10000;     // an offer whose connections do not all arrive within this is dropped
  int transfer_timeout_ms = 600000;  // one transfer, once its connections are accepted
  uint32_t chunk_bytes = uint32_t{1} << 20;
};

// How one offer ended; given to MultistreamServer's on_done from the offer's thread.
struct MultistreamServeReport {
  std::string object_id;
  std::string peer;
  uint64_t transfer_id = 0;
  int streams = 0;
  bool claimed = false;  // every connection arrived
  Status status;         // OK: every byte acknowledged
  MultistreamStats stats;
};

// Parses "" (any free port), "PORT" or "LOW-HIGH" (a firewall's range) into options->port_low/high.
[[nodiscard]] Status ParsePortRange(const std::string& text, const std::string& key, MultistreamServeOptions* options);

class MultistreamServer {
 public:
  // on_done (may be null) runs on the offer's thread when it ends: metrics and logs, thread-safe only.
  MultistreamServer(MultistreamServeOptions options, std::function<void(const MultistreamServeReport&)> on_done);
  // Cancels the offers in flight (their connections are shut down) and joins their threads.
  ~MultistreamServer();
  MultistreamServer(const MultistreamServer&) = delete;
  MultistreamServer& operator=(const MultistreamServer&) = delete;

  // Listens on a free port of the range and starts a thread that accepts `streams` connections and sends
  // `data` over them. FailedPrecondition when max_transfers offers are in flight; IOError when no port of the
  // range can be bound. `checksum` is the object's ObjectChecksum (sent in the offer).
  [[nodiscard]] Result<v1::MultistreamOffer> Offer(const std::string& object_id,
                                                   std::shared_ptr<const std::string> data, const std::string& checksum,
                                                   int streams, const std::string& peer);
  // Offers in flight (finished threads are joined first).
  int active();
  const MultistreamServeOptions& options() const { return options_; }

 private:
  struct Transfer;
  void Reap();
  void RunTransfer(Transfer* t, std::shared_ptr<const std::string> data);

  MultistreamServeOptions options_;
  std::function<void(const MultistreamServeReport&)> on_done_;
  std::atomic<bool> stopping_{false};
  std::list<std::unique_ptr<Transfer>> transfers_;
  uint64_t next_transfer_id_;
};

// Where the holder is: the host of a ZeroMQ endpoint "tcp://HOST:PORT" (InvalidArgument otherwise).
[[nodiscard]] Result<std::string> EndpointHost(const std::string& endpoint);

struct MultistreamFetchOptions {
  std::string host;             // the holder's host (EndpointHost of the control endpoint)
  std::string peer = "holder";  // names the holder in errors
  std::string sender;           // Envelope.sender of the request
  std::string worker_id;        // MultistreamRequest.worker_id / job_id
  std::string job_id;
  uint32_t max_streams = 0;       // 0: as the holder decides
  uint64_t expected_size = 0;     // the object's announced size; the offer must match it
  std::string expected_checksum;  // 32-byte BLAKE2b; the offer and the received bytes must match it (if set)
  int timeout_ms = 600000;        // the transfer
};

struct MultistreamFetched {
  std::string data;
  int streams = 0;
  std::string reason;  // the holder's, for the log
  MultistreamStats stats;
};

// Sends one request and returns the reply (e.g. WorkClient::Request), or the Error reply's Status.
using MultistreamRequestFn = std::function<Result<Message>(const Envelope&)>;

// Asks for object_id over `request`, receives it over the offered streams and checks size and checksum.
// Any failure (refused, connect refused, timeout, a bad checksum) is returned: the caller falls back to
// the bulk path.
[[nodiscard]] Result<MultistreamFetched> FetchMultistream(const MultistreamRequestFn& request,
                                                          const std::string& object_id,
                                                          const MultistreamFetchOptions& options);

}  // namespace tributary::transport
