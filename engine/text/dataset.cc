#include "engine/text/dataset.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>

#include "base/file_util.h"

namespace tributary {

namespace {

using nlohmann::json;

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// Reads field `name` of a record as a string; absent is "" unless required.
Status GetField(const json& record, const char* name, bool required, const std::string& where, std::string* out) {
  auto it = record.find(name);
  if (it == record.end() || it->is_null()) {
    if (required) return Status::InvalidArgument(where + ": missing field '" + name + "'");
    out->clear();
    return Status::OK();
  }
  if (!it->is_string()) return Status::InvalidArgument(where + ": field '" + name + "' is not a string");
  *out = it->get<std::string>();
  return Status::OK();
}

Status RecordToExample(const json& record, DatasetFormat format, const std::string& where, Example* ex) {
  if (!record.is_object()) return Status::InvalidArgument(where + ": expected a JSON object");
  ex->source = where;
  TRIB_RETURN_IF_ERROR(GetField(record, "instruction", true, where, &ex->instruction));
  if (format == DatasetFormat::kAlpaca) {
    TRIB_RETURN_IF_ERROR(GetField(record, "input", false, where, &ex->input));
    TRIB_RETURN_IF_ERROR(GetField(record, "output", true, where, &ex->output));
  } else {
    TRIB_RETURN_IF_ERROR(GetField(record, "context", false, where, &ex->input));
    TRIB_RETURN_IF_ERROR(GetField(record, "response", true, where, &ex->output));
    TRIB_RETURN_IF_ERROR(GetField(record, "category", false, where, &ex->category));
  }
  return Status::OK();
}

Result<DatasetFormat> DetectFromRecord(const json& record, const std::string& where) {
  if (record.is_object()) {
    if (record.contains("response")) return DatasetFormat::kDolly;
    if (record.contains("output")) return DatasetFormat::kAlpaca;
  }
  return Status::InvalidArgument(where +
                                 ": cannot detect the dataset format (expected Alpaca fields "
                                 "instruction/input/output or Dolly fields instruction/context/response)");
}

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

Result<DatasetFormat> ParseDatasetFormat(const std::string& name) {
  if (name == "auto") return DatasetFormat::kAuto;
  if (name == "alpaca") return DatasetFormat::kAlpaca;
  if (name == "dolly") return DatasetFormat::kDolly;
  if (name == "text_lines") return DatasetFormat::kTextLines;
  if (name == "text") return DatasetFormat::kTextWhole;
  return Status::InvalidArgument("dataset format '" + name + "': expected auto, alpaca, dolly, text_lines or text");
}

Result<std::vector<Example>> ParseExamples(const std::string& contents, const std::string& source,
                                           DatasetFormat format) {
  std::vector<Example> examples;
  const size_t first = contents.find_first_not_of(" \t\r\n");
  const char lead = first == std::string::npos ? '\0' : contents[first];

  if (format == DatasetFormat::kTextWhole) {
    Example ex;
    ex.is_text = true;
    ex.text = contents;
    ex.source = source;
    examples.push_back(std::move(ex));
    return examples;
  }
  if (format == DatasetFormat::kAuto && lead != '{' && lead != '[') format = DatasetFormat::kTextLines;

  // A JSON array of records (e.g. the original alpaca_data.json): errors name the record index.
  if (lead == '[' && format != DatasetFormat::kTextLines) {
    json all;
    try {
      all = json::parse(contents);
    } catch (const json::exception& e) {
      return Status::InvalidArgument(source + ": invalid JSON: " + OneLine(e.what()));
    }
    if (!all.is_array()) return Status::InvalidArgument(source + ": expected a JSON array of records");
    for (size_t i = 0; i < all.size(); ++i) {
      const std::string where = source + ": record " + std::to_string(i);
      if (format == DatasetFormat::kAuto) {
        TRIB_ASSIGN_OR_RETURN(format, DetectFromRecord(all[i], where));
      }
      Example ex;
      TRIB_RETURN_IF_ERROR(RecordToExample(all[i], format, where, &ex));
      examples.push_back(std::move(ex));
    }
    return examples;
  }

  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < contents.size()) {
    size_t end = contents.find('\n', pos);
    if (end == std::string::npos) end = contents.size();
    std::string_view line(contents.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (IsBlank(line)) continue;
    const std::string where = source + ":" + std::to_string(line_no);
    if (format == DatasetFormat::kTextLines) {
      Example ex;
      ex.is_text = true;
      ex.text = std::string(line);
      if (!ex.text.empty() && ex.text.back() == '\r') ex.text.pop_back();
      ex.source = where;
      examples.push_back(std::move(ex));
      continue;
    }
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception& e) {
      return Status::InvalidArgument(where + ": invalid JSON: " + OneLine(e.what()));
    }
    if (format == DatasetFormat::kAuto) {
      TRIB_ASSIGN_OR_RETURN(format, DetectFromRecord(record, where));
    }
    Example ex;
    TRIB_RETURN_IF_ERROR(RecordToExample(record, format, where, &ex));
    examples.push_back(std::move(ex));
  }
  return examples;
}

Result<std::vector<Example>> LoadExamples(const std::string& path, DatasetFormat format) {
  TRIB_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
  return ParseExamples(contents, path, format);
}

std::string FormatPrompt(const PromptTemplate& tmpl, const Example& example) {
  const std::string& pattern = example.input.empty() ? tmpl.without_input : tmpl.with_input;
  std::string out;
  size_t pos = 0;
  // One pass: substituted text is never re-scanned for placeholders.
  while (pos < pattern.size()) {
    if (pattern.compare(pos, 13, "{instruction}") == 0) {
      out += example.instruction;
      pos += 13;
    } else if (pattern.compare(pos, 7, "{input}") == 0) {
      out += example.input;
      pos += 7;
    } else {
      out += pattern[pos++];
    }
  }
  return out;
}

Result<std::vector<TokenizedExample>> TokenizeExamples(const std::vector<Example>& examples, const Tokenizer& tokenizer,
                                                       const TokenizeOptions& options) {
  if (options.add_eos && tokenizer.eos_id() < 0)
    return Status::InvalidArgument(
        "tokenizer has no EOS token (set add_eos=false or name eos_token in "
        "tokenizer_config.json)");
  std::vector<TokenizedExample> out;
  out.reserve(examples.size());
  for (const Example& ex : examples) {
    TokenizedExample t;
    auto append = [&](const std::vector<int32_t>& ids, uint8_t mask) {
      t.tokens.insert(t.tokens.end(), ids.begin(), ids.end());
      t.loss_mask.insert(t.loss_mask.end(), ids.size(), mask);
    };
    if (options.add_bos && tokenizer.bos_id() >= 0) append({tokenizer.bos_id()}, 0);
    if (ex.is_text) {
      append(tokenizer.Encode(ex.text, false), 1);
    } else {
      append(tokenizer.Encode(FormatPrompt(options.prompt_template, ex), false), 0);
      append(tokenizer.Encode(ex.output, false), 1);
    }
    if (options.add_eos) append({tokenizer.eos_id()}, 1);
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<SequenceRow> BuildRows(const std::vector<TokenizedExample>& examples, int64_t max_seq_len, bool pack,
                                   int32_t pad_id) {
  TRIB_CHECK(max_seq_len > 0);
  const size_t row_len = static_cast<size_t>(max_seq_len) + 1;
  std::vector<SequenceRow> rows;
  SequenceRow current;
  auto flush = [&]() {
    if (current.tokens.empty()) return;
    current.tokens.resize(row_len, pad_id);
    current.loss_mask.resize(row_len, 0);
    rows.push_back(std::move(current));
    current = SequenceRow();
  };
  for (const TokenizedExample& ex : examples) {
    if (ex.tokens.empty()) continue;
    const size_t n = std::min(ex.tokens.size(), row_len);
    if (!pack || current.tokens.size() + n > row_len) flush();
    current.tokens.insert(current.tokens.end(), ex.tokens.begin(), ex.tokens.begin() + static_cast<std::ptrdiff_t>(n));
    current.loss_mask.insert(current.loss_mask.end(), ex.loss_mask.begin(),
                             ex.loss_mask.begin() + static_cast<std::ptrdiff_t>(n));
  }
  flush();
  return rows;
}

int64_t Batch::NumTargets() const {
  int64_t n = 0;
  for (uint8_t m : loss_mask) n += m;
  return n;
}

Batch MakeBatch(const std::vector<SequenceRow>& rows, int64_t first, int64_t batch_size) {
  TRIB_CHECK(!rows.empty() && batch_size > 0 && first >= 0);
  Batch batch;
  batch.batch_size = batch_size;
  batch.seq_len = static_cast<int64_t>(rows[0].tokens.size()) - 1;
  const size_t T = static_cast<size_t>(batch.seq_len);
  batch.tokens.reserve(static_cast<size_t>(batch_size) * T);
  batch.targets.reserve(static_cast<size_t>(batch_size) * T);
  batch.loss_mask.reserve(static_cast<size_t>(batch_size) * T);
  for (int64_t b = 0; b < batch_size; ++b) {
    const SequenceRow& row = rows[static_cast<size_t>((first + b) % static_cast<int64_t>(rows.size()))];
    TRIB_CHECK(row.tokens.size() == T + 1 && row.loss_mask.size() == T + 1);
    batch.tokens.insert(batch.tokens.end(), row.tokens.begin(), row.tokens.end() - 1);
    batch.targets.insert(batch.targets.end(), row.tokens.begin() + 1, row.tokens.end());
    batch.loss_mask.insert(batch.loss_mask.end(), row.loss_mask.begin() + 1, row.loss_mask.end());
  }
  return batch;
}

uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  TRIB_CHECK(bound > 0);
  // Reject the top partial block of 2^64 so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % bound;
}

std::vector<size_t> ShuffledIndices(size_t n, uint64_t seed) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[UniformBelow(rng, i)]);
  return idx;
}

