#include "coordinator/store_export.h"

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"

namespace tributary {

Result<StoreModelRef> ParseStoreModelRef(const std::string& text) {
  if (text.rfind("job:", 0) != 0 || text.size() == 4)
    return Status::InvalidArgument("model reference '" + text + "': expected job:ID or job:ID@ROUND");
  StoreModelRef ref;
  const std::string rest = text.substr(4);
  const size_t at = rest.find('@');
  ref.job_id = rest.substr(0, at);
  if (at != std::string::npos) {
    const std::string round = rest.substr(at + 1);
    char* end = nullptr;
    const unsigned long long r = std::strtoull(round.c_str(), &end, 10);
    if (round.empty() || *end != '\0' || r == 0 || r > UINT32_MAX)
      return Status::InvalidArgument("model reference '" + text + "': round '" + round + "' is not a round number");
    ref.round = static_cast<uint32_t>(r);
  }
  if (ref.job_id.empty()) return Status::InvalidArgument("model reference '" + text + "': no job id");
  return ref;
}

Status ExportFromStore(const std::string& store_dir, const StoreModelRef& ref, const std::string& out_dir) {
  std::error_code ec;
  const std::string path =
      std::filesystem::exists(std::filesystem::path(store_dir) / "store", ec) ? store_dir + "/store" : store_dir;
  checkpoint::StoreOptions options;
  options.create_if_missing = false;
  auto store = checkpoint::CheckpointStore::Open(path, options);
  if (!store.ok()) {
    if (store.status().message().find("lock") != std::string::npos)
      return Status::FailedPrecondition(path +
                                        ": the store is in use by a running coordinator (stop it, or use "
                                        "`tributary download` against it)");
    return store.status();
  }
  TRIB_ASSIGN_OR_RETURN(checkpoint::JobRecord record, (*store)->GetJob(ref.job_id));
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(record.spec_yaml, "job '" + ref.job_id + "' stored spec"));
  const uint32_t round = ref.round == 0 ? record.current_round : ref.round;
  if (round > record.current_round)
    return Status::InvalidArgument("job '" + ref.job_id + "': round " + std::to_string(round) +
                                   " is not committed (last committed: " + std::to_string(record.current_round) + ")");
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobModel> model, JobModel::Load(spec));
  Arena state = model->NewState();
  TRIB_RETURN_IF_ERROR(RebuildTrainableState(store->get(), ref.job_id, spec, round, &state));
  return model->Export(state, "safetensors", out_dir);
}

}  // namespace tributary
