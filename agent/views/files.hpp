// The small files beside a view's pins (state.json, id), read and written whole, and the
// directories that hold them. For agent/views only.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.hpp"

namespace pns::agent::detail {

Status make_dir(const std::string& path, mode_t mode);

Result<std::string> read_text(const std::string& path);

// Writes `path` through a temporary file and rename, so a reader sees old or new.
Status write_text(const std::string& path, const std::string& text);

}  // namespace pns::agent::detail
