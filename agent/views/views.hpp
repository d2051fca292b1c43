// Views: every namespace's table realized as a live mount namespace (DESIGN.md, decision 1).
//
// Each namespace has a primary view: a mount namespace owned by the initial user namespace,
// a slave of the host's mount namespace (host mounts made later still appear) and shared
// towards its satellites. Each entry of the table is exactly one mount stacked at its DST, in
// table order, so an edit is: keep the longest common prefix of what is applied and the new
// table, take the rest off (top first), put the new rest on. Taken-off mounts are kept as
// detached clones and reused by identical entries, so a bind's source needs no new lookup and
// a tmpfs keeps its files when an earlier entry changes; and a failed edit puts every one of
// them back.
//
// Pins under <runtime-dir>/views/ (a private mount, so pins never propagate anywhere):
//   NAME/mnt          nsfs bind mount of the primary: keeps it alive while pnsd is down
//   NAME/state.json   the entries applied in the primary, with the mount ID of each
//   NAME/id           the identity of the namespace the view was made for
//   NAME/journal      while an edit runs: each mount about to be made, by mount ID
//
// Every path a user gives is looked up once, to a descriptor, as that user: SRC in the user's
// own view, DST (and a union's layers, and what a skeleton lists) in the view being edited,
// with the user's file-system credentials and openat2's RESOLVE_IN_ROOT. Everything after
// that (clone, overlayfs layers, attach, listing, detach) works from the descriptors, and
// pnsd finds its own mounts again by mount ID, never by a path a user could re-point.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/namespaces/namespace.hpp"
#include "agent/views/worker.hpp"
#include "common/result.hpp"
#include "common/table.hpp"
#include "bpf/abi.h"
#include "common/unique_fd.hpp"

namespace pns::agent {

// Whose view and credentials resolve the sources of new bind entries.
struct Resolver {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;   // the requesting process; 0 resolves in pnsd's own (the host's) view
    int pidfd = -1;  // its pidfd (Caller::pidfd): what was read under /proc/pid is its own
                     // only while this is alive
};

class Views {
  public:
    // Prepares <runtime_dir>/views and makes sure host mounts propagate to views.
    static Result<std::unique_ptr<Views>> open(const std::string& runtime_dir);
    ~Views();

    // Makes the primary view of `ns` show exactly `ns.table`, creating the view if it does not
    // exist. Sources of bind entries not already in the view are resolved as `resolver`.
    // All or nothing: on failure the view is as it was.
    Status realize(const Namespace& ns, const Resolver& resolver);

    // Removes the view: its pins and state. Processes still inside keep their mounts.
    Status destroy(const std::string& name);

    // Which namespace the view was made for (NamespaceId::hex), kept in NAME/id beside its
    // pins, so a view left behind is never taken for a later namespace of the same name.
    // ENOENT: a view made before namespaces had identities.
    Result<std::string> identity(const std::string& name) const;
    Status set_identity(const std::string& name, const NamespaceId& id) const;

    // Names of the views pinned under the runtime dir (to find views of deleted tables).
    Result<std::vector<std::string>> pinned() const;

    // An open fd of the primary's mount namespace, for tests and for joining.
    Result<UniqueFd> primary(const std::string& name) const;
    // The inode of the primary's mount namespace: how the tracker's and the guard's maps name
    // namespace `name` (an nsfs inode number fits their 32 bits: proc_alloc_inum). The one way
    // pnsd finds it.
    Result<std::uint32_t> primary_inode(const std::string& name) const;

    // The satellite of view `name` for a non-root member: a user namespace owned by `uid`
    // that maps only `uid` and `gid`, holding a mount namespace that is a slave of the
    // primary. Created on first use, pinned under NAME/users/UID/{user,mnt}.
    struct Satellite {
        UniqueFd user;
        UniqueFd mnt;
    };
    Result<Satellite> satellite(const std::string& name, uid_t uid, gid_t gid);
    // Whether `uid` has a satellite in `name`'s view (two opens: no scan of the views).
    bool has_satellite(const std::string& name, uid_t uid) const {
        return static_cast<bool>(open_satellite(name, uid));
    }

    // How many mounts the primary view of `name` holds beyond the host's own: what its table
    // made pnsd mount (a per-user bound, agent/namespaces/auth.hpp). Counted in the kernel's mount list
    // of each namespace, so a bind that cloned a whole tree counts every mount of it.
    Result<std::size_t> mounts_made(const std::string& name);

