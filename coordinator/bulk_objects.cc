#include "coordinator/bulk_objects.h"

namespace tributary {

Status BulkObjects::Offer(const std::string& object_id, std::shared_ptr<transport::BulkSource> source, int64_t now_ms) {
  TRIB_ASSIGN_OR_RETURN(transport::PreparedBulkObject object, Prepare(object_id, std::move(source)));
  return OfferPrepared(object_id, std::move(object), now_ms);
}

Status BulkObjects::OfferPrepared(const std::string& object_id, transport::PreparedBulkObject object, int64_t now_ms) {
  const auto* memory = dynamic_cast<const transport::MemorySource*>(object.source.get());
  std::shared_ptr<const std::string> bytes = memory != nullptr ? memory->shared_data() : nullptr;
  TRIB_RETURN_IF_ERROR(sender_.AddPrepared(object_id, std::move(object)));
  if (bytes) {
    memory_[object_id] = std::move(bytes);
  } else {
    memory_.erase(object_id);
  }
  expiry_ms_[object_id] = now_ms + kBulkObjectLifetimeMs;
  return Status::OK();
}

Status BulkObjects::OfferBytesOnce(const std::string& object_id, std::shared_ptr<const std::string> bytes,
                                   int64_t now_ms) {
  if (Renew(object_id, now_ms)) return Status::OK();
  return Offer(object_id, std::make_shared<transport::MemorySource>(std::move(bytes)), now_ms);
}

bool BulkObjects::Renew(const std::string& object_id, int64_t now_ms) {
  if (!sender_.HasObject(object_id)) return false;
  expiry_ms_[object_id] = now_ms + kBulkObjectLifetimeMs;
  return true;
}

std::shared_ptr<const std::string> BulkObjects::BytesOf(const std::string& object_id) const {
  auto it = memory_.find(object_id);
  return it == memory_.end() ? nullptr : it->second;
}

std::vector<std::string> BulkObjects::ServedIds(const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto it = expiry_ms_.lower_bound(prefix); it != expiry_ms_.end() && it->first.starts_with(prefix); ++it)
    out.push_back(it->first);
  return out;
}

void BulkObjects::Expire(int64_t now_ms) {
  for (auto it = expiry_ms_.begin(); it != expiry_ms_.end();) {
    if (it->second <= now_ms) {
      sender_.RemoveObject(it->first);
      memory_.erase(it->first);
      it = expiry_ms_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace tributary
