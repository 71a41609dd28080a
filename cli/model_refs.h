// Model arguments that name a job's committed round (`job:ID[@ROUND]`) instead of a directory: with
// --store DIR they are exported from a stopped coordinator's store into temporary directories that
// live as long as the ModelRefs.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace tributary::cli {

class ModelRefs {
 public:
  explicit ModelRefs(std::string store_dir) : store_dir_(std::move(store_dir)) {}
  ~ModelRefs();
  ModelRefs(const ModelRefs&) = delete;
  ModelRefs& operator=(const ModelRefs&) = delete;

  // A directory for `model`: itself, or for job:ID[@ROUND] the exported round. Without a store the
  // reference is refused with exit 69 (reading through a running coordinator is not built yet).
  Result<std::string> Resolve(const std::string& model);

 private:
  std::string store_dir_;
  std::vector<std::string> temp_dirs_;
};

}  // namespace tributary::cli
