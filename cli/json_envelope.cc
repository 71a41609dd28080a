#include "cli/json_envelope.h"

#include "cli/coordinator_client.h"
#include "cli/exit_codes.h"

namespace tributary::cli {

CLI::Option* AddFormatOption(CLI::App* command, std::string& format, const std::string& what) {
  const std::string help = what.empty() ? "text|json (json: one envelope object on stdout)" : what;
  return command->add_option("--format", format, help)->check(CLI::IsMember({"text", "json"}));
}

CommandHandler WithJsonErrors(std::string command, std::shared_ptr<const std::string> format, CommandHandler run) {
  return [command = std::move(command), format = std::move(format), run = std::move(run)](CommandContext& ctx) {
    Status s = run(ctx);
    if (!s.ok() && *format == "json") {
      const int code = ctx.exit_code_override >= 0 ? ctx.exit_code_override : ExitCodeForStatus(s);
      PrintJsonError(command, code, JsonErrorCode(s), s.message());
    }
    return s;
  };
}

}  // namespace tributary::cli
