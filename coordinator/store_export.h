// Offline export: a committed round of a job, read straight from a stopped coordinator's store (what
// `tributary generate|eval|merge --store DIR` do with a `job:ID[@ROUND]` model reference).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace tributary {

struct StoreModelRef {
  std::string job_id;
  uint32_t round = 0;  // 0: the last committed round
};

// "job:ID" or "job:ID@ROUND"; InvalidArgument naming the reference otherwise.
Result<StoreModelRef> ParseStoreModelRef(const std::string& text);

// Opens the store at `store_dir` (the coordinator's data directory, or its store/ inside), rebuilds the
// job's trainable state after the round (each logged round checked against its weights hash) and writes
// it as an HF model directory (LoRA merged into the base) to `out_dir`. FailedPrecondition when a running
// coordinator holds the store; NotFound for an unknown job; InvalidArgument for an uncommitted round.
Status ExportFromStore(const std::string& store_dir, const StoreModelRef& ref, const std::string& out_dir);

}  // namespace tributary
