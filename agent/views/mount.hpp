// The kernel's new mount API (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount)
// as small functions that return errors as values. Every function acts in the calling
// thread's mount namespace; agent/views/views.cpp decides which namespace that is.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::mnt {

// A detached copy of the mount tree at `path` (relative to `dirfd`; "" means `dirfd` itself),
// with everything mounted below it, each mount a slave of its original (events flow from the
// original to the copy, never back). It stays private to its fd until attach() places it.
Result<UniqueFd> clone_tree(int dirfd, const std::string& path);

// Mount attributes (MOUNT_ATTR_*) set and cleared on the tree at `fd`, recursively.
Status set_attributes(int fd, std::uint64_t set, std::uint64_t clear);

// Propagation type (MS_SHARED, MS_SLAVE, MS_PRIVATE) of every mount at and below `path`.
Status set_propagation(const std::string& path, std::uint64_t propagation);

// The bounds of a `tmpfs` entry's file system: without them a tmpfs may take half the
// machine's memory in pages (size) and as much again in inodes (nr_inodes), none of it
// counted against the size (mm/shmem.c: shmem_default_max_blocks, shmem_default_max_inodes).
// Members writing past them get ENOSPC.
inline constexpr std::uint64_t kTmpfsBytes = 64u << 20;
inline constexpr std::uint64_t kTmpfsInodes = 32768;

// A new, detached tmpfs whose root has the given mode and owner; with `bounded`, of at most
// kTmpfsBytes and kTmpfsInodes (a tmpfs members write to; pnsd's own read-only ones, which
// hide a directory or hold a skeleton, need no bound).
Result<UniqueFd> new_tmpfs(mode_t mode, uid_t uid, gid_t gid, bool bounded = false);

// A new, detached instance of file system `type` (fsopen/fsconfig/fsmount) with the given
// string options and mount attributes (MOUNT_ATTR_*).
Result<UniqueFd> new_fs(const char* type,
                        const std::vector<std::pair<std::string, std::string>>& options,
                        std::uint64_t attributes);

// Attaches the detached tree `tree` on top of `path` (relative to `dirfd`).
Status attach(int tree, int dirfd, const std::string& path);

// Attaches the detached tree `tree` on top of what is mounted at the file `target` (an O_PATH
// descriptor) refers to: no path is looked up.
Status attach(int tree, int target);

// Lazily unmounts the topmost mount at `path`, never following a final symlink.
Status detach(const std::string& path);

// pnsd's own /proc/self/fd, opened in the host's mount namespace (`proc_fds` below). Its entry
// for a descriptor is a magic link that leads a lookup to exactly that descriptor's file
// (fs/proc/base.c: proc_fd_link), whatever the calling thread's root holds: a view may have
// anything over /proc, so pnsd never names its descriptors by a path from a view's root.
Result<UniqueFd> open_proc_fds();
std::string fd_name(int fd);

// Runs `job` with the calling thread's working directory at `dir`, and returns it where it
// was: system calls that take only a path (umount2, overlayfs's layer options) then reach a
// descriptor through fd_name(). Only for a thread whose fs_struct is its own (the worker).
Status in_directory(int dir, const std::function<Status()>& job);

// Lazily unmounts the mount `mount` is the root of (an O_PATH descriptor on its root, or the
// tree descriptor that attached it), with its submounts.
Status detach(int proc_fds, int mount);

// The path the kernel names the file of `fd` by, from the calling thread's root (d_path).
Result<std::string> path_of(int proc_fds, int fd);

// Where the mount with unique ID `id` is attached in the calling thread's mount namespace, as
// a path from the thread's root (statmount(2), Linux 6.8). ENOENT when it is in none.
Result<std::string> mount_point(std::uint64_t id);

// The mount ID of the mount `fd` refers to (statx STATX_MNT_ID).
Result<std::uint64_t> mount_id(int fd);

}  // namespace pns::agent::mnt
