// `tributary version` and `tributary config`.
#include <cblas.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "cli/build_info.h"
#include "cli/cli_config.h"
#include "cli/commands.h"
#include "engine/device.h"

extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace tributary::cli {

void RegisterInfoCommands(CLI::App& app, CommandRegistry& registry) {
  auto version_format = std::make_shared<std::string>("text");
  CLI::App* version = app.add_subcommand("version", "Print the version and how this binary was built");
  version->add_option("--format", *version_format, "text|json")->check(CLI::IsMember({"text", "json"}));
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
      std::printf("%s\n", j.dump().c_str());
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

  CLI::App* config = app.add_subcommand("config", "Print the effective configuration and where each value came from");
  (void)config;
  registry.handlers["config"] = [](CommandContext& ctx) -> Status {
    std::printf("%s", ctx.config.Dump().c_str());
    return Status::OK();
  };
}

}  // namespace tributary::cli
