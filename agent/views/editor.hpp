// The editor of one view's mount stack, and the view as the mount thread sees it from inside
// (views.hpp). Views::edit decides what to do with plan_edit (plan.hpp) and carries it out with
// an Editor. For agent/views only.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/views/mount.hpp"
#include "agent/views/plan.hpp"
#include "agent/views/sources.hpp"
#include "common/result.hpp"
#include "common/table.hpp"
#include "common/text.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::detail {

// A detached tree taken off a view, kept for an entry that wants it back.
struct Parked {
    Entry entry;
    UniqueFd tree;
};

// The view the worker is in, seen from inside: its root as of now, paths looked up as a given
// user, and pnsd's own mounts found again by mount ID and taken off by descriptor. Nothing
// here follows a path from the view's root with root's rights but the kernel's own names of
// pnsd's mounts (statmount), and those with no link at all.
class InView {
  public:
    InView(int primary, int proc, int proc_fds)
        : primary_(primary), proc_(proc), proc_fds_(proc_fds) {}

    int proc() const { return proc_; }
    int proc_fds() const { return proc_fds_; }

    // The view's root as a process entering it now gets it: setns(CLONE_NEWNS) puts the
    // thread's root at the top of the namespace's root (fs/namespace.c: mntns_install looks
    // "/" up with LOOKUP_DOWN), where a skeleton over "/" sits; a thread keeps the root it got
    // at its setns, even once a mount covers it or it is taken off.
    Result<int> root() {
        if (::setns(primary_, CLONE_NEWNS) != 0) return sys_error("enter the view again");
        root_.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root_) return sys_error("open the view's root");
        return root_.get();
    }

    // `path` of the view as `who` finds it, from the root: what a member of that uid reaches
    // there, and nothing else. Fails with the lookup's errno.
    Result<UniqueFd> open_as(const Identity& who, const std::string& path, std::uint64_t flags) {
        auto top = root();
        if (!top) return top.error();
        auto as_user = ScopedFsCredentials::become(who);
        if (!as_user) return Error(std::move(as_user).error());
        UniqueFd fd = open_at(*top, relative(path), flags, kAsUser);
        if (!fd) return Error::from_errno(errno, "");
        return fd;
    }

    // pnsd's mount with ID `id`, where it is now (renames move mounts with their directory),
    // provided nothing covers it.
    Result<UniqueFd> find(std::uint64_t id) {
        auto top = root();
        if (!top) return top.error();
        auto point = mnt::mount_point(id);
        if (!point) return point.error();
        UniqueFd fd = open_at(*top, relative(*point), O_PATH | O_NOFOLLOW, kNoLinks);
        if (!fd) return sys_error("open " + quote(*point));
        auto at = mnt::mount_id(fd.get());
        if (!at) return at.error();
        if (*at != id) return Error{EBUSY, "it is covered at " + quote(*point)};
        return fd;
    }

    Status detach(int mount) { return mnt::detach(proc_fds_, mount); }

  private:
    int primary_;
    int proc_;  // the host's /proc (O_PATH)
    int proc_fds_;
    UniqueFd root_;
};

// A DST as the editor found it in the view.
struct Dst {
    UniqueFd fd;  // O_PATH, on the mount on top there; its last component never followed
    struct stat st {};
};

// The nearest existing ancestor of a DST that does not exist.
struct Ancestor {
    UniqueFd fd;                       // as the editor found it (O_PATH, a directory)
    std::string path;                  // as the table names it, for messages
    std::vector<std::string> missing;  // the components below it, innermost first
};

// Edits the mount stack of one view; runs on the worker, inside the view. Every entry is one
// mount attached at one place: its DST, or for a DST that does not exist, a skeleton of the
// nearest existing ancestor (see make_skeleton) with the entry's mount inside. Each DST is
// looked up once, as the editor (the requester of a new entry; the owner for one made anew),
// and everything after works from that descriptor.
class Editor {
  public:
    // Writes down a mount about to be attached: where, what is on top there, its ID.
    using Journal =
        std::function<Status(const std::string& path, std::uint64_t under, std::uint64_t id)>;
    struct Stage {
        std::string path;  // <views>/.stage, as pnsd's own namespace names it
        dev_t dev = 0;
        ino_t ino = 0;
    };

