// `--format text|json` for the commands outside the job commands (version, config, train, eval, keygen,
// download's --summary-format): the same envelope as the job commands (PrintJsonOk / PrintJsonError,
// cli/coordinator_client.h; docs/cli.md "JSON output").
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace tributary::cli {

// Adds `--format text|json` storing into *format.
CLI::Option* AddFormatOption(CLI::App* command, std::string& format, const std::string& what = "");

// Wraps a handler: when *format is "json" and the handler fails, the failure is printed as the JSON
// error envelope of `command` (its exit code as the CLI exits).
CommandHandler WithJsonErrors(std::string command, std::shared_ptr<const std::string> format, CommandHandler run);

}  // namespace tributary::cli
