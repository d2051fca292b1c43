// The kernel's new mount API (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount)
// as small functions that return errors as values. Every function acts in the calling
// thread's mount namespace; agent/views.cpp decides which namespace that is.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pns/result.hpp"
#include "pns/unique_fd.hpp"

namespace pns::agent::mnt {

// A detached copy of the mount tree at `path` (relative to `dirfd`; "" means `dirfd` itself),
// with everything mounted below it, each mount a slave of its original (events flow from the
// original to the copy, never back). It stays private to its fd until attach() places it.
Result<UniqueFd> clone_tree(int dirfd, const std::string& path);

// Mount attributes (MOUNT_ATTR_*) set and cleared on the tree at `fd`, recursively.
Status set_attributes(int fd, std::uint64_t set, std::uint64_t clear);

// Propagation type (MS_SHARED, MS_SLAVE, MS_PRIVATE) of every mount at and below `path`.
Status set_propagation(const std::string& path, std::uint64_t propagation);

// A new, detached tmpfs whose root has the given mode and owner.
Result<UniqueFd> new_tmpfs(mode_t mode, uid_t uid, gid_t gid);

// A new, detached instance of file system `type` (fsopen/fsconfig/fsmount) with the given
// string options and mount attributes (MOUNT_ATTR_*).
Result<UniqueFd> new_fs(const char* type,
                        const std::vector<std::pair<std::string, std::string>>& options,
                        std::uint64_t attributes);

// Attaches the detached tree `tree` on top of `path` (relative to `dirfd`).
Status attach(int tree, int dirfd, const std::string& path);

// Lazily unmounts the topmost mount at `path`, never following a final symlink.
Status detach(const std::string& path);

// The mount ID of the mount `fd` refers to (statx STATX_MNT_ID).
Result<std::uint64_t> mount_id(int fd);

}  // namespace pns::agent::mnt
