// `tributary tokenizer-train`: a byte-level BPE tokenizer trained on plain text files (engine/text/bpe_trainer.h),
// written as tokenizer.json + tokenizer_config.json for `init-model --tokenizer`.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/json_envelope.h"
#include "engine/text/bpe_trainer.h"
#include "engine/text/tokenizer.h"

namespace tributary::cli {
namespace {

struct TokenizerFlags {
  std::vector<std::string> data_files;
  int64_t vocab_size = 0;
  int64_t min_frequency = 2;
  std::string pattern = "llama3";
  std::string output_dir;
  bool force = false;
  std::string format = "text";
};

Status RunTokenizerTrain(const TokenizerFlags& f) {
  const auto start = std::chrono::steady_clock::now();
  BpeTrainOptions options;
  options.vocab_size = f.vocab_size;
  options.min_frequency = f.min_frequency;
  options.pattern = f.pattern == "gpt2" ? PretokenizePattern::kGpt2 : PretokenizePattern::kLlama3;
  // Flag names in the message, not the option struct's.
  if (Status valid = ValidateBpeTrainOptions(options); !valid.ok()) {
    if (f.vocab_size < 259)
      return Status::InvalidArgument("--vocab-size " + std::to_string(f.vocab_size) +
                                     " is smaller than 259 (3 special tokens + 256 bytes)");
    if (f.min_frequency < 1)
      return Status::InvalidArgument("--min-frequency " + std::to_string(f.min_frequency) + " must be at least 1");
    return valid;
  }
  const std::string json_path = JoinPath(f.output_dir, "tokenizer.json");
  std::error_code ec;
  if (!f.force && std::filesystem::exists(json_path, ec))
    return Status::AlreadyExists(json_path + ": already exists (--force overwrites it)");

  BpeTrainer trainer(options);
  for (const std::string& path : f.data_files) {
    TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    trainer.AddText(text);
  }
  TRIB_ASSIGN_OR_RETURN(BpeTrainResult r, trainer.Train());
  if (r.input_bytes == 0) return Status::InvalidArgument("--data: the input files hold no text");
  // What init-model and train will load: a file that does not load is never written.
  TRIB_RETURN_IF_ERROR(ParseHfTokenizer(r.tokenizer_json, r.tokenizer_config_json, json_path).status());
  std::filesystem::create_directories(f.output_dir, ec);
  if (ec) return Status::IOError(f.output_dir + ": cannot create: " + ec.message());
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(json_path, r.tokenizer_json));
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(f.output_dir, "tokenizer_config.json"), r.tokenizer_config_json));

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bytes_per_token = r.input_tokens > 0 ? static_cast<double>(r.input_bytes) / r.input_tokens : 0.0;
  if (f.format == "json") {
    PrintJsonOk("tokenizer-train", {{"output", f.output_dir},
                                    {"vocab_size", r.vocab_size},
                                    {"merges", r.merges},
                                    {"input_bytes", r.input_bytes},
                                    {"input_tokens", r.input_tokens},
                                    {"bytes_per_token", bytes_per_token},
                                    {"seconds", seconds}});
    return Status::OK();
  }
  std::printf("vocab size %lld (%lld merges)\n", static_cast<long long>(r.vocab_size),
              static_cast<long long>(r.merges));
  if (r.vocab_size < f.vocab_size)
    std::printf("stopped below --vocab-size %lld: no pair left occurring --min-frequency %lld times\n",
                static_cast<long long>(f.vocab_size), static_cast<long long>(f.min_frequency));
  std::printf("input: %lld bytes -> %lld tokens (%.2f bytes per token)\n", static_cast<long long>(r.input_bytes),
              static_cast<long long>(r.input_tokens), bytes_per_token);
  std::printf("wrote %s and tokenizer_config.json in %.1f s\n", json_path.c_str(), seconds);
  return Status::OK();
}

}  // namespace

void RegisterTokenizerCommands(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<TokenizerFlags>();
  CLI::App* train =
      app.add_subcommand("tokenizer-train", "Train a byte-level BPE tokenizer (HF tokenizer.json) on plain text");
  train->add_option("--data", f->data_files, "Plain text file (repeat for more)")->required();
  train->add_option("--vocab-size", f->vocab_size, "Tokens, including <pad> <bos> <eos> and the 256 bytes")->required();
  train->add_option("--min-frequency", f->min_frequency, "A pair must occur this often to be merged")
      ->capture_default_str();
  train->add_option("--pattern", f->pattern, "Pre-tokenisation regex: llama3|gpt2")
      ->check(CLI::IsMember({"llama3", "gpt2"}))
      ->capture_default_str();
  train->add_option("-o,--output", f->output_dir, "Output directory (tokenizer.json, tokenizer_config.json)")
      ->required();
  train->add_flag("--force", f->force, "Overwrite a tokenizer already in the output directory");
  AddFormatOption(train, f->format);
  registry.handlers["tokenizer-train"] =
      WithJsonErrors("tokenizer-train", std::shared_ptr<const std::string>(f, &f->format),
                     [f](CommandContext&) -> Status { return RunTokenizerTrain(*f); });
}

}  // namespace tributary::cli
