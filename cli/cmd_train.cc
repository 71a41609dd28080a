// `tributary train` (centralized fine-tuning, the baseline for federated runs) and
// `tributary init-model` (a randomly initialised HF model directory, with the byte tokenizer or a given one).
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "base/config.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/json_envelope.h"
#include "engine/io/model_dir.h"
#include "engine/model/llama_model.h"
#include "engine/model/model_init.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"

namespace tributary::cli {
namespace {

struct TrainFlags {
  std::string model_dir;
  std::string data_file;
  std::string output_dir;
  std::string data_format = "auto";
  int64_t steps = 100;
  double lr = 1e-4;
  int64_t batch = 4;
  int64_t seq_len = 256;
  int64_t grad_accum = 1;
  std::string optimizer = "adamw";
  double weight_decay = 0.0;
  double momentum = 0.0;
  std::string schedule = "constant";
  int64_t warmup = 0;
  double max_grad_norm = 1.0;
  double held_out = 0.1;
  uint64_t seed = 0;
  int64_t eval_generations = 8;
  int64_t max_new_tokens = 48;
  bool no_pack = false;
  std::string format = "text";
};

struct InitFlags {
  std::string config_file;
  std::string tokenizer_dir;
  std::string output_dir;
  std::vector<std::string> sets;
};

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = std::llround(seconds);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

// One progress line on stderr: redrawn in place on a terminal, printed every ~5% otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total) : total_(total), tty_(isatty(STDERR_FILENO) == 1) {}

  void Update(const StepStats& s, double elapsed_s, int64_t tokens_done) {
    const double tokens_per_s = elapsed_s > 0 ? tokens_done / elapsed_s : 0;
    const double eta = s.step > 0 ? elapsed_s / s.step * (total_ - s.step) : 0;
    const int width = 24;
    const int filled = static_cast<int>(width * s.step / std::max<int64_t>(1, total_));
    std::string bar(filled, '#');
    bar.resize(width, '-');
    char line[256];
    std::snprintf(line, sizeof(line), "[%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s", bar.c_str(),
                  static_cast<long long>(s.step), static_cast<long long>(total_), s.loss, s.lr, tokens_per_s,
                  FormatDuration(eta).c_str());
    const int64_t every = std::max<int64_t>(1, total_ / 20);
    if (tty_) {
      std::fprintf(stderr, "\r%s\x1b[K%s", line, s.step == total_ ? "\n" : "");
    } else if (s.step % every == 0 || s.step == total_ || s.step == 1) {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

 private:
  int64_t total_;
  bool tty_;
};

Status RunTrain(const TrainFlags& f) {
  const auto start = std::chrono::steady_clock::now();
  TRIB_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(f.model_dir));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(f.model_dir));
  if (tokenizer->vocab_size() > loaded.config.vocab_size)
    return Status::InvalidArgument(f.model_dir + ": tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                   " tokens but config.json vocab_size is " + std::to_string(loaded.config.vocab_size));
  if (f.seq_len > loaded.config.max_position_embeddings)
    return Status::InvalidArgument("--seq-len " + std::to_string(f.seq_len) + " exceeds the model's " +
                                   "max_position_embeddings " + std::to_string(loaded.config.max_position_embeddings));
  TRIB_ASSIGN_OR_RETURN(DatasetFormat format, ParseDatasetFormat(f.data_format));
  TRIB_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(f.data_file, format));
  if (examples.empty()) return Status::InvalidArgument(f.data_file + ": no examples");
  TRIB_ASSIGN_OR_RETURN(TrainHeldOut split, SplitTrainHeldOut(examples, f.held_out, f.seed));
  if (split.train.empty())
    return Status::InvalidArgument(f.data_file + ": no training examples left after the held-out split");

