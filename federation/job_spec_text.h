// Text helpers shared by the job spec's parser (federation/job_spec.cc) and its canonical form and effective
// YAML (federation/job_spec_canonical.cc). Internal to federation/.
#pragma once

#include <string>
#include <vector>

#include "federation/aggregator.h"
#include "federation/job_spec.h"

namespace tributary::job_spec_text {

// The options sections of the registered methods ("ferret", "lora"): only the chosen method's may be set.
std::vector<std::string> OptionSections();
// A method options section other than the job's own that still applies: ferret's under cluster mode with
// the ferret codec (the pseudo-gradient is projected with those options).
bool SectionApplies(const JobSpec& spec, const std::string& section);
// Whether the aggregation rule uses `key` (the others must stay unset).
bool AggregationKeyApplies(const AggregationOptions& a, const std::string& key);
// Shortest text that parses back to the same double, so the canonical form does not depend on how the
// user wrote a number.
std::string FormatDouble(double v);
// A double-quoted string with JSON-style escapes: one line, unambiguous, also valid YAML.
std::string Quote(const std::string& s);
// ["a", "b"] with Quote's escapes.
std::string QuoteList(const std::vector<std::string>& items);

}  // namespace tributary::job_spec_text
