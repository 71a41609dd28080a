// Pieces both daemon commands (`tributary coordinator`, `tributary worker`) share.
#pragma once

#include <atomic>
#include <string>

#include "base/status.h"

namespace tributary::cli {

// Installs SIGTERM / SIGINT handlers that set the returned flag (the daemons' Run polls it).
const std::atomic<bool>* InstallStopSignalHandlers();

// Splits "NAME=PATH" (datasets on the command line and in configs); InvalidArgument naming `where`.
Status ParseNamedPath(const std::string& text, const std::string& where, std::string* name, std::string* path);

}  // namespace tributary::cli
