// Every path a user gives, looked up once, to a descriptor, as that user (views.hpp): the
// file-system credentials a lookup is made with, openat2's bounds, and a bind's SRC resolved in
// the requester's own view. For agent/views only.
#pragma once

#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/views/unions.hpp"
#include "agent/views/views.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::detail {

// Whose file-system credentials a lookup is made with.
using Identity = Credentials;

// The file-system credentials of the worker thread switched to a user's for a scope. Raw
// system calls on purpose: glibc's setgroups() changes every thread of the process, and only
// this thread may look at the file system as the user. When fsuid leaves 0 the kernel drops
// the file-system capabilities (CAP_DAC_OVERRIDE, ...) from the effective set, and restores
// them when it returns (security/commoncap.c: cap_task_fix_setuid), so every lookup is checked
// exactly as the user's own would be.
class ScopedFsCredentials {
  public:
    static Result<ScopedFsCredentials> become(const Identity& who) {
        return become(who.uid, who.gid, who.groups);
    }
    static Result<ScopedFsCredentials> become(uid_t uid, gid_t gid,
                                              const std::vector<gid_t>& groups) {
        if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0)
            return sys_error("setgroups");
        ScopedFsCredentials scope;
        ::syscall(SYS_setfsgid, gid);
        ::syscall(SYS_setfsuid, uid);
        // setfsuid(2) reports no error; asking again tells whether it took effect.
        if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != uid ||
            static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) != gid)
            return Error{EPERM, "could not take the caller's file-system credentials"};
        return scope;
    }
    ScopedFsCredentials(ScopedFsCredentials&& other) noexcept : active_(other.active_) {
        other.active_ = false;
    }
    ScopedFsCredentials& operator=(ScopedFsCredentials&&) = delete;
    ~ScopedFsCredentials() {
        if (!active_) return;
        ::syscall(SYS_setfsuid, 0);
        ::syscall(SYS_setfsgid, 0);
        ::syscall(SYS_setgroups, 0, nullptr);
    }

  private:
    ScopedFsCredentials() = default;
    bool active_ = true;
};

// A user's path, followed as that user would from the root it is given: symbolic links
// resolved against that root and never out of it, and no /proc magic links (they lead wherever
// their process can reach, whatever the root).
constexpr std::uint64_t kAsUser = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
// One name pnsd made or checks itself, below a descriptor: no link, no other mount.
constexpr std::uint64_t kOneName =
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
// A path the kernel gave (statmount, d_path) or pnsd's own: it holds no link, so none that
// appears there since is followed.
constexpr std::uint64_t kNoLinks = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// A bind's source as the requester found it.
struct Source {
    UniqueFd tree;  // a detached copy of SRC; for a -c union, of the directory that holds it
    // -c: SRC and overlayfs's work directory beside it, as found, and their names in `tree`
    UniqueFd upper, work;
    std::string upper_name, work_name;
    // A union's: whose rights overlayfs works with, when not root's (for -c,
    // unions::writable_mounter; for -b and -a, an ordinary user's own)
    std::optional<Credentials> mounter;
};

// A path's parent directory ("/" for a top-level one).
std::string parent_of(const std::string& path);

// The overlayfs work directory a -c union makes beside its SRC: one per namespace, so two
// namespaces with the same SRC do not share it.
std::string work_dir_name(const std::string& source, const std::string& view);

// `name` in `dir`, both as tables write paths.
std::string join(const std::string& dir, const std::string& name);

// The supplementary groups of a user, for lookups made on their behalf without a process.
std::vector<gid_t> user_groups(uid_t uid, gid_t gid);

// The requester's identity: its groups as the kernel has them now, when it is a process that
// is still the one that asked (its pidfd), else the user's groups from the user database.
Result<Identity> identity_of(const Resolver& who);

// openat2(2): the RESOLVE_* flags bound every step of a lookup, not only its end.
UniqueFd open_at(int dir, const std::string& path, std::uint64_t flags, std::uint64_t resolve);

// An absolute path of a table as openat2 takes it below a root descriptor.
std::string relative(const std::string& path);

// Whether two descriptors are of the same file (device and inode).
bool same_file(int a, int b);

// The last component of a path.
std::string base_name(const std::string& path);

// A user's credentials from the user database, for a union made as the owner of its SRC.
Credentials user_credentials(uid_t uid);

// SRC as the requester sees it: looked up once, in the requester's own mount namespace, below
// its root, with its credentials, and copied (open_tree) from that descriptor. A source the
// requester cannot reach is refused here, so a view never shows anyone what they could not
// see themselves.
//
// With `work_dir`, SRC is the writable layer of a -c union: overlayfs needs its work directory
// on the same mount, beside it, so the copy is of the directory that holds SRC (found from SRC
// itself, so a link as SRC leads to the directory that holds its target), and the work
// directory is made there as the union's mounter (unions::writable_mounter: the requester, or
// for root the owner of SRC), who owns it. overlayfs looks its layers up with the mounter's
// credentials, so it is given these descriptors, never a path (build_union). A `union_layer`
// of an ordinary user's read-only union is theirs too (Source::mounter).
Result<Source> resolve_source(int host, int proc_fds, const Resolver& who, const Identity& as,
                              const std::string& source, const std::string& work_dir = {},
                              bool union_layer = false);

}  // namespace pns::agent::detail
