#include "agent/views/mount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

namespace pns::agent::mnt {

Result<UniqueFd> clone_tree(int dirfd, const std::string& path) {
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW;
    if (path.empty()) flags |= AT_EMPTY_PATH;
    UniqueFd fd(::open_tree(dirfd, path.c_str(), flags));
    if (!fd) return sys_error("open_tree '" + path + "'");
    // A clone of a shared mount is a peer of the original (fs/pnode.c), and mount and
    // unmount events of a peer's children propagate to every other peer: taking a bound
    // tree off a view again would unmount the original's submounts (the host's /proc, for a
    // bind of '/'). As a slave the clone still receives what happens at the original, and
    // sends nothing back.
    mount_attr attr{};
    attr.propagation = MS_SLAVE;
    if (::mount_setattr(fd.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
        return sys_error("make the clone of '" + path + "' a slave");
    return fd;
}

Status set_attributes(int fd, std::uint64_t set, std::uint64_t clear) {
    mount_attr attr{};
    attr.attr_set = set;
    attr.attr_clr = clear;
    if (::mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
        return sys_error("mount_setattr");
    return {};
}

Status set_propagation(const std::string& path, std::uint64_t propagation) {
    mount_attr attr{};
    attr.propagation = propagation;
    if (::mount_setattr(AT_FDCWD, path.c_str(), AT_RECURSIVE, &attr, sizeof attr) != 0)
        return sys_error("set propagation of '" + path + "'");
    return {};
}

Result<UniqueFd> new_tmpfs(mode_t mode, uid_t uid, gid_t gid, bool bounded) {
    UniqueFd fs(::fsopen("tmpfs", FSOPEN_CLOEXEC));
    if (!fs) return sys_error("fsopen tmpfs");
    char value[32];
    std::snprintf(value, sizeof value, "%o", static_cast<unsigned>(mode & 07777));
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "mode", value, 0) != 0)
        return sys_error("fsconfig tmpfs mode");
    std::snprintf(value, sizeof value, "%u", static_cast<unsigned>(uid));
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "uid", value, 0) != 0)
        return sys_error("fsconfig tmpfs uid");
    std::snprintf(value, sizeof value, "%u", static_cast<unsigned>(gid));
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "gid", value, 0) != 0)
        return sys_error("fsconfig tmpfs gid");
    if (bounded) {
        std::snprintf(value, sizeof value, "%llu", static_cast<unsigned long long>(kTmpfsBytes));
        if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "size", value, 0) != 0)
            return sys_error("fsconfig tmpfs size");
        std::snprintf(value, sizeof value, "%llu", static_cast<unsigned long long>(kTmpfsInodes));
        if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "nr_inodes", value, 0) != 0)
            return sys_error("fsconfig tmpfs nr_inodes");
    }
    if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
        return sys_error("create tmpfs");
    UniqueFd mount(::fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID));
    if (!mount) return sys_error("fsmount tmpfs");
    return mount;
}

Result<UniqueFd> new_fs(const char* type,
                        const std::vector<std::pair<std::string, std::string>>& options,
                        std::uint64_t attributes) {
    UniqueFd fs(::fsopen(type, FSOPEN_CLOEXEC));
    if (!fs) return sys_error(std::string("fsopen ") + type);
    for (const auto& [key, value] : options)
        if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0) != 0)
            return sys_error(std::string("fsconfig ") + type + " " + key + "=" + value);
    if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
        return sys_error(std::string("create ") + type);
    UniqueFd mount(::fsmount(fs.get(), FSMOUNT_CLOEXEC, static_cast<unsigned>(attributes)));
    if (!mount) return sys_error(std::string("fsmount ") + type);
    return mount;
}

