// A retrying request client for a daemon's blocking requests on a Client (a worker's work connection).
//
// WorkClient::Request sends a request and waits for the reply that answers it, like Client::Request,
// but for a long-lived connection on which the server also sends requests of its own:
//   - each attempt gets a fresh message id, so a late reply to an earlier attempt is never taken for
//     the current one (replies whose in_reply_to is not the current attempt's id are skipped);
//   - Timeout and Unavailable (no reply within reply_timeout_ms, a send that could not be queued, an
//     Error reply with either code) are retried after retry_pause_ms, until `stopping` or the
//     caller's give-up predicate says otherwise; any other failure, an Error reply included, is
//     returned as its Status at once;
//   - BulkRequests arriving while it waits (the server pulling an object this side offers, e.g. an
//     upload's payload before the server answers the upload) are answered from the BulkSender, and
//     each one restarts the reply timeout: the server is making progress on the request.
// Other messages (stale replies, unsolicited pushes) are dropped with a debug log.
//
// Threading: like the Client it drives, a WorkClient is used by one thread at a time; `stopping` and
// the give-up predicate may read state other threads change.
//
// Typical use (a worker's compute thread):
//   WorkClientOptions options;
//   options.name = "worker 'w1'";
//   options.peer = "coordinator tcp://10.0.0.1:7500";
//   options.stopping = [&] { return stop.load(); };
//   WorkClient work(client.get(), &upload_objects, options);
//   Result<Message> reply = work.Request(request, "job j1 round 3: UploadUpdate", [&] { return committed(); });
#pragma once

#include <functional>
#include <string>

#include "base/status.h"
#include "transport/bulk.h"
#include "transport/channel.h"
#include "transport/message.h"

namespace tributary::transport {

struct WorkClientOptions {
  std::string name = "work client";  // this side, in logs ("worker 'w1'")
  std::string peer = "server";       // the server, in errors ("coordinator tcp://HOST:PORT")
  std::string sender;                // Envelope.sender of the fresh ids (NewEnvelope)
  int reply_timeout_ms = 10000;      // one attempt's wait for its reply; restarted by each BulkRequest served
  int retry_pause_ms = 1000;         // between a failed attempt and the next
  int poll_ms = 100;                 // the wait checks `stopping` at least this often
  // True ends any wait or retry loop at once (the daemon is shutting down). Null: never.
  std::function<bool()> stopping;
};

class WorkClient {
 public:
  // `client` must outlive the WorkClient; `bulk` (null: BulkRequests are dropped like other messages)
  // too. Neither is owned.
  WorkClient(Client* client, const BulkSender* bulk, WorkClientOptions options);

  // Sends `request` (its message id is replaced per attempt) and returns the message answering the
  // current attempt. `what` names the request in errors and logs ("job j1: CatchUpRequest").
  // `give_up` (optional) is checked before every attempt, including the first: when it returns true
  // the request ends with FailedPrecondition ("<what>: no longer needed"); it does not cut short an
  // attempt's wait. Returns:
  //   the reply (any body but Error: the caller checks the body type);
  //   the Error reply's Status (code kept, "<what>: " prefixed) when its code is not retryable;
  //   the Send failure when it is not retryable (e.g. an envelope over the size limit);
  //   Unavailable ("<what>: <name> is stopping") when `stopping` became true.
  Result<Message> Request(const Envelope& request, const std::string& what,
                          const std::function<bool()>& give_up = nullptr);

  // Sleeps up to `ms`, returning early when `stopping` becomes true (for callers that retry at their
  // own level, e.g. an answer meaning "not yet").
  void PauseUnlessStopping(int ms) const;
  // Whether options().stopping says so (false without one).
  bool Stopping() const { return options_.stopping && options_.stopping(); }

  // The underlying connection, for other exchanges on it (transport::FetchObject) by the same thread.
  Client& client() { return *client_; }
  const WorkClientOptions& options() const { return options_; }

 private:
  // One attempt: sends `envelope` and waits for its reply (serving BulkRequests meanwhile). Returns
  // the reply, the Error reply's Status, the Send failure, or Timeout (also when stopping cut the
  // wait short: the caller checks `stopping` first).
  Result<Message> Attempt(const Envelope& envelope, const std::string& what);
  Client* client_;
  const BulkSender* bulk_;
  WorkClientOptions options_;
};

// Whether a request that failed with `status` may succeed when sent again (Timeout, Unavailable).
bool IsRetryable(const Status& status);

}  // namespace tributary::transport
