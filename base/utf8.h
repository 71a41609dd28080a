// UTF-8 validity: every string a user or a peer gives that ends up in a protobuf string field (job
// names, paths, worker ids) must be valid UTF-8, or the message cannot be encoded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/status.h"

namespace tributary {

// The byte offset of the first invalid sequence in `text` (overlong forms, surrogates and code
// points above U+10FFFF are invalid, as in RFC 3629), or npos when all of it is valid.
size_t FirstInvalidUtf8(std::string_view text);

inline bool IsValidUtf8(std::string_view text) {
  return FirstInvalidUtf8(text) == std::string_view::npos;
}

// `text` with each byte of an invalid sequence written as \xNN, so an error message quoting it stays UTF-8.
std::string EscapeInvalidUtf8(std::string_view text);

// OK when `text` is valid UTF-8; otherwise InvalidArgument "<what>: 'te\xffxt' is not valid UTF-8 (byte N)".
// `what` names where the text came from: "--name", "job.yaml:3: key 'name'", "dataset name".
Status CheckUtf8(std::string_view text, std::string_view what);

}  // namespace tributary
