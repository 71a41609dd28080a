// The schema of tributary's configuration file (`--config FILE`, overridable by `--set key=value`).
#pragma once

#include "base/config.h"

namespace tributary::cli {

// Every key the daemons and the CLI accept, with defaults and help (docs/configuration.md lists them).
const ConfigSchema& GlobalConfigSchema();

}  // namespace tributary::cli
