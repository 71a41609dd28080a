// Exit codes of the `tributary` CLI (documented in docs/cli.md; modelled on NVFlare's job CLI
// and sysexits.h). Scripts rely on them: never reuse a code for another meaning.
#pragma once

#include "base/status.h"

namespace tributary::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitJobFailed = 1;     // the job (or server-side operation) failed
inline constexpr int kExitConnection = 2;    // connection, authentication or authorization failure
inline constexpr int kExitTimeout = 3;       // `wait --timeout` expired
inline constexpr int kExitInvalidArgs = 4;   // bad arguments, config, spec or input file
inline constexpr int kExitInternal = 5;      // a bug in tributary; never retry blindly
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: the command or mode is not built yet

// The exit code of a command that failed with `status` (the table in docs/cli.md).
int ExitCodeForStatus(const Status& status);

}  // namespace tributary::cli