  TokenizeOptions tok_options;
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> train_tok,
                        TokenizeExamples(split.train, *tokenizer, tok_options));
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> eval_tok,
                        TokenizeExamples(split.held_out, *tokenizer, tok_options));
  const std::vector<SequenceRow> train_rows =
      BuildRows(train_tok, f.seq_len, !f.no_pack, tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : 0);
  const std::vector<SequenceRow> eval_rows =
      BuildRows(eval_tok, f.seq_len, /*pack=*/false, tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : 0);

  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::Create(loaded.config));
  model->params().CopyFrom(loaded.params);

  OptimizerOptions opt;
  opt.type = f.optimizer;
  opt.weight_decay = f.weight_decay;
  opt.momentum = f.momentum;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer, CreateOptimizer(opt, model->params().table_ptr()));

  TrainLoopOptions loop;
  loop.steps = f.steps;
  loop.batch_size = f.batch;
  loop.grad_accum = f.grad_accum;
  loop.max_grad_norm = f.max_grad_norm;
  loop.schedule.type = f.schedule;
  loop.schedule.lr = f.lr;
  loop.schedule.warmup_steps = f.warmup;
  loop.schedule.total_steps = f.steps;
  TRIB_RETURN_IF_ERROR(ValidateLrSchedule(loop.schedule));

  std::fprintf(stderr, "train: %lld parameters, %zu training rows and %zu held-out rows of %lld tokens, %lld steps\n",
               static_cast<long long>(model->params().table().param_count()), train_rows.size(), eval_rows.size(),
               static_cast<long long>(f.seq_len), static_cast<long long>(f.steps));
  TRIB_ASSIGN_OR_RETURN(LossEval before, EvaluateLoss(*model, eval_rows, f.batch));
  if (!eval_rows.empty())
    std::fprintf(stderr, "held-out loss before: %.4f (perplexity %.2f)\n", before.mean_loss, before.perplexity);

  ProgressBar bar(f.steps);
  int64_t next_row = 0, tokens_done = 0;
  double train_seconds = 0, last_loss = 0;
  TRIB_RETURN_IF_ERROR(TrainSteps(*model, *optimizer, train_rows, loop, &next_row, [&](const StepStats& s) {
    tokens_done += s.tokens;
    train_seconds += s.seconds;
    last_loss = s.loss;
    bar.Update(s, train_seconds, tokens_done);
  }));

  TRIB_ASSIGN_OR_RETURN(LossEval after, EvaluateLoss(*model, eval_rows, f.batch));
  GenerateOptions gen;
  gen.max_new_tokens = std::min<int64_t>(f.max_new_tokens, loaded.config.max_position_embeddings - 1);
  TRIB_ASSIGN_OR_RETURN(GenerationEval gen_eval,
                        EvaluateGeneration(*model, *tokenizer, split.held_out, tok_options, f.eval_generations, gen));

  SaveModelOptions save;
  save.tokenizer = tokenizer.get();
  save.copy_generation_config_from = f.model_dir;
  save.dtype = loaded.stored_dtype;  // a bf16 base comes back bf16, as HF saves it
  TRIB_RETURN_IF_ERROR(SaveModelDir(f.output_dir, loaded.config, model->params(), save));

  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json summary = {
      {"output", f.output_dir},
      {"steps", f.steps},
      {"final_train_loss", last_loss},
      {"held_out_loss_before", before.mean_loss},
      {"held_out_loss_after", after.mean_loss},
      {"held_out_perplexity_after", after.perplexity},
      {"held_out_tokens", after.tokens},
      {"rouge_l", gen_eval.rouge_l},
      {"exact_match", gen_eval.exact_match},
      {"generated_examples", gen_eval.examples},
      {"tokens_per_second", train_seconds > 0 ? tokens_done / train_seconds : 0.0},
      {"wall_seconds", wall},
  };
  if (f.format == "json") {
    PrintJsonOk("train", summary);
  } else {
    std::printf("trained %lld steps in %s (%.0f tokens/s)\n", static_cast<long long>(f.steps),
                FormatDuration(train_seconds).c_str(), train_seconds > 0 ? tokens_done / train_seconds : 0.0);
    if (!eval_rows.empty())
      std::printf("held-out loss %.4f -> %.4f (perplexity %.2f -> %.2f) over %lld tokens\n", before.mean_loss,
                  after.mean_loss, before.perplexity, after.perplexity, static_cast<long long>(after.tokens));
    if (gen_eval.examples > 0)
      std::printf("held-out generation: Rouge-L %.4f, exact match %.4f over %lld examples\n", gen_eval.rouge_l,
                  gen_eval.exact_match, static_cast<long long>(gen_eval.examples));
    std::printf("model written to %s\n", f.output_dir.c_str());
  }
  return Status::OK();
}