std::vector<Example> ShuffleExamples(const std::vector<Example>& examples, uint64_t seed) {
  std::vector<Example> out;
  out.reserve(examples.size());
  for (size_t i : ShuffledIndices(examples.size(), seed)) out.push_back(examples[i]);
  return out;
}

Result<TrainHeldOut> SplitTrainHeldOut(const std::vector<Example>& examples, double held_out_fraction, uint64_t seed) {
  if (!(held_out_fraction >= 0.0 && held_out_fraction <= 1.0))
    return Status::InvalidArgument("held-out fraction " + std::to_string(held_out_fraction) + " is not in [0, 1]");
  const auto order = ShuffledIndices(examples.size(), seed);
  const size_t held = static_cast<size_t>(std::llround(held_out_fraction * static_cast<double>(examples.size())));
  TrainHeldOut split;
  for (size_t k = 0; k < order.size(); ++k) (k < held ? split.held_out : split.train).push_back(examples[order[k]]);
  return split;
}

namespace {

double Uniform01Open(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

double StandardNormal(std::mt19937_64& rng) {
  const double u1 = Uniform01Open(rng), u2 = Uniform01Open(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace

double SampleGamma(std::mt19937_64& rng, double shape) {
  TRIB_CHECK(shape > 0);
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    const double g = SampleGamma(rng, shape + 1.0);
    return g * std::pow(Uniform01Open(rng), 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = StandardNormal(rng);
    double v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const double u = Uniform01Open(rng);
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

Result<std::vector<std::vector<Example>>> SplitNonIID(const std::vector<Example>& examples, int64_t num_clients,
                                                      const NonIIDOptions& options) {
  if (num_clients <= 0) return Status::InvalidArgument("non-IID split: num_clients must be > 0");
  const size_t N = static_cast<size_t>(num_clients), n = examples.size();
  std::vector<std::vector<size_t>> assignment(N);
  if (options.mode == NonIIDMode::kContiguous) {
    for (size_t c = 0; c < N; ++c) {
      for (size_t i = c * n / N; i < (c + 1) * n / N; ++i) assignment[c].push_back(i);
    }
  } else {
    if (!(options.alpha > 0)) return Status::InvalidArgument("non-IID split: alpha must be > 0");
    if (static_cast<double>(options.min_per_client) * static_cast<double>(N) > static_cast<double>(n))
      return Status::InvalidArgument("non-IID split: " + std::to_string(n) + " examples cannot give " +
                                     std::to_string(N) + " clients " + std::to_string(options.min_per_client) +
                                     " each");
    // Categories in alphabetical order (pandas Categorical codes), examples of each in file order.
    std::map<std::string, std::vector<size_t>> by_category;
    for (size_t i = 0; i < n; ++i) by_category[examples[i].category].push_back(i);
    std::mt19937_64 rng(options.seed);
    bool ok = false;
    for (int attempt = 0; attempt < options.max_attempts && !ok; ++attempt) {
      for (auto& a : assignment) a.clear();
      for (const auto& [category, members] : by_category) {
        std::vector<size_t> idx = members;
        for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[UniformBelow(rng, i)]);
        std::vector<double> p(N);
        double sum = 0;
        for (size_t c = 0; c < N; ++c) {
          p[c] = SampleGamma(rng, options.alpha);
          // Clients that already hold their fair share get no more (FedML's balancing step).
          if (static_cast<double>(assignment[c].size()) >= static_cast<double>(n) / static_cast<double>(N)) p[c] = 0;
          sum += p[c];
        }
        if (sum <= 0) {
          for (double& x : p) x = 1.0;
          sum = static_cast<double>(N);
        }
        double cumulative = 0;
        size_t begin = 0;
        for (size_t c = 0; c < N; ++c) {
          cumulative += p[c] / sum;
          size_t end = c + 1 == N ? idx.size() : static_cast<size_t>(cumulative * static_cast<double>(idx.size()));
          end = std::clamp(end, begin, idx.size());
          assignment[c].insert(assignment[c].end(), idx.begin() + static_cast<std::ptrdiff_t>(begin),
                               idx.begin() + static_cast<std::ptrdiff_t>(end));
          begin = end;
        }
      }
      ok = true;
      for (const auto& a : assignment) ok = ok && static_cast<int64_t>(a.size()) >= options.min_per_client;
    }
    if (!ok)
      return Status::InvalidArgument("non-IID split: no Dirichlet(alpha=" + std::to_string(options.alpha) +
                                     ") draw gave every client " + std::to_string(options.min_per_client) +
                                     " examples in " + std::to_string(options.max_attempts) + " attempts");
  }
  std::vector<std::vector<Example>> clients(N);
  for (size_t c = 0; c < N; ++c) {
    std::sort(assignment[c].begin(), assignment[c].end());
    for (size_t i : assignment[c]) clients[c].push_back(examples[i]);
  }
  return clients;
}

}  // namespace tributary
