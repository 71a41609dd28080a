// Subcommand registration. Each command adds its CLI11 subcommand and a handler; the handler runs
// after global flags and the configuration are resolved.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

#include "base/config.h"
#include "base/status.h"

namespace tributary::cli {

struct CommandContext {
  const Config& config;
  CLI::App& app;
  // A handler sets this when its failure needs a specific exit code (e.g. `wait` timeouts).
  int exit_code_override = -1;
};

using CommandHandler = std::function<Status(CommandContext&)>;

struct CommandRegistry {
  std::map<std::string, CommandHandler> handlers;
};

void RegisterCommands(CLI::App& app, CommandRegistry& registry);

// Per-area registration (one file each).
void RegisterInfoCommands(CLI::App& app, CommandRegistry& registry);    // version, config
void RegisterDaemonCommands(CLI::App& app, CommandRegistry& registry);  // coordinator, worker
void RegisterJobCommands(CLI::App& app, CommandRegistry& registry);  // submit, jobs, status, wait, logs, stop, download
void RegisterTrainCommands(CLI::App& app, CommandRegistry& registry);      // train, init-model
void RegisterModelCommands(CLI::App& app, CommandRegistry& registry);      // merge, keygen, demo
void RegisterDemoCommand(CLI::App& app, CommandRegistry& registry);        // demo (called by RegisterModelCommands)
void RegisterGenerateCommands(CLI::App& app, CommandRegistry& registry);   // generate, eval
void RegisterPlanCommand(CLI::App& app, CommandRegistry& registry);        // plan
void RegisterProbeCommand(CLI::App& app, CommandRegistry& registry);       // probe
void RegisterTokenizerCommands(CLI::App& app, CommandRegistry& registry);  // tokenizer-train

// The failure for a command or mode that is not built yet: exit 69 with what is missing.
Status NotBuiltYet(const std::string& what_is_missing);

}  // namespace tributary::cli