const ConfigSchema& ModelConfigSchema() {
  static const ConfigSchema* schema = [] {
    auto* s = new ConfigSchema();
    auto add = [s](const char* key, ConfigType type, const char* def, const char* help, double min, double max) {
      ConfigKeySpec k;
      k.key = key;
      k.type = type;
      k.default_yaml = def;
      k.help = help;
      k.min = min;
      k.max = max;
      s->Add(k);
    };
    using T = ConfigType;
    ConfigKeySpec arch;
    arch.key = "architecture";
    arch.default_yaml = "llama";
    arch.help = "llama (LlamaForCausalLM) or qwen2 (Qwen2ForCausalLM: q/k/v biases)";
    arch.choices = {"llama", "qwen2"};
    s->Add(arch);
    add("vocab_size", T::kInt, "259", "vocabulary size (>= 259 for the byte tokenizer)", 259, 1 << 22);
    add("hidden_size", T::kInt, "64", "model width", 2, 1 << 16);
    add("intermediate_size", T::kInt, "172", "MLP width", 1, 1 << 18);
    add("num_hidden_layers", T::kInt, "2", "decoder layers", 1, 1024);
    add("num_attention_heads", T::kInt, "4", "query heads", 1, 1024);
    add("num_key_value_heads", T::kInt, "2", "key/value heads (GQA)", 1, 1024);
    add("head_dim", T::kInt, "0", "per-head width (0: hidden_size / num_attention_heads)", 0, 4096);
    add("max_position_embeddings", T::kInt, "512", "context length", 1, 1 << 20);
    add("rms_norm_eps", T::kFloat, "1e-5", "RMSNorm epsilon", 1e-12, 1);
    add("rope_theta", T::kFloat, "10000", "rotary base", 1, 1e12);
    add("tie_word_embeddings", T::kBool, "false", "share embedding and LM head", 0, 0);
    add("seed", T::kInt, "0", "initialisation seed", 0, 9.2e18);
    return s;
  }();
  return *schema;
}

Status RunInitModel(const InitFlags& f) {
  TRIB_ASSIGN_OR_RETURN(Config c, Config::LoadFile(ModelConfigSchema(), f.config_file));
  for (const std::string& assignment : f.sets) TRIB_RETURN_IF_ERROR(c.Set(assignment));
  LlamaConfig config;
  if (c.GetString("architecture") == "qwen2") {
    config.architecture = "Qwen2ForCausalLM";
    config.model_type = "qwen2";
    config.attention_bias = true;
  }
  config.vocab_size = c.GetInt("vocab_size");
  // --tokenizer: its vocabulary sets vocab_size (and its specials the bos/eos ids, in WriteRandomModelDir).
  std::unique_ptr<Tokenizer> tokenizer;
  if (!f.tokenizer_dir.empty()) {
    TRIB_ASSIGN_OR_RETURN(tokenizer, LoadTokenizer(f.tokenizer_dir));
    if (c.Origin("vocab_size") != "default" && config.vocab_size != tokenizer->vocab_size())
      return Status::InvalidArgument(c.Origin("vocab_size") + ": vocab_size " + std::to_string(config.vocab_size) +
                                     " disagrees with --tokenizer " + f.tokenizer_dir + " (" +
                                     std::to_string(tokenizer->vocab_size()) +
                                     " tokens); leave vocab_size out to take the tokenizer's");
    config.vocab_size = tokenizer->vocab_size();
  }
  config.hidden_size = c.GetInt("hidden_size");
  config.intermediate_size = c.GetInt("intermediate_size");
  config.num_hidden_layers = c.GetInt("num_hidden_layers");
  config.num_attention_heads = c.GetInt("num_attention_heads");
  config.num_key_value_heads = c.GetInt("num_key_value_heads");
  config.head_dim = c.GetInt("head_dim");
  config.max_position_embeddings = c.GetInt("max_position_embeddings");
  config.rms_norm_eps = c.GetFloat("rms_norm_eps");
  config.rope_theta = c.GetFloat("rope_theta");
  config.tie_word_embeddings = c.GetBool("tie_word_embeddings");
  Status valid = config.Validate();
  if (!valid.ok()) return valid.WithContext(f.config_file);
  TRIB_RETURN_IF_ERROR(
      WriteRandomModelDir(f.output_dir, config, static_cast<uint64_t>(c.GetInt("seed")), tokenizer.get()));
  const int64_t params = BuildLlamaTensorTable(config)->param_count();
  std::printf("wrote a %lld-parameter %s model to %s\n", static_cast<long long>(params), config.architecture.c_str(),
              f.output_dir.c_str());
  return Status::OK();
}

}  // namespace

