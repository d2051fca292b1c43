// The small files beside a view's pins (state.json, id), read and written whole, and the
// directories that hold them. For agent/views only.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.hpp"

namespace pns::agent::detail {

Status make_dir(const std::string& path, mode_t mode);

Result<std::string> read_text(const std::string& path);

// Writes `path` (absolute) whole, atomically: agent/files.hpp's write_file_atomically, whose
// temporary file is temporary_name_of(its name).
Status write_text(const std::string& path, const std::string& text);

}  // namespace pns::agent::detail