Status attach(int tree, int dirfd, const std::string& path) {
    if (::move_mount(tree, "", dirfd, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
        return sys_error("mount on '" + path + "'");
    return {};
}

Status attach(int tree, int target) {
    if (::move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
        return sys_error("mount");
    return {};
}

Result<UniqueFd> open_proc_fds() {
    UniqueFd fd(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open '/proc/self/fd'");
    return fd;
}

std::string fd_name(int fd) {
    return std::to_string(fd);
}

Status in_directory(int dir, const std::function<Status()>& job) {
    UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!here) return sys_error("open the working directory");
    if (::fchdir(dir) != 0) return sys_error("fchdir");
    Status done = job();
    if (::fchdir(here.get()) != 0 && done) done = sys_error("fchdir back");
    return done;
}

Status detach(int proc_fds, int mount) {
    // umount2(2) takes only a path: the magic link of `mount`, named from the working
    // directory. It is followed (no UMOUNT_NOFOLLOW) to the mount itself, and must be its root
    // (fs/namespace.c: path_umount).
    return in_directory(proc_fds, [&]() -> Status {
        if (::umount2(fd_name(mount).c_str(), MNT_DETACH) != 0) return sys_error("unmount");
        return {};
    });
}

Result<std::string> path_of(int proc_fds, int fd) {
    std::string path(4096, '\0');
    ssize_t n = ::readlinkat(proc_fds, fd_name(fd).c_str(), path.data(), path.size());
    if (n < 0) return sys_error("readlink of a descriptor");
    path.resize(static_cast<std::size_t>(n));
    return path;
}

namespace {
// statmount(2) (Linux 6.8; the C library and kernel headers of Debian 12 predate it).
constexpr long kStatmount = 457;  // the same number on every architecture
constexpr std::uint64_t kStatmountMntPoint = 0x10;
struct MntIdReq {
    std::uint32_t size;
    std::uint32_t spare;
    std::uint64_t mnt_id;
    std::uint64_t param;
};
struct Statmount {
    std::uint32_t size, spare1;
    std::uint64_t mask;
    std::uint32_t sb_dev_major, sb_dev_minor;
    std::uint64_t sb_magic;
    std::uint32_t sb_flags, fs_type;
    std::uint64_t mnt_id, mnt_parent_id;
    std::uint32_t mnt_id_old, mnt_parent_id_old;
    std::uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from;
    std::uint32_t mnt_root, mnt_point;
    std::uint64_t spare2[50];
};
static_assert(sizeof(Statmount) == 512, "struct statmount up to its strings (Linux 6.8)");
}  // namespace

Result<std::string> mount_point(std::uint64_t id) {
    MntIdReq request{24, 0, id, kStatmountMntPoint};  // MNT_ID_REQ_SIZE_VER0: this namespace
    std::vector<char> buf(sizeof(Statmount) + 4096);
    for (;;) {
        if (::syscall(kStatmount, &request, buf.data(), buf.size(), 0) == 0) break;
        if (errno == EOVERFLOW && buf.size() < (1u << 20)) {
            buf.resize(buf.size() * 2);
            continue;
        }
        return sys_error("statmount");
    }
    const auto* sm = reinterpret_cast<const Statmount*>(buf.data());
    // Not reachable from the thread's root: no path to give.
    if (!(sm->mask & kStatmountMntPoint)) return Error{ENOENT, "the mount has no path from here"};
    return std::string(buf.data() + sizeof(Statmount) + sm->mnt_point);
}

Status detach(const std::string& path) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
        return sys_error("unmount '" + path + "'");
    return {};
}

Result<std::uint64_t> mount_id(int fd) {
    // Unique mount IDs (Linux 6.8) are never reused; the older ones are, as IDs are freed.
    constexpr unsigned kUniqueMountId = 0x00004000;  // STATX_MNT_ID_UNIQUE
    struct statx st {};
    if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID | kUniqueMountId, &st) !=
        0)
        return sys_error("statx");
    if (!(st.stx_mask & (STATX_MNT_ID | kUniqueMountId)))
        return Error{ENOSYS, "statx gives no mount id"};
    return st.stx_mnt_id;
}

}  // namespace pns::agent::mnt