void RegisterTrainCommands(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* train = app.add_subcommand("train", "Fine-tune a model on one machine (the centralized baseline)");
  train->add_option("--model", f->model_dir, "HF model directory (config.json, safetensors, tokenizer.json)")
      ->required()
      ->check(CLI::ExistingDirectory);
  train->add_option("--data", f->data_file, "JSONL instruction set (Alpaca or Dolly) or plain text")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--data-format", f->data_format, "auto|alpaca|dolly|text_lines|text")->capture_default_str();
  train->add_option("-o,--output", f->output_dir, "Output model directory")->required();
  train->add_option("--steps", f->steps, "Optimizer steps")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--lr", f->lr, "Peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--batch", f->batch, "Rows per micro-batch")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--seq-len", f->seq_len, "Tokens per row")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--grad-accum", f->grad_accum, "Micro-batches per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  train->add_option("--optimizer", f->optimizer, "adamw|sgd")
      ->check(CLI::IsMember({"adamw", "sgd"}))
      ->capture_default_str();
  train->add_option("--weight-decay", f->weight_decay, "Decoupled weight decay")->capture_default_str();
  train->add_option("--momentum", f->momentum, "SGD momentum")->capture_default_str();
  train->add_option("--schedule", f->schedule, "constant|cosine|linear")
      ->check(CLI::IsMember({"constant", "cosine", "linear"}))
      ->capture_default_str();
  train->add_option("--warmup", f->warmup, "Linear warmup steps")->capture_default_str();
  train->add_option("--max-grad-norm", f->max_grad_norm, "Global-norm clipping (0: off)")->capture_default_str();
  train->add_option("--held-out", f->held_out, "Fraction of examples held out for evaluation")
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  train->add_option("--seed", f->seed, "Shuffling and split seed")->capture_default_str();
  train->add_option("--eval-generations", f->eval_generations, "Held-out examples to answer for Rouge-L")
      ->capture_default_str();
  train->add_option("--max-new-tokens", f->max_new_tokens, "Answer length limit for Rouge-L")->capture_default_str();
  train->add_flag("--no-pack", f->no_pack, "One example per row instead of packing");
  AddFormatOption(train, f->format, "text|json summary on stdout (json: one envelope object)");
  registry.handlers["train"] = WithJsonErrors("train", std::shared_ptr<const std::string>(f, &f->format),
                                              [f](CommandContext&) -> Status { return RunTrain(*f); });

  auto i = std::make_shared<InitFlags>();
  CLI::App* init = app.add_subcommand("init-model", "Create a randomly initialised HF model directory");
  init->add_option("--config", i->config_file, "Model hyper-parameters (YAML; see examples/tiny-model.yaml)")
      ->required()
      ->check(CLI::ExistingFile);
  init->add_option("--set", i->sets, "Override a hyper-parameter: --set key=value");
  init->add_option("--tokenizer", i->tokenizer_dir,
                   "Directory with a tokenizer.json (e.g. from tokenizer-train) to use instead of the byte "
                   "tokenizer; sets vocab_size and the bos/eos ids");
  init->add_option("-o,--output", i->output_dir, "Output model directory")->required();
  registry.handlers["init-model"] = [i](CommandContext&) -> Status { return RunInitModel(*i); };
}

}  // namespace tributary::cli
