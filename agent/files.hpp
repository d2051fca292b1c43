// Files pnsd writes whole: one way to replace a file atomically, for the state directory's
// tables and policies (agent/namespaces/store) and a view's state beside its pins
// (agent/views/state).
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pns::agent {

// Writes all of `data` to `fd`, going on after EINTR and short writes.
Status write_all(int fd, std::string_view data);

// Writes `content` to `dir_path`/`file` (dirfd is that directory, open for reading) so that a
// reader or a crash sees the old file or the new one, never a torn one: written to a temporary
// file made anew beside it (".STEM.tmp", STEM being `file` without ".json"; whatever is at that
// name is removed first, and O_EXCL|O_NOFOLLOW writes through nothing else), fsync'd, renamed
// over `file`, and the directory fsync'd.
Status write_file_atomically(int dirfd, const std::string& dir_path, const std::string& file,
                             std::string_view content);

// The name write_file_atomically uses for `file` while it writes it.
std::string temporary_name_of(std::string_view file);

}  // namespace pns::agent
