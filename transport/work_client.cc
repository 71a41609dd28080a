#include "transport/work_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace tributary::transport {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

bool IsRetryable(const Status& status) {
  return status.code() == StatusCode::kTimeout || status.code() == StatusCode::kUnavailable;
}

WorkClient::WorkClient(Client* client, const BulkSender* bulk, WorkClientOptions options)
    : client_(client), bulk_(bulk), options_(std::move(options)) {}

void WorkClient::PauseUnlessStopping(int ms) const {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!Stopping() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

Result<Message> WorkClient::Request(const Envelope& request, const std::string& what,
                                    const std::function<bool()>& give_up) {
  int attempt = 0;
  while (!Stopping()) {
    if (give_up && give_up()) return Status::FailedPrecondition(what + ": no longer needed");
    // A fresh message id per attempt, so a late reply to an earlier attempt is never taken for this one.
    Envelope envelope = request;
    envelope.set_message_id(NewEnvelope(options_.sender).message_id());
    Result<Message> reply = Attempt(envelope, what);
    if (reply.ok()) return reply;
    if (Stopping()) break;
    if (!IsRetryable(reply.status())) return reply.status();
    if (++attempt == 1 || attempt % 10 == 0)
      spdlog::warn("{}: {} (attempt {}); retrying", options_.name, reply.status().message(), attempt);
    PauseUnlessStopping(options_.retry_pause_ms);
  }
  return Status::Unavailable(what + ": " + options_.name + " is stopping");
}

Result<Message> WorkClient::Attempt(const Envelope& envelope, const std::string& what) {
  TRIB_RETURN_IF_ERROR(client_->Send(envelope));
  const std::string timeout =
      what + ": no reply from " + options_.peer + " within " + std::to_string(options_.reply_timeout_ms) + " ms";
  Status failure = Status::Timeout(timeout);
  auto deadline = Clock::now() + std::chrono::milliseconds(options_.reply_timeout_ms);
  const int poll_ms = std::max(options_.poll_ms, 1);
  while (!Stopping() && Clock::now() < deadline) {
    Result<Message> reply = client_->Receive(poll_ms);
    if (!reply.ok()) continue;  // a timeout slice, or a rejected message (already logged)
    const Envelope& received = reply->envelope;
    if (received.body_case() == Envelope::kBulkRequest && bulk_ != nullptr) {
      // The server pulls an object of ours before it answers: progress, so wait on.
      Status served = bulk_->Serve(*client_, *reply);
      if (!served.ok()) spdlog::warn("{}: serving {}: {}", options_.name, what, served.message());
      failure = Status::Timeout(timeout + " of the last chunk request");
      deadline = Clock::now() + std::chrono::milliseconds(options_.reply_timeout_ms);
      continue;
    }
    if (received.in_reply_to() != envelope.message_id()) {
      spdlog::debug("{}: dropping '{}' (in_reply_to {}) while waiting for {} (message {})", options_.name,
                    BodyName(received.body_case()), received.in_reply_to(), what, envelope.message_id());
      continue;
    }
    if (received.body_case() == Envelope::kError)
      return StatusFromError(received.error(), options_.peer).WithContext(what);
    return reply;
  }
  return failure;
}

}  // namespace tributary::transport
