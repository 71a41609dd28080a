// The `tributary` command line: argument parsing, global flags, dispatch to subcommands.
#pragma once

namespace tributary::cli {

// Runs the CLI and returns the process exit code (cli/exit_codes.h). Never throws.
int RunCli(int argc, char** argv);

}  // namespace tributary::cli
