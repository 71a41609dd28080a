// `tributary version` and `tributary config`.
#include <cblas.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "cli/build_info.h"
#include "cli/cli_config.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/json_envelope.h"
#include "engine/device.h"

extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace tributary::cli {
namespace {

// `config --format json`: {"keys": [{"key", "value" (typed), "origin"}]} in schema order.
nlohmann::json ConfigJson(const Config& config) {
  nlohmann::json keys = nlohmann::json::array();
  for (const ConfigKeySpec& spec : GlobalConfigSchema().keys()) {
    if (!config.Has(spec.key)) continue;
    nlohmann::json value;
    switch (spec.type) {
      case ConfigType::kString: value = config.GetString(spec.key); break;
      case ConfigType::kInt: value = config.GetInt(spec.key); break;
      case ConfigType::kFloat: value = config.GetFloat(spec.key); break;
      case ConfigType::kBool: value = config.GetBool(spec.key); break;
      case ConfigType::kStringList: value = config.GetStringList(spec.key); break;
    }
    keys.push_back({{"key", spec.key}, {"value", value}, {"origin", config.Origin(spec.key)}});
  }
  return {{"keys", keys}};
}

}  // namespace

void RegisterInfoCommands(CLI::App& app, CommandRegistry& registry) {
  auto version_format = std::make_shared<std::string>("text");
  CLI::App* version = app.add_subcommand("version", "Print the version and how this binary was built");
  AddFormatOption(version, *version_format);
  registry.handlers["version"] = [version_format](CommandContext&) -> Status {
    const AcceleratorReport acc = QueryAccelerators();
    nlohmann::json j = {
        {"version", kTributaryVersion},
        {"git", kTributaryGitRevision},
        {"compiler", kTributaryCompiler},
        {"build_type", kTributaryBuildType},
        {"cuda", acc.cuda_compiled_in},
        {"cuda_runtime", acc.cuda_runtime_version},
        {"cublas", acc.cublas_version},
        {"gpus", static_cast<int>(acc.gpus.size())},
        {"openblas_core", openblas_get_corename()},
        {"openblas_config", openblas_get_config()},
    };
    if (*version_format == "json") {
      PrintJsonOk("version", j);
      return Status::OK();
    }
    std::printf("tributary %s (%s)\n", kTributaryVersion, kTributaryGitRevision);
    std::printf("  built with %s, %s\n", kTributaryCompiler, kTributaryBuildType);
    if (acc.cuda_compiled_in) {
      std::printf("  CUDA backend: compiled in (runtime %d, cuBLAS %d), %zu GPU(s)%s%s\n", acc.cuda_runtime_version,
                  acc.cublas_version, acc.gpus.size(), acc.note.empty() ? "" : ": ", acc.note.c_str());
    } else {
      std::printf("  CUDA backend: not compiled in\n");
    }
    std::printf("  OpenBLAS: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
    return Status::OK();
  };

  auto config_format = std::make_shared<std::string>("text");
  CLI::App* config = app.add_subcommand("config", "Print the effective configuration and where each value came from");
  AddFormatOption(config, *config_format);
  registry.handlers["config"] = [config_format](CommandContext& ctx) -> Status {
    if (*config_format == "json") {
      PrintJsonOk("config", ConfigJson(ctx.config));
    } else {
      std::printf("%s", ctx.config.Dump().c_str());
    }
    return Status::OK();
  };
}

}  // namespace tributary::cli