    Editor(const std::string& view_name, InView& view, Stage stage, Journal journal,
           std::vector<std::uint64_t> skeletons)
        : name_(view_name),
          view_(view),
          stage_(std::move(stage)),
          journal_(std::move(journal)),
          skeletons_(std::move(skeletons)) {}

    // Takes the top entry of `list` off, keeping it as a detached tree if `park` (for an
    // identical entry put on later: the plan's reusable ones, agent/views/plan.hpp). The
    // mount is found by its ID, wherever it is now, and unmounted by descriptor.
    template <typename List>
    Status take_off_top(List& list, bool park) {
        auto& top = list.back();
        auto at = view_.find(top.mount_id);
        if (!at)
            return Error{EIO, "the mount of " + quote(format_entry(top.entry)) + " in view " +
                                  quote(name_) + " is not as pnsd made it: " + at.error().message};
        if (park) {
            auto saved = mnt::clone_tree(at->get(), "");
            if (!saved) return saved.error();
            parked_.push_back({top.entry, std::move(*saved)});
        }
        if (auto st = view_.detach(at->get()); !st) return st;
        list.pop_back();
        return {};
    }

    // Takes the entries of `list` past `from` off, top first, keeping the reusable ones as
    // detached trees.
    template <typename List>
    Status take_off(List& list, std::size_t from) {
        while (list.size() > from) {
            if (auto st = take_off_top(list, reusable(list.back().entry, list.back().skeleton));
                !st)
                return st;
        }
        return {};
    }

    // Puts `entry` on top, its DST looked up as `who`: the tree it had if it was taken off in
    // this edit, else a new one (`ready` holds a bind's source, looked up beforehand outside
    // the view, or the empty file that hides a file).
    template <typename Item>
    Result<Item> put_on(const Entry& entry, std::optional<Source>& ready, const Identity& who) {
        auto found = find_dst(entry, who);
        if (!found) return found.error();
        std::optional<Made> made;
        Dst dst;
        if (*found) {
            dst = std::move(**found);
        } else {
            auto ancestor = existing_ancestor(entry, who);
            if (!ancestor) return ancestor.error();
            auto inside = make_in_skeleton(*ancestor, entry, ready);
            if (!inside) return inside.error();
            if (*inside) {
                dst = std::move(**inside);
            } else {
                auto skeleton = make_skeleton(*ancestor, entry, ready, who);
                if (!skeleton) return skeleton.error();
                made = std::move(*skeleton);
                dst = std::move(made->dst);
            }
        }
        auto undo = [&](Error error) -> Error {
            if (made) (void)view_.detach(made->skeleton.get());
            return error;
        };
        if (S_ISLNK(dst.st.st_mode))
            return undo(Error::invalid("DST " + quote(entry.target) +
                                       " is a symbolic link in the view; name the path it "
                                       "points to"));
        UniqueFd tree;
        if (auto back = std::find_if(parked_.rbegin(), parked_.rend(),
                                     [&](const Parked& p) { return p.entry == entry; });
            back != parked_.rend()) {
            tree = std::move(back->tree);
            parked_.erase(std::next(back).base());
        } else {
            auto built = build(entry, dst, ready);
            if (!built) return undo(std::move(built).error());
            tree = std::move(*built);
        }
        if (made) {
            if (auto st = mnt::attach(tree.get(), dst.fd.get()); !st)
                return undo(Error{st.error().code,
                                  "mount on " + quote(entry.target) + ": " + st.error().message});
            auto item = record<Item>(entry, made->path, made->skeleton.get(), made->under, true);
            if (item) skeletons_.push_back(item->mount_id);
            return item;
        }
        auto placed = journaled(dst.fd.get(), tree.get());
        if (!placed) return placed.error();
        if (auto st = mnt::attach(tree.get(), dst.fd.get()); !st)
            return Error{st.error().code,
                         "mount on " + quote(entry.target) + ": " + st.error().message};
        return record<Item>(entry, placed->first, tree.get(), placed->second, false);
    }

  private:
    // A skeleton made for a missing DST, attached, and the DST made in it.
    struct Made {
        UniqueFd skeleton;
        std::string path;
        std::uint64_t under = 0;
        Dst dst;
    };

    Error dst_error(const Entry& entry, const Identity& who, int code) const;

