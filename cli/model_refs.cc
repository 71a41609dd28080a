#include "cli/model_refs.h"

#include <stdlib.h>

#include <filesystem>

#include "cli/commands.h"
#include "coordinator/store_export.h"

namespace tributary::cli {

ModelRefs::~ModelRefs() {
  for (const std::string& dir : temp_dirs_) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

Result<std::string> ModelRefs::Resolve(const std::string& model) {
  if (model.rfind("job:", 0) != 0) return model;
  TRIB_ASSIGN_OR_RETURN(StoreModelRef ref, ParseStoreModelRef(model));
  if (store_dir_.empty())
    return NotBuiltYet(model +
                       " through a running coordinator; give --store DIR (its data directory, with the "
                       "coordinator stopped) or export the job with `tributary download` first");
  std::string pattern = (std::filesystem::temp_directory_path() / "tributary-model.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return Status::IOError("cannot create a temporary directory for " + model);
  temp_dirs_.push_back(pattern);
  TRIB_RETURN_IF_ERROR(ExportFromStore(store_dir_, ref, pattern).WithContext(model));
  return pattern;
}

}  // namespace tributary::cli