    // The inode numbers of the view's mount namespaces (primary and satellites), by which
    // its members are found in /proc.
    Result<std::vector<ino_t>> namespace_inodes(const std::string& name) const;

    // Every view's namespaces by inode: which view, and whose satellite (uid 0: the primary).
    struct Location {
        std::string name;
        uid_t uid = 0;
    };
    struct Index {
        std::map<ino_t, Location> mnt;   // mount namespaces: primaries and satellites
        std::map<ino_t, Location> user;  // the satellites' user namespaces
    };
    Index index() const;

    // What the LSM guard enforces for a view, found in its primary once the table's mounts
    // are on: the files of `deny` entries (looked up as `resolver`, in the view), by inode and
    // by directory and name (unless the path ends in a symlink or a mount), and whether
    // a non-root user controls what some entry shows (the owner is not root, or a bind shows
    // something a non-root user owns).
    struct GuardFacts {
        std::uint32_t ns = 0;  // the primary's inode: how the BPF maps name the namespace
        std::vector<std::pair<pns_denied_file, pns_denied_generation>> denied;
        std::vector<pns_denied_name> denied_names;
        bool user_controlled = false;
    };
    Result<GuardFacts> guard_facts(const Namespace& ns, const Resolver& resolver);

    // Which entry serves `path` in the view, and what it resolves to, from the table alone
    // (explain_path, agent/views/explain.hpp).
    Result<nlohmann::json> explain(const Namespace& ns, const std::string& path);

    std::string view_dir(const std::string& name) const { return dir_ + "/" + name; }

    // Whether open() found the host's mounts private and made them shared (to be logged).
    bool made_host_shared() const { return host_made_shared_; }

  private:
    struct Applied {
        Entry entry;
        // Where its mount is attached, as the kernel named it then (DST, or for a skeleton the
        // ancestor it covers): for people, never followed again.
        std::string path;
        std::uint64_t mount_id = 0;  // how pnsd finds the mount again
        std::uint64_t under_id = 0;  // the mount that was on top at `path` before it
        bool skeleton = false;       // the mount is a skeleton made for a missing DST
    };
    // A mount about to be attached, written down first, so that a pnsd killed in the middle
    // of an edit leaves enough behind to take everything it made off again.
    struct JournalRecord {
        std::string path;
        std::uint64_t under_id = 0;
        std::uint64_t mount_id = 0;  // 0 in the journals of older pnsds: then by path
    };

    Views(std::string dir, UniqueFd host, UniqueFd proc, UniqueFd proc_fds);
    Result<UniqueFd> open_or_create_primary(const std::string& name);
    Result<Satellite> open_satellite(const std::string& name, uid_t uid) const;
    Result<Satellite> create_satellite(const std::string& name, uid_t uid, gid_t gid);
    Result<std::vector<Applied>> load_state(const std::string& name) const;
    Status save_state(const std::string& name, const std::vector<Applied>& applied) const;
    std::vector<JournalRecord> load_journal(const std::string& name) const;
    // Written through a descriptor opened outside the view: inside it, the runtime directory
    // may be covered by an entry of the view's owner.
    static Status append_journal(int journal, const JournalRecord& record);
    void clear_journal(const std::string& name) const;
    // The edit itself, on the worker. Fails with EIO when the view is not as its state says.
    Status edit(const Namespace& ns, const Resolver& resolver, int primary,
                std::vector<Applied>& applied);
    // Takes off everything pnsd mounted in the view (the records, newest first), so that
    // the whole table can be put on again.
    void scrub(int primary, const std::vector<Applied>& applied,
               const std::vector<JournalRecord>& journal);

    std::string dir_;    // <runtime-dir>/views
    UniqueFd host_;      // the host's mount namespace
    UniqueFd proc_;      // the host's /proc (O_PATH), opened in the host
    UniqueFd proc_fds_;  // pnsd's /proc/self/fd, opened in the host (mnt::open_proc_fds)
    // The directory where a union's SRC is attached for overlayfs to take it (<views>/.stage),
    // by identity: inside a view, only a lookup that ends at this very directory is it.
    dev_t stage_dev_ = 0;
    ino_t stage_ino_ = 0;
    bool host_made_shared_ = false;
    MountWorker worker_;
};

}  // namespace pns::agent