    // DST as `who` reaches it in the view, or nothing when it does not exist. Its last
    // component is not followed: a DST that is a symlink is refused by the caller. Links on
    // the way are followed as `who`, inside the view: they lead only where that user could
    // go, and the mount goes where the lookup ended.
    Result<std::optional<Dst>> find_dst(const Entry& entry, const Identity& who);

    // The nearest existing ancestor of a DST that does not exist, as `who` finds it, and the
    // components below it that are missing. Only directories can hold what is to be made.
    Result<Ancestor> existing_ancestor(const Entry& entry, const Identity& who);

    // The way pnsd's journal names where a mount goes (`at`) and what is on top there now,
    // written before the mount `tree` is attached there.
    Result<std::pair<std::string, std::uint64_t>> journaled(int at, int tree);

    template <typename Item>
    static Result<Item> record(const Entry& entry, const std::string& path, int tree,
                               std::uint64_t under, bool skeleton) {
        auto id = mnt::mount_id(tree);
        if (!id) return id.error();
        return Item{entry, path, *id, under, skeleton};
    }

    // A new mount for `entry` over the existing DST.
    Result<UniqueFd> build(const Entry& entry, const Dst& dst, std::optional<Source>& ready);

    // The missing path of `entry` made inside a skeleton pnsd already has over its nearest
    // existing ancestor, if there is one: many missing DSTs below one directory (a private
    // /dev, say) then share a single skeleton instead of each copying the last. Nothing when
    // there is no skeleton there.
    Result<std::optional<Dst>> make_in_skeleton(const Ancestor& at, const Entry& entry,
                                                const std::optional<Source>& ready);

    // Creates the `missing` components (outermost last) below `dir`, a directory of a skeleton
    // of pnsd's: directories, and DST as the kind of thing it will show. A name that is there
    // already (a placeholder for a symlink, say) is never followed.
    static Result<Dst> make_missing(int dir, const std::string& ancestor,
                                    const std::vector<std::string>& missing, const Entry& entry,
                                    const std::optional<Source>& ready);

    // Makes a DST that does not exist appear, in the view only. The nearest existing ancestor
    // A is covered by a read-only tmpfs holding a placeholder for each of A's entries, each
    // with A's own entry bind-mounted on it (with everything mounted below), and the missing
    // path down to DST. So A lists as before and its entries are the real ones, but A itself
    // becomes a fixed listing: names added to or removed from the real A afterwards do not
    // show, and nothing new can be created directly in A inside the view (EROFS).
    //
    // A is listed, and its entries copied, as `who`: a skeleton shows nothing its editor could
    // not list and reach. The placeholders are pnsd's own, in its tmpfs.
    Result<Made> make_skeleton(const Ancestor& at, const Entry& entry,
                               const std::optional<Source>& ready, const Identity& who);

    // pnsd's staging directory in this view, if it is that directory: a lookup with no link,
    // that must end at the very directory pnsd made (an entry may cover it in this view).
    Result<UniqueFd> open_stage();

    // A union of SRC with what DST holds, by overlayfs. Its layers must be mounts of the view
    // (fs/namespace.c: clone_private_mount), so SRC's tree is attached at the stage, a
    // directory no member reaches, for the moment overlayfs takes its own copy. overlayfs
    // looks its layers up as the mounter: it is given the descriptors found as the editor,
    // each by its magic link in /proc/self/fd from the working directory, never a path from
    // the view's root. A union whose mounter is not root (an ordinary user's, and root's -c
    // into a user's directory) is made with the mounter's rights (agent/views/unions.hpp); root's
    // here, as root.
    Result<UniqueFd> build_union(const Entry& entry, const Dst& dst, Source& source);

    // A union whose mounter is not root: created by a child process with the mounter's
    // credentials in a user namespace of its own (unions::create_as_user), and mounted and
    // attached here, with pnsd's rights, like any other entry. Such a file system belongs to
    // that user namespace, so nothing in it elevates a process of the view (fs/namespace.c:
    // mnt_may_suid wants the file system's user namespace to be the process's own or an
    // ancestor of it) and it opens no device (SB_I_NODEV); nosuid and nodev on the mount say so.
    Result<UniqueFd> build_union_as_user(const Entry& entry, const Dst& dst, const Source& source);

    std::string name_;
    InView& view_;
    Stage stage_;
    Journal journal_;
    std::vector<std::uint64_t> skeletons_;  // mount IDs of the skeletons in the view
    std::vector<Parked> parked_;
};

}  // namespace pns::agent::detail
