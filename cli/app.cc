#include "cli/app.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "cli/cli_config.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/exit_codes.h"
#include "cli/logging.h"

namespace tributary::cli {
namespace {

struct GlobalFlags {
  std::string config_file;
  std::vector<std::string> sets;
  std::string log_level;
  std::string log_format;
};

// One-line error on stderr, in the same shape for every command.
int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "tributary: error: %s\n", message.c_str());
  return code;
}

// Every argument of a command that talks to a daemon (or is one) may end up in a protobuf string field,
// which must be UTF-8: a job id, a worker name, a dataset, a reason. Refused here, naming the flag, rather
// than as an unencodable message. Local commands (train, merge, ...) keep any bytes a path may have.
Status CheckArgumentsAreUtf8(const CLI::App& command) {
  static const std::set<std::string> kLocal = {"train",   "init-model", "generate",        "eval", "merge", "keygen",
                                               "version", "config",     "tokenizer-train", "demo"};
  if (kLocal.count(command.get_name()) > 0) return Status::OK();
  for (const CLI::Option* option : command.get_options()) {
    for (const std::string& value : option->results()) TRIB_RETURN_IF_ERROR(CheckUtf8(value, option->get_name()));
  }
  return Status::OK();
}

Result<Config> ResolveConfig(const GlobalFlags& flags) {
  const ConfigSchema& schema = GlobalConfigSchema();
  Result<Config> loaded =
      flags.config_file.empty() ? Config::Defaults(schema) : Config::LoadFile(schema, flags.config_file);
  if (!loaded.ok()) return loaded.status();
  Config config = std::move(loaded).value();
  for (const std::string& assignment : flags.sets) TRIB_RETURN_IF_ERROR(config.Set(assignment));
  // Dedicated flags win over the file and --set.
  if (!flags.log_level.empty()) TRIB_RETURN_IF_ERROR(config.SetValue("log.level", flags.log_level, "--log-level"));
  if (!flags.log_format.empty()) TRIB_RETURN_IF_ERROR(config.SetValue("log.format", flags.log_format, "--log-format"));
  return config;
}

}  // namespace

int RunCli(int argc, char** argv) {
  try {
    CLI::App app{"tributary: federated fine-tuning of LLaMA-family models across machines that cannot pool data",
                 "tributary"};
    app.require_subcommand(1);
    app.fallthrough();  // global flags may also follow the subcommand name
    app.set_help_all_flag("--help-all", "Print help for every subcommand");
    app.footer(
        "Exit codes: 0 ok, 1 job failed, 2 connection/auth error, 3 timeout, 4 invalid arguments, 5 internal error,\n"
        "69 not built yet. Run 'tributary COMMAND --help' for a command's options. Docs: docs/cli.md");

    GlobalFlags flags;
    app.add_option("--config", flags.config_file, "YAML configuration file (docs/configuration.md)")
        ->check(CLI::ExistingFile);
    app.add_option("--set", flags.sets, "Override a configuration key: --set key=value (repeatable)")
        ->allow_extra_args(false);
    app.add_option("--log-level", flags.log_level, "trace|debug|info|warn|error|critical|off (default info)");
    app.add_option("--log-format", flags.log_format, "text|json (default text)");

    CommandRegistry registry;
    RegisterCommands(app, registry);

    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      // CLI11 reports a misspelt command as a missing one; name what was typed instead.
      if (app.get_subcommands().empty()) {
        for (const std::string& arg : app.remaining()) {
          if (!arg.empty() && arg[0] != '-')
            return Fail(kExitInvalidArgs, "unknown command '" + arg + "' (run 'tributary --help')");
        }
      }
      return Fail(kExitInvalidArgs, std::string(e.what()) + " (run 'tributary --help')");
    }

    for (const CLI::App* sub : app.get_subcommands()) {
      Status utf8 = CheckArgumentsAreUtf8(*sub);
      if (!utf8.ok()) return Fail(kExitInvalidArgs, sub->get_name() + ": " + utf8.message());
    }

    // Job commands use the default client profile when no --config is given (cli/coordinator_client.h).
    if (flags.config_file.empty() && !app.get_subcommands().empty()) {
      flags.config_file = DefaultConfigFileFor(app.get_subcommands().front()->get_name());
    }
    Result<Config> config = ResolveConfig(flags);
    if (!config.ok()) return Fail(kExitInvalidArgs, config.status().message());
    Status log_status = SetupLogging(config->GetString("log.level"), config->GetString("log.format"));
    if (!log_status.ok()) return Fail(kExitInvalidArgs, log_status.message());

    for (CLI::App* sub : app.get_subcommands()) {
      auto it = registry.handlers.find(sub->get_name());
      if (it == registry.handlers.end()) return Fail(kExitInternal, "no handler for command '" + sub->get_name() + "'");
      CommandContext ctx{*config, *sub};
      Status s = it->second(ctx);
      if (s.ok()) return kExitOk;
      if (ctx.exit_code_override >= 0) {
        std::fprintf(stderr, "tributary %s: %s\n", sub->get_name().c_str(), s.message().c_str());
        return ctx.exit_code_override;
      }
      return Fail(ExitCodeForStatus(s), sub->get_name() + ": " + s.message());
    }
    return Fail(kExitInvalidArgs, "no command given (run 'tributary --help')");
  } catch (const std::exception& e) {
    return Fail(kExitInternal, std::string("internal error: ") + e.what());
  }
}

}  // namespace tributary::cli
