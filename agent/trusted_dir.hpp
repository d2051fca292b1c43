// The directories pnsd is given (--state-dir, --runtime-dir, the socket's directory, --bpf-dir)
// hold what root relies on: tables, the lock, view pins, the socket, BPF pins. Whoever can
// change what pnsd finds there, or the path that leads there, can make root open, chmod or
// reuse a file of theirs. So pnsd accepts such a directory only when nobody but root can:
//
//   - the directory itself is owned by root (pnsd's euid) and writable by nobody else (no
//     group or other write bit, sticky or not: pnsd makes files of fixed names in it, which a
//     sticky directory still lets anybody make first);
//   - every directory on the path from '/' to it is owned by root and writable by nobody
//     else, or is sticky (/tmp, bpffs' own root, which is 1777 unless mounted with mode=):
//     in a sticky directory others may add names but not rename or remove root's
//     (inode_permission, may_delete: check_sticky), so the path cannot be swapped under pnsd;
//   - a symbolic link on the path is followed only when root owns it.
//
// Checked on the opened directories (fstat of each fd, walked one component at a time with
// O_NOFOLLOW), never by stat of a path, so what is checked is what is used.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

// Where a directory stands: the one pnsd keeps its files in, or one on the way to it.
enum class DirRole { kOwn, kOnPath };

// Whether a directory with these attributes may be trusted in `role` by a pnsd running as
// `euid` (root; another uid only in unit tests). `what` names it in the message ("state
// directory '/var/lib/pns'"), which says how to fix `path`. Pure: the rule alone.
Status check_trusted(const struct stat& st, uid_t euid, DirRole role, const std::string& what,
                     const std::string& path);

struct TrustedDirOptions {
    const char* what = "directory";  // for messages: "state directory", ...
    mode_t create = 0;               // make the last component with this mode if missing
    bool sticky_ok = false;          // the last component is only on the path (--bpf-dir's parent)
};

// Opens the directory at `path` (relative paths from the working directory) for reading, as
// described above; on failure, one line that names the directory and the fix.
Result<UniqueFd> open_trusted_dir(const std::string& path, const TrustedDirOptions& options);

// Opens directory `name` inside the trusted directory `parent` (its path `parent_path`, for
// messages), made with `create` if missing (0: not made), never through a symbolic link, and
// checked like the directory itself.
Result<UniqueFd> open_trusted_subdir(int parent, const std::string& parent_path,
                                     const std::string& name, mode_t create);

}  // namespace pns::agent
