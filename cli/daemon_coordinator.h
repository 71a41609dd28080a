// `tributary coordinator`: builds CoordinatorOptions from flags over the configuration and runs the
// daemon until SIGTERM / SIGINT.
#pragma once

#include <string>
#include <vector>

#include "base/config.h"
#include "base/status.h"

namespace tributary::cli {

struct CoordinatorFlags {
  std::string listen;
  std::string http_listen;
  std::string data_dir;
  std::string key;           // secret key file (config coordinator.secret_key)
  std::string allowed_keys;  // allow-list file (config coordinator.allowed_keys)
  std::vector<std::string> eval_data;
  bool insecure = false;
};

Status RunCoordinatorDaemon(const Config& config, const CoordinatorFlags& flags);

}  // namespace tributary::cli
