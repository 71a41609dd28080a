// Small file helpers shared by model I/O, tokenizer and dataset code.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"

namespace tributary {

// Whole file as bytes; NotFound when it does not exist, IOError on other failures (both name the path).
Result<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to a temporary file next to `path`, flushes it and renames it over `path`, so a
// reader never sees a half-written file.
Status WriteFileAtomic(const std::string& path, const std::string& contents);

// A temporary-file name next to `path`, unique within this process and across processes.
std::string TempPathFor(const std::string& path);

// "dir/name" (no doubled separator).
std::string JoinPath(const std::string& dir, const std::string& name);

// Last path component ("a/b/data.jsonl" -> "data.jsonl"), used to keep error messages short.
std::string BaseName(const std::string& path);

// Parses JSON text that must be an object; errors name `source` ("config.json: invalid JSON: ...").
Result<nlohmann::json> ParseJsonObject(const std::string& text, const std::string& source);

}  // namespace tributary
