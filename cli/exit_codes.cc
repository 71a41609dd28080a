#include "cli/exit_codes.h"

namespace tributary::cli {

int ExitCodeForStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition: return kExitInvalidArgs;
    case StatusCode::kUnimplemented: return kExitUnavailable;
    case StatusCode::kUnavailable:
    case StatusCode::kPermissionDenied: return kExitConnection;
    case StatusCode::kTimeout: return kExitTimeout;
    case StatusCode::kIOError:
    case StatusCode::kCorruption: return kExitJobFailed;
    case StatusCode::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace tributary::cli
