// BulkObjects: the objects the coordinator serves by BulkRequest (transport/bulk.h) — aggregates above
// the inline limit (`aggregate/<job>/<round>`), catch-up snapshots (`snapshot/<job>/<round>`) and
// exported model files (`export/<job>/<round>/<format>/<file>`) — each dropped kBulkObjectLifetimeMs
// after it was last offered. Not thread-safe: the coordinator's loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "transport/bulk.h"
#include "transport/channel.h"

namespace tributary {

// How long an object stays served after it was last offered (in a RoundCommitted, a CatchUpReply or
// an ExportModelReply): long enough for every worker and CLI client to fetch it (docs/protocol.md).
inline constexpr int64_t kBulkObjectLifetimeMs = 10 * 60 * 1000;

class BulkObjects {
 public:
  BulkObjects() : sender_("coordinator") {}
  BulkObjects(const BulkObjects&) = delete;
  BulkObjects& operator=(const BulkObjects&) = delete;

  // Serves `source` as `object_id` (replacing an object with that id; the source is read once for the
  // checksums) until kBulkObjectLifetimeMs after now_ms. Errors when the source cannot be read.
  Status Offer(const std::string& object_id, std::shared_ptr<transport::BulkSource> source, int64_t now_ms);
  // Offer of an object whose checksums were computed already, off the loop, by Prepare (any thread).
  Status OfferPrepared(const std::string& object_id, transport::PreparedBulkObject object, int64_t now_ms);
  static Result<transport::PreparedBulkObject> Prepare(const std::string& object_id,
                                                       std::shared_ptr<transport::BulkSource> source) {
    return transport::PrepareBulkObject(object_id, std::move(source), transport::kDefaultChunkBytes);
  }
  // Serves `bytes` as `object_id` unless it is served already; either way it stays served until
  // kBulkObjectLifetimeMs after now_ms (objects whose content never changes: aggregates, snapshots).
  Status OfferBytesOnce(const std::string& object_id, std::shared_ptr<const std::string> bytes, int64_t now_ms);
  // Keeps a served object for kBulkObjectLifetimeMs after now_ms; false when it is not served.
  bool Renew(const std::string& object_id, int64_t now_ms);
  bool Has(const std::string& object_id) const { return sender_.HasObject(object_id); }
  // The ids of the served objects that start with `prefix`.
  std::vector<std::string> ServedIds(const std::string& prefix) const;
  // The bytes of a served object offered from memory (aggregates, snapshots); null for a file or an unknown
  // id. A multistream transfer (coordinator_multistream.cc) sends them without a copy.
  std::shared_ptr<const std::string> BytesOf(const std::string& object_id) const;
  // The 32-byte BLAKE2b of a served object ("" when it is not served).
  std::string ChecksumOf(const std::string& object_id) const { return sender_.ObjectChecksumOf(object_id); }

  // Answers a BulkRequest received on `server` with the object's chunks (or an Error envelope; the
  // error is also returned, for the log).
  Status Serve(transport::Server& server, const transport::Incoming& request) const {
    return sender_.Serve(server, request);
  }

  // Drops the objects whose lifetime ended at or before now_ms.
  void Expire(int64_t now_ms);
  size_t size() const { return expiry_ms_.size(); }

 private:
  transport::BulkSender sender_;
  std::map<std::string, int64_t> expiry_ms_;                          // object id -> when it is dropped
  std::map<std::string, std::shared_ptr<const std::string>> memory_;  // objects offered from memory
};

}  // namespace tributary
