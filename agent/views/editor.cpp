#include "agent/views/editor.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/views/unions.hpp"

namespace pns::agent::detail {

Error Editor::dst_error(const Entry& entry, const Identity& who, int code) const {
    return Error::from_errno(code, "DST " + quote(entry.target) + " (looked up as uid " +
                                       std::to_string(who.uid) + " in the view)");
}

Result<std::optional<Dst>> Editor::find_dst(const Entry& entry, const Identity& who) {
    auto fd = view_.open_as(who, entry.target, O_PATH | O_NOFOLLOW);
    if (!fd) {
        if (fd.error().code == ENOENT) return std::optional<Dst>{};
        return dst_error(entry, who, fd.error().code);
    }
    Dst dst{std::move(*fd), {}};
    if (::fstat(dst.fd.get(), &dst.st) != 0) return sys_error("stat DST " + quote(entry.target));
    return std::optional<Dst>{std::move(dst)};
}

Result<Ancestor> Editor::existing_ancestor(const Entry& entry, const Identity& who) {
    if (entry.kind == EntryKind::kReadOnly)
        return Error{ENOENT, "ro of " + quote(entry.target) + ": no such path in the view"};
    Ancestor found{{}, parent_of(entry.target), {base_name(entry.target)}};
    for (;;) {
        auto fd = view_.open_as(who, found.path, O_PATH);
        if (fd) {
            struct stat st {};
            if (::fstat(fd->get(), &st) != 0 || !S_ISDIR(st.st_mode))
                return Error{ENOTDIR, "DST " + quote(entry.target) + " cannot be made: " +
                                          quote(found.path) + " is not a directory in the view"};
            found.fd = std::move(*fd);
            return found;
        }
        if (fd.error().code != ENOENT) return dst_error(entry, who, fd.error().code);
        found.missing.push_back(base_name(found.path));
        found.path = parent_of(found.path);
    }
}

Result<std::pair<std::string, std::uint64_t>> Editor::journaled(int at, int tree) {
    auto under = mnt::mount_id(at);
    if (!under) return under.error();
    auto id = mnt::mount_id(tree);
    if (!id) return id.error();
    auto path = mnt::path_of(view_.proc_fds(), at);
    if (!path) return path.error();
    if (auto st = journal_(*path, *under, *id); !st) return st.error();
    return std::pair{std::move(*path), *under};
}

Result<UniqueFd> Editor::build(const Entry& entry, const Dst& dst, std::optional<Source>& ready) {
    switch (entry.kind) {
        case EntryKind::kBind:
            if (!ready) return Error{EIO, "no source prepared for " + quote(entry.source)};
            if (entry.mode != UnionMode::kReplace) return build_union(entry, dst, *ready);
            return std::move(ready->tree);
        case EntryKind::kReadOnly: {
            auto tree = mnt::clone_tree(dst.fd.get(), "");
            if (!tree) return tree;
            if (auto st = mnt::set_attributes(tree->get(), MOUNT_ATTR_RDONLY, 0); !st)
                return st.error();
            return tree;
        }
        case EntryKind::kHide:
            if (!S_ISDIR(dst.st.st_mode)) {
                // A file (or device, fifo, socket) hides behind an empty read-only file,
                // cloned in the host beforehand (open_tree clones only mounts of the
                // namespace it runs in).
                if (!ready) return Error{EIO, "no empty file prepared for " + quote(entry.target)};
                UniqueFd tree = std::move(ready->tree);
                if (auto st = mnt::set_attributes(tree.get(), MOUNT_ATTR_RDONLY, 0); !st)
                    return st.error();
                return tree;
            }
            [[fallthrough]];
        case EntryKind::kTmpfs: {
            if (!S_ISDIR(dst.st.st_mode))
                return Error::invalid("tmpfs of " + quote(entry.target) +
                                      " needs a directory there");
            // An empty directory with the mode and owner of the one it covers; a tmpfs
            // entry's (members write there) bounded in size.
            auto tree = mnt::new_tmpfs(dst.st.st_mode, dst.st.st_uid, dst.st.st_gid,
                                       entry.kind == EntryKind::kTmpfs);
            if (!tree) return tree;
            if (entry.kind == EntryKind::kHide) {
                if (auto st = mnt::set_attributes(tree->get(), MOUNT_ATTR_RDONLY, 0); !st)
                    return st.error();
            }
            return tree;
        }
        case EntryKind::kDeny:
            break;  // not a mount: Views::realize takes deny entries out of the table
    }
    return Error{EINVAL, "unknown entry kind"};
}

Result<std::optional<Dst>> Editor::make_in_skeleton(const Ancestor& at, const Entry& entry,
                                                    const std::optional<Source>& ready) {
    auto id = mnt::mount_id(at.fd.get());
    if (!id) return id.error();
    if (std::find(skeletons_.begin(), skeletons_.end(), *id) == skeletons_.end())
        return std::optional<Dst>{};
    // The skeleton is read-only for members; open it for the moment of the change.
    mount_attr attr{};
    attr.attr_clr = MOUNT_ATTR_RDONLY;
    if (::mount_setattr(at.fd.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
        return sys_error("open the skeleton at " + quote(at.path) + " for a change");
    auto made = make_missing(at.fd.get(), at.path, at.missing, entry, ready);
    attr = mount_attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (::mount_setattr(at.fd.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0 && made)
        return sys_error("make the skeleton at " + quote(at.path) + " read-only again");
    if (!made) return made.error();
    return std::optional<Dst>{std::move(*made)};
}

Result<Dst> Editor::make_missing(int dir, const std::string& ancestor,
                                 const std::vector<std::string>& missing, const Entry& entry,
                                 const std::optional<Source>& ready) {
    UniqueFd at = open_at(dir, ".", O_PATH | O_DIRECTORY, kOneName);
    if (!at) return sys_error("open " + quote(ancestor) + " in the view");
    std::string rel;
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
        rel += (rel.empty() ? "" : "/") + *it;
        bool last = std::next(it) == missing.rend();
        if (!last) {
            if (::mkdirat(at.get(), it->c_str(), 0755) != 0 && errno != EEXIST)
                return sys_error("create " + quote(join(ancestor, rel)) + " in the view");
            UniqueFd next = open_at(at.get(), *it, O_PATH | O_DIRECTORY | O_NOFOLLOW, kOneName);
            if (!next)
                return Error{ENOTDIR, "DST " + quote(entry.target) +
                                          " cannot be made: " + quote(join(ancestor, rel)) +
                                          " is not a directory in the view"};
            at = std::move(next);
            continue;
        }
        bool as_file = false;
        if (entry.kind == EntryKind::kBind && ready) {
            struct stat src {};
            if (::fstat(ready->tree.get(), &src) == 0) as_file = !S_ISDIR(src.st_mode);
        }
        int made = as_file ? ::mknodat(at.get(), it->c_str(), S_IFREG | 0644, 0)
                           : ::mkdirat(at.get(), it->c_str(), 0755);
        if (made != 0) return sys_error("create " + quote(join(ancestor, rel)) + " in the view");
        Dst dst{open_at(at.get(), *it, O_PATH | O_NOFOLLOW, kOneName), {}};
        if (!dst.fd || ::fstat(dst.fd.get(), &dst.st) != 0)
            return sys_error("open " + quote(join(ancestor, rel)) + " in the view");
        return dst;
    }
    return Error{EINVAL, "nothing is missing of " + quote(entry.target)};
}

Result<Editor::Made> Editor::make_skeleton(const Ancestor& at, const Entry& entry,
                                           const std::optional<Source>& ready,
                                           const Identity& who) {
    struct Child {
        std::string name;
        struct stat st;
        std::string link;  // a symlink's target
    };
    std::vector<Child> children;
    UniqueFd listed;
    {
        auto as_user = ScopedFsCredentials::become(who);
        if (!as_user) return Error(std::move(as_user).error());
        // Opened anew for reading through its descriptor, so the permission to list is
        // checked, as `who`, on the very directory that was found.
        listed.reset(::openat(view_.proc_fds(), mnt::fd_name(at.fd.get()).c_str(),
                              O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!listed)
            return Error::from_errno(
                errno, "DST " + quote(entry.target) + " cannot be made: its parent " +
                           quote(at.path) + " cannot be listed by uid " + std::to_string(who.uid));
        int list_fd = ::dup(listed.get());
        DIR* dir = list_fd >= 0 ? ::fdopendir(list_fd) : nullptr;
        if (!dir) {
            if (list_fd >= 0) ::close(list_fd);
            return sys_error("list " + quote(at.path));
        }
        while (struct dirent* d = ::readdir(dir)) {
            Child child{d->d_name, {}, {}};
            if (child.name == "." || child.name == "..") continue;
            if (::fstatat(listed.get(), d->d_name, &child.st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;  // gone meanwhile
            if (S_ISLNK(child.st.st_mode)) {
                child.link.resize(4096);
                ssize_t n =
                    ::readlinkat(listed.get(), d->d_name, child.link.data(), child.link.size());
                if (n < 0) continue;
                child.link.resize(static_cast<std::size_t>(n));
            }
            children.push_back(std::move(child));
        }
        ::closedir(dir);
    }
    struct stat info {};
    if (::fstat(at.fd.get(), &info) != 0) return sys_error("stat " + quote(at.path));
    auto skeleton = mnt::new_tmpfs(info.st_mode, info.st_uid, info.st_gid);
    if (!skeleton) return skeleton.error();

    // Placeholders for the ancestor's entries, created through the detached tmpfs.
    for (const auto& child : children) {
        const char* name = child.name.c_str();
        int made;
        if (S_ISLNK(child.st.st_mode)) {
            made = ::symlinkat(child.link.c_str(), skeleton->get(), name);
            if (made == 0)
                ::fchownat(skeleton->get(), name, child.st.st_uid, child.st.st_gid,
                           AT_SYMLINK_NOFOLLOW);
        } else if (S_ISDIR(child.st.st_mode)) {
            made = ::mkdirat(skeleton->get(), name, 0755);
        } else {
            made = ::mknodat(skeleton->get(), name, S_IFREG | 0644, 0);
        }
        if (made != 0) return sys_error("placeholder for " + quote(join(at.path, child.name)));
    }
    auto dst = make_missing(skeleton->get(), at.path, at.missing, entry, ready);
    if (!dst) return dst.error();

    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (::mount_setattr(skeleton->get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
        return sys_error("make the skeleton of " + quote(at.path) + " read-only");
    auto placed = journaled(at.fd.get(), skeleton->get());
    if (!placed) return placed.error();
    if (auto st = mnt::attach(skeleton->get(), at.fd.get()); !st)
        return Error{st.error().code,
                     "mount a skeleton on " + quote(at.path) + ": " + st.error().message};
    // Each entry of A's own on its placeholder: copied from A below the skeleton (the
    // descriptor was opened before it went on), as `who`, one at a time.
    for (const auto& child : children) {
        if (S_ISLNK(child.st.st_mode)) continue;
        Status done = [&]() -> Status {
            Result<UniqueFd> copy = Error{EIO, "not copied"};
            {
                auto as_user = ScopedFsCredentials::become(who);
                if (!as_user) return Error(std::move(as_user).error());
                copy = mnt::clone_tree(listed.get(), child.name);
            }
            if (!copy) return copy.error();
            UniqueFd placeholder =
                open_at(skeleton->get(), child.name, O_PATH | O_NOFOLLOW, kOneName);
            if (!placeholder) return sys_error("open the placeholder");
            return mnt::attach(copy->get(), placeholder.get());
        }();
        if (!done) {
            (void)view_.detach(skeleton->get());
            return Error{done.error().code, "skeleton of " + quote(at.path) + ": " +
                                                quote(join(at.path, child.name)) + ": " +
                                                done.error().message};
        }
    }
    return Made{std::move(*skeleton), std::move(placed->first), placed->second, std::move(*dst)};
}

Result<UniqueFd> Editor::open_stage() {
    auto top = view_.root();
    if (!top) return top.error();
    UniqueFd fd = open_at(*top, relative(stage_.path), O_PATH | O_DIRECTORY | O_NOFOLLOW, kNoLinks);
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_dev != stage_.dev || st.st_ino != stage_.ino)
        return Error{EPERM, "pnsd's staging directory " + quote(stage_.path) +
                                " is covered in view " + quote(name_) +
                                " (an entry at or above it), so unions cannot be made there"};
    return fd;
}

Result<UniqueFd> Editor::build_union(const Entry& entry, const Dst& dst, Source& source) {
    if (!S_ISDIR(dst.st.st_mode))
        return Error::invalid("a union needs a directory at DST " + quote(entry.target));
    struct stat src {};
    if (!entry.create && (::fstat(source.tree.get(), &src) != 0 || !S_ISDIR(src.st_mode)))
        return Error::invalid("a union needs a directory at SRC " + quote(entry.source));
    auto stage = open_stage();
    if (!stage) return stage.error();
    if (auto placed = journaled(stage->get(), source.tree.get()); !placed) return placed.error();
    if (auto st = mnt::attach(source.tree.get(), stage->get()); !st) return st.error();
    struct Unstage {
        InView& view;
        int tree;
        ~Unstage() { (void)view.detach(tree); }
    } unstage{view_, source.tree.get()};

    // -c: SRC and the work directory, found again in the copy by the names they had and
    // taken only if they are still the directories the requester found.
    UniqueFd upper, work;
    if (entry.create) {
        upper = open_at(source.tree.get(), source.upper_name, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                        kOneName);
        work = open_at(source.tree.get(), source.work_name, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                       kOneName);
        if (!upper || !work || !same_file(upper.get(), source.upper.get()) ||
            !same_file(work.get(), source.work.get()))
            return Error{EAGAIN, "SRC " + quote(entry.source) +
                                     " was moved while the union was made; try again"};
    }
    if (source.mounter && !source.mounter->is_root())
        return build_union_as_user(entry, dst, source);

    UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
    if (!fs) return sys_error("fsopen overlay (is the overlay module loaded?)");
    Status created = mnt::in_directory(view_.proc_fds(), [&]() -> Status {
        auto set = [&](const char* key, int fd, const char* what) -> Status {
            if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, mnt::fd_name(fd).c_str(), 0) != 0)
                return sys_error(std::string("overlayfs ") + key + " (" + what + ")");
            return {};
        };
        std::vector<std::pair<int, const char*>> lower;  // top first
        if (entry.create) {
            if (auto r = set("upperdir", upper.get(), "SRC"); !r) return r;
            if (auto r = set("workdir", work.get(), "its work directory"); !r) return r;
            lower = {{dst.fd.get(), "DST"}};
        } else if (entry.mode == UnionMode::kBefore) {
            lower = {{source.tree.get(), "SRC"}, {dst.fd.get(), "DST"}};
        } else {
            lower = {{dst.fd.get(), "DST"}, {source.tree.get(), "SRC"}};
        }
        for (const auto& [fd, what] : lower) {
            if (auto r = set("lowerdir+", fd, what); !r) return r;
        }
        if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
            return sys_error("create the union at " + quote(entry.target));
        return {};
    });
    if (!created) return created.error();
    UniqueFd tree(::fsmount(fs.get(), FSMOUNT_CLOEXEC, entry.create ? 0 : MOUNT_ATTR_RDONLY));
    if (!tree) return sys_error("fsmount the union at " + quote(entry.target));
    return tree;
}

Result<UniqueFd> Editor::build_union_as_user(const Entry& entry, const Dst& dst,
                                             const Source& source) {
    const Credentials& mounter = *source.mounter;
    unions::Layers layers;
    layers.tree = source.tree.get();
    layers.dst = dst.fd.get();
    layers.source_first = entry.mode == UnionMode::kBefore;
    layers.writable = entry.create;
    layers.upper = source.upper.get();
    layers.work = source.work.get();
    layers.upper_name = source.upper_name;
    layers.work_name = source.work_name;
    auto fs = unions::create_as_user(mounter, layers, view_.proc());
    if (!fs && fs.error().code == EAGAIN)
        return Error{EAGAIN, "SRC " + quote(entry.source) +
                                 " was moved while the union was made; try again"};
    if (!fs)
        return Error{fs.error().code, "the union at " + quote(entry.target) + " (made as uid " +
                                          std::to_string(mounter.uid) + "): " + fs.error().message};
    std::uint64_t attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (!entry.create) attributes |= MOUNT_ATTR_RDONLY;
    UniqueFd tree(::fsmount(fs->get(), FSMOUNT_CLOEXEC, static_cast<unsigned>(attributes)));
    if (!tree) return sys_error("fsmount the union at " + quote(entry.target));
    return tree;
}

}  // namespace pns::agent::detail
