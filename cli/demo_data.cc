#include "cli/demo_data.h"

#include <nlohmann/json.hpp>

#include <cctype>

namespace tributary::cli {
namespace {

const char* const kWords[] = {
    "apple",  "river",  "planet", "garden", "silver",  "window", "forest",  "candle", "bridge", "dragon",
    "pencil", "rocket", "summer", "winter", "castle",  "mirror", "orange",  "violet", "basket", "button",
    "cotton", "desert", "engine", "falcon", "guitar",  "harbor", "island",  "jacket", "kitten", "ladder",
    "magnet", "needle", "object", "parrot", "quartz",  "rabbit", "saddle",  "tunnel", "velvet", "wizard",
    "anchor", "breeze", "cactus", "dinner", "eleven",  "flower", "goblet",  "helmet", "insect", "jungle",
    "kettle", "lemon",  "marble", "nectar", "oyster",  "pepper", "quiver",  "ribbon", "shadow", "timber",
    "umbra",  "vessel", "walnut", "yellow", "zipper",  "beacon", "copper",  "donkey", "ember",  "fabric",
    "ginger", "hollow", "iris",   "jigsaw", "koala",   "lagoon", "meadow",  "nickel", "olive",  "puzzle",
    "quill",  "raven",  "sphinx", "tomato", "unicorn", "valley", "wagon",   "xenon",  "yogurt", "zephyr",
    "acorn",  "bamboo", "comet",  "dune",   "echo",    "fjord",  "glacier", "hazel",  "igloo",  "jasper"};

Example Make(const std::string& category, const std::string& instruction, const std::string& input,
             const std::string& output) {
  Example ex;
  ex.category = category;
  ex.instruction = instruction;
  ex.input = input;
  ex.output = output;
  ex.source = "demo:" + category;
  return ex;
}

}  // namespace

std::vector<Example> DemoExamples() {
  std::vector<Example> out;
  for (const char* word_c : kWords) {
    const std::string word = word_c;
    std::string reversed(word.rbegin(), word.rend());
    std::string upper = word;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.push_back(Make("reverse", "Reverse the letters of the word.", word, reversed));
    out.push_back(Make("capitals", "Write the word in capital letters.", word, upper));
    out.push_back(Make("repeat", "Repeat the word three times.", word, word + " " + word + " " + word));
    out.push_back(Make("ends", "Name the first and the last letter of the word.", word,
                       std::string(1, word.front()) + " and " + std::string(1, word.back())));
  }
  return out;
}

std::string ExamplesToDollyJsonl(const std::vector<Example>& examples) {
  std::string out;
  for (const Example& ex : examples) {
    nlohmann::json j = {
        {"instruction", ex.instruction}, {"context", ex.input}, {"response", ex.output}, {"category", ex.category}};
    out += j.dump() + "\n";
  }
  return out;
}

LlamaConfig DemoModelConfig() {
  LlamaConfig config;
  config.vocab_size = 259;
  config.hidden_size = 128;
  config.intermediate_size = 344;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 128;
  config.tie_word_embeddings = true;
  return config;
}

std::string DemoJobYaml(const std::string& base_model_dir, int rounds) {
  return "# The demo's Ferret job (tributary demo). Every key: docs/job-spec.md\n"
         "name: demo ferret word tasks\n"
         "model:\n"
         "  base: " +
         nlohmann::json(base_model_dir).dump() +
         "\n"
         "data:\n"
         "  dataset: demo\n"
         "  seq_len: 128\n"
         "federation:\n"
         "  mode: ferret\n"
         "  rounds: " +
         std::to_string(rounds) +
         "\n"
         "  client_fraction: 1.0\n"
         "  min_clients: 4\n"
         "  quorum: 0.75\n"
         "  deadline_floor_s: 20\n"
         "  deadline_ceiling_s: 300\n"
         "  seed: 7\n"
         "train:\n"
         "  local_steps: 10\n"
         "  batch_size: 8\n"
         "  lr: 0.3\n"
         "  optimizer: sgd\n"
         "  max_grad_norm: 1.0\n"
         "  server_lr: 1.0\n"
         "ferret:\n"
         "  k: 256\n"
         "eval:\n"
         "  dataset: demo-heldout\n"
         "  every: 1\n"
         "checkpoint:\n"
         "  snapshot_every: 4\n";
}

}  // namespace tributary::cli
