#include "agent/mount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdio>

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

Result<UniqueFd> new_tmpfs(mode_t mode, uid_t uid, gid_t gid) {
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
