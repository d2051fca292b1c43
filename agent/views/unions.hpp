// Writable unions (bind -bc): whose rights overlayfs copies files up with, and how such a union
// is made with a user's rights rather than root's.
//
// overlayfs does every operation on its layers with the credentials of the process that
// created it (fs/overlayfs/super.c: ovl_fill_super keeps them as ofs->creator_cred;
// ovl_override_creds puts them on for each operation). When a member renames, changes or opens
// for writing a file of the lower layer (DST), ovl_copy_up copies it into the upper layer (SRC)
// with those credentials, owner, mode and xattrs kept. Made by root, a union copied a
// set-uid-root program a member merely renamed into the member's own SRC, a file the member
// may write but not read, and root-only xattrs (trusted.*, security.capability).
//
// So a writable union is made with the rights of the user whose directory SRC is (its
// mounter, writable_mounter below): in a user namespace of its own that maps only that user's
// uid and groups, by a child process that has those credentials there (create_as_user); and
// so is an ordinary user's read-only union (-b, -a), which made as root showed what the
// mounts below DST cover (overlayfs takes each layer without the mounts below it; made as a
// user, the kernel refuses such a layer: fs/namespace.c clone_private_mount). There the
// kernel copies up only what that user could have copied with `cp -a`:
// - a file whose owner or group the user namespace does not map is never copied up
//   (ovl_copy_up_one: EOVERFLOW), so no root-owned file (set-uid or not) reaches SRC;
// - opening a lower file for writing needs the mounter to be able to read it (ovl_permission
//   asks for MAY_READ as the mounter), and its capabilities there reach only the files of
//   ids the namespace maps (capable_wrt_inode_uidgid), so nothing the user cannot read is
//   copied;
// - trusted.* xattrs are not even listed to it (they need CAP_SYS_ADMIN in the initial user
//   namespace), and security.capability cannot be written where root is not mapped
//   (cap_convert_nscap: EINVAL), so no root-only xattr is copied.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

// Whose file-system credentials a lookup or a mount is made with.
struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    bool is_root() const { return uid == 0; }
};

namespace unions {

// The mounter of a writable union whose SRC is `src` (its owner and mode), edited by `editor`:
// - an ordinary user's union is theirs, wherever SRC is (it holds only what they could copy);
// - root's is root's only where no one else can take a copy out of SRC: SRC is root's, and
//   writable by no one else (or sticky, so others cannot rename or unlink root's files);
// - root's union whose SRC is an ordinary user's directory is made as that user (`user(uid)`
//   gives their gid and groups): the copies land where the user can rename them, so only what
//   the user could copy is copied (root's set-uid programs are not);
// - root's union whose SRC is root's but writable by others is refused.
Result<Credentials> writable_mounter(const Credentials& editor, const struct stat& src,
                                     const std::function<Credentials(uid_t)>& user);

// The layers of a union, as descriptors of the view being edited (the calling thread's mount
// namespace).
struct Layers {
    int tree = -1;  // SRC's copy, attached in the view: of SRC, or (writable) of its directory
    int dst = -1;   // DST in the view
    bool source_first = true;  // read-only: SRC searched before DST (-b) or after it (-a)
    // Writable (-c): SRC is the upper layer, DST the only lower one. SRC and overlayfs's work
    // directory as the editor found them, and their names in `tree`: overlayfs is given them
    // only if they are still those very directories.
    bool writable = false;
    int upper = -1, work = -1;
    std::string upper_name, work_name;
};

// Creates the overlayfs of `layers` with `mounter`'s credentials, in a user namespace of its
// own that maps only the mounter's uid and groups (owned by root, so the mounter has no
// capability over it), and returns its file-system context, created but not mounted: the
// caller mounts it (fsmount) and attaches it in the view with its own rights. `proc` is an
// O_PATH descriptor of the host's /proc. Runs a child process; at most `timeout_ms` long.
Result<UniqueFd> create_as_user(const Credentials& mounter, const Layers& layers, int proc,
                                int timeout_ms = 20000);

// The gid_map of that user namespace: `gid` and `groups`, each mapped to itself, in as few
// lines as runs of consecutive ids allow, and no more than the kernel takes (340 lines, less
// than a page: kernel/user_namespace.c map_write), `gid` first. Ids past that stay unmapped.
std::string gid_map(gid_t gid, const std::vector<gid_t>& groups);

}  // namespace unions
}  // namespace pns::agent
