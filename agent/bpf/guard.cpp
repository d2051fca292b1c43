#include "agent/bpf/guard.hpp"

#include <dirent.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "agent/bpf/bpf.hpp"
#include "guard.skel.h"

namespace pns::agent {

static_assert(sizeof(pns_denied_file) == 16 && offsetof(pns_denied_file, ino) == 8);
static_assert(sizeof(pns_denied_name) == 24 && offsetof(pns_denied_name, name) == 16);
static_assert(sizeof(pns_denied_generation) == 8);

namespace {

// The guard's pins, beside the tracker's: guard_map_MAP, guard_link_PROGRAM, guard_build.
bpf::Layout guard_layout() {
    return {.map_prefix = "guard_map_",
            .link_prefix = "guard_link_",
            .stamp_name = "guard_build",
            .maps = {"guarded", "denied", "denied_names", "guard_config", "refusals"},  // Guard::Map
            .programs = {"guard_mount", "guard_umount", "guard_move_mount", "guard_pivot_root",
                         "guard_capable", "guard_clone", "guard_open", "guard_exec",
                         "guard_receive", "guard_ptrace"}};
}

// Why a load failed, in terms an operator can act on. securityfs says which LSMs are active and
// whether the kernel is locked down; it is read detached, as nobody may have mounted it.
std::string explain_refusal(const Error& error) {
    std::string why = error.message;
    auto securityfs = bpf::DetachedFs::open("securityfs");
    if (!securityfs) return why;
    auto first_line = [&](const char* path) {
        auto text = securityfs->read(path);
        return text ? text->substr(0, text->find('\n')) : std::string();
    };
    std::string active = first_line("lsm");
    if (!active.empty() && (',' + active + ',').find(",bpf,") == std::string::npos)
        return why + "; the kernel's active LSMs are '" + active + "' (boot with bpf in lsm=)";
    std::string mode = first_line("lockdown");
    auto open = mode.find('['), close = mode.find(']');
    if (open != std::string::npos && close != std::string::npos) {
        mode = mode.substr(open + 1, close - open - 1);
        if (mode != "none") why += "; the kernel is locked down (" + mode + ")";
    }
    return why;
}

// Keys compared bytewise (the BPF maps' own notion of equal keys).
template <typename Key>
struct KeyLess {
    bool operator()(const Key& a, const Key& b) const { return std::memcmp(&a, &b, sizeof a) < 0; }
};

// One map's change for one namespace: what to add or rewrite, what to take off, and what
// to put back if the change fails half-way.
template <typename Key, typename Value>
struct MapChange {
    std::vector<std::pair<Key, Value>> write;   // new keys, or keys whose value changes
    std::vector<std::pair<Key, Value>> before;  // the old values of rewritten keys
    std::vector<Key> stale;                     // keys of the namespace not wanted any more
    std::size_t added = 0;                      // keys in `write` not in the map yet
    std::size_t total = 0;                      // entries the map holds now (all namespaces)
};

template <typename Key, typename Value>
MapChange<Key, Value> plan(int map, std::uint32_t ns,
                           const std::vector<std::pair<Key, Value>>& wanted) {
    MapChange<Key, Value> change;
    std::map<Key, Value, KeyLess<Key>> mine;
    for (const auto& [k, v] : bpf::dump<Key, Value>(map)) {
        ++change.total;
        if (k.ns == ns) mine.emplace(k, v);
    }
    std::set<Key, KeyLess<Key>> keep;
    for (const auto& [k, v] : wanted) {
        keep.insert(k);
        auto it = mine.find(k);
        if (it == mine.end()) {
            change.write.emplace_back(k, v);
            ++change.added;
        } else if (std::memcmp(&it->second, &v, sizeof v) != 0) {
            change.write.emplace_back(k, v);
            change.before.emplace_back(k, it->second);
        }
    }
    for (const auto& [k, v] : mine)
        if (!keep.contains(k)) change.stale.push_back(k);
    return change;
}

// Takes off the first `written` entries of change.write that were added, and puts back the
// old values of those that were rewritten.
template <typename Key, typename Value>
void undo_writes(int map, const MapChange<Key, Value>& change, std::size_t written) {
    std::map<Key, Value, KeyLess<Key>> old(change.before.begin(), change.before.end());
    for (std::size_t i = 0; i < written; ++i) {
        const Key& k = change.write[i].first;
        auto it = old.find(k);
        if (it != old.end())
            (void)bpf::update(map, k, it->second, "");
        else
            (void)bpf::erase(map, k, "");
    }
}

// Writes change.write; on a failure, takes off what it added and puts back what it rewrote.
template <typename Key, typename Value>
Status apply_writes(int map, const MapChange<Key, Value>& change, const char* what) {
    for (std::size_t i = 0; i < change.write.size(); ++i) {
        const auto& [k, v] = change.write[i];
        if (auto st = bpf::update(map, k, v, what); !st) {
            undo_writes(map, change, i);
            return st;
        }
    }
    return {};
}

// Whether `added` more entries fit in a map of `capacity` holding `total`, leaving `reserve`
// free for root when the owner is not root.
Status fits(std::size_t total, std::size_t added, std::size_t capacity, uid_t owner,
            std::size_t reserve, const char* what) {
    std::size_t limit = owner == 0 ? capacity : capacity - reserve;
    if (added == 0 || total + added <= limit) return {};
    return Error{EDQUOT, std::string("the LSM guard's ") + what + " map is full" +
                             (owner == 0 ? std::string()
                                         : " for ordinary users (" + std::to_string(limit) +
                                               " of " + std::to_string(capacity) +
                                               " entries; the rest is kept for root)")};
}

}  // namespace

Guard::Guard(std::string dir, bool reused)
    : reused_(reused), pins_(std::move(dir), guard_layout()) {}

Status Guard::load_and_pin(const Tracker& tracker, bool replacing) {
    guard_bpf* skel = guard_bpf__open();
    if (!skel) return bpf::libbpf_error(errno, "open the LSM guard");
    struct Close {
        guard_bpf* s;
        ~Close() { guard_bpf__destroy(s); }
    } close{skel};
    if (int err = bpf_map__reuse_fd(skel->maps.members, tracker.members_fd()); err)
        return bpf::libbpf_error(err, "share the tracker's members with the LSM guard");
    if (int err = bpf_map__reuse_fd(skel->maps.events, tracker.events_fd()); err)
        return bpf::libbpf_error(err, "share the tracker's events with the LSM guard");
    if (int err = guard_bpf__load(skel); err) return bpf::libbpf_error(err, "load the LSM guard");
    if (replacing)
        // The old guard's rules, so that the new one refuses what it refused from the start.
        if (auto st = pins_.copy_pinned_maps(skel->obj,
                                             [](const char* map) {
                                                 spdlog::info(
                                                     "guard: the map {} has another shape in "
                                                     "the old build; pnsd fills it anew",
                                                     map);
                                             });
            !st)
            return st;
    // Maps first: a guard whose links are pinned is complete.
    if (auto st = pins_.pin_maps(skel->obj); !st) return st;
    return pins_.attach_and_pin(skel->obj, [](bpf_program* program) -> Result<bpf_link*> {
        bpf_link* link = bpf_program__attach(program);
        if (!link)
            return bpf::libbpf_error(errno, std::string("attach ") + bpf_program__name(program));
        return link;
    });
}

Result<std::unique_ptr<Guard>> Guard::open(const Tracker& tracker) {
    std::unique_ptr<Guard> guard(new Guard(tracker.pin_dir(), false));
    bpf::PinnedObject& pins = guard->pins_;
    // A guard pinned beside a tracker that was loaded afresh shares nothing with it.
    bool all_pinned = pins.all_pinned() && tracker.reused();
    guard->reused_ = all_pinned;
    const std::uint64_t stamp = bpf::stamp_of(guard_bpf__elf_bytes);
    if (all_pinned && pins.has_stamp(stamp)) {
        if (auto st = pins.open_pinned_maps(); !st) return st.error();
        return guard;
    }
    bpf::QuietLibbpf quiet;
    if (all_pinned) {
        // Another build's guard: this one takes its place without a moment unguarded.
        if (auto st = guard->load_and_pin(tracker, true); st) {
            guard->upgraded_ = true;
            spdlog::info("guard: replaced the programs of another build");
            if (auto pinned = pins.pin_stamp(stamp); !pinned) return pinned.error();
            return guard;
        } else {
            spdlog::warn("guard: cannot replace another build's guard in place ({}); loading anew",
                         st.error().message);
            guard->reused_ = false;
        }
    }
    pins.unpin_all();
    if (auto st = guard->load_and_pin(tracker, false); !st) {
        pins.unpin_all();
        return Error{st.error().code, explain_refusal(st.error())};
    }
    if (auto st = pins.pin_stamp(stamp); !st) {
        pins.unpin_all();
        return st.error();
    }
    return guard;
}

void Guard::remove(const Tracker& tracker) {
    bpf::PinnedObject(tracker.pin_dir(), guard_layout()).unpin_all();
}

Status Guard::set_pnsd(pid_t tgid) {
    pns_guard_config config{static_cast<std::uint32_t>(tgid), 0};
    return bpf::update(fd(kConfig), std::uint32_t{0}, config, "the guard's config");
}

Status Guard::set_rules(
    std::uint32_t ns, uid_t owner, std::uint32_t flags,
    const std::vector<std::pair<pns_denied_file, pns_denied_generation>>& denied,
    const std::vector<pns_denied_name>& names) {
    constexpr const char* kFilesWhat = "the guard's denied files";
    constexpr const char* kNamesWhat = "the guard's denied names";
    constexpr const char* kGuardedWhat = "the guard's namespaces";
    std::vector<std::pair<pns_denied_name, std::uint8_t>> denied_names;
    for (const auto& n : names) denied_names.emplace_back(n, 1);

    // Everything is checked before anything is written.
    auto files = plan(fd(kDenied), ns, denied);
    auto by_name = plan(fd(kDeniedNames), ns, denied_names);
    std::uint32_t old_flags = 0;
    bool had_flags = bpf_map_lookup_elem(fd(kGuarded), &ns, &old_flags) == 0;
    if (owner != 0) {
        std::size_t user_files = denied.size(), user_names = denied_names.size();
        for (const auto& [other, share] : shares_) {
            if (other == ns || share.owner != owner) continue;
            user_files += share.files;
            user_names += share.names;
        }
        if (std::max(user_files, user_names) > kMaxDeniedPerUser)
            return Error{EDQUOT, "uid " + std::to_string(owner) + "'s namespaces would deny " +
                                     std::to_string(std::max(user_files, user_names)) +
                                     " files; the LSM guard takes at most " +
                                     std::to_string(kMaxDeniedPerUser) + " for one user"};
    }
    if (auto st = fits(files.total, files.added, PNS_MAX_DENIED, owner, kDeniedRootReserve,
                       "denied files");
        !st)
        return st;
    if (auto st = fits(by_name.total, by_name.added, PNS_MAX_DENIED, owner, kDeniedRootReserve,
                       "denied names");
        !st)
        return st;
    if (flags && !had_flags) {
        std::size_t total = bpf::dump<std::uint32_t, std::uint32_t>(fd(kGuarded)).size();
        if (auto st = fits(total, 1, PNS_MAX_GUARDED, owner, kGuardedRootReserve, "namespaces");
            !st)
            return st;
    }

    // New files first, then the flags, then stale files: a file denied before and after the
    // change stays denied throughout. A failure puts back what was written.
    if (auto st = apply_writes(fd(kDenied), files, kFilesWhat); !st) return st;
    if (auto st = apply_writes(fd(kDeniedNames), by_name, kNamesWhat); !st) {
        undo_writes(fd(kDenied), files, files.write.size());
        return st;
    }
    Status flagged = flags ? bpf::update(fd(kGuarded), ns, flags, kGuardedWhat)
                           : bpf::erase(fd(kGuarded), ns, kGuardedWhat);
    if (!flagged) {
        undo_writes(fd(kDeniedNames), by_name, by_name.write.size());
        undo_writes(fd(kDenied), files, files.write.size());
        return flagged;
    }
    // Taking entries off frees room and cannot fail for want of it; one that does fail is
    // a rule stricter than the table, never a looser one, and goes at the next change.
    for (const auto& k : files.stale)
        if (auto st = bpf::erase(fd(kDenied), k, kFilesWhat); !st)
            spdlog::warn("guard: {}, ignoring", st.error().message);
    for (const auto& k : by_name.stale)
        if (auto st = bpf::erase(fd(kDeniedNames), k, kNamesWhat); !st)
            spdlog::warn("guard: {}, ignoring", st.error().message);
    if (flags || !denied.empty() || !denied_names.empty())
        shares_[ns] = Share{owner, denied.size(), denied_names.size()};
    else
        shares_.erase(ns);
    return {};
}

Status Guard::forget(std::uint32_t ns) {
    return set_rules(ns, 0, 0, {}, {});
}

void Guard::keep_only(const std::vector<std::uint32_t>& live) {
    std::set<std::uint32_t> keep(live.begin(), live.end());
    std::set<std::uint32_t> gone;
    for (const auto& [ns, flags] : bpf::dump<std::uint32_t, std::uint32_t>(fd(kGuarded)))
        if (!keep.contains(ns)) gone.insert(ns);
    for (const auto& [k, v] : bpf::dump<pns_denied_file, pns_denied_generation>(fd(kDenied)))
        if (!keep.contains(k.ns)) gone.insert(k.ns);
    for (const auto& [k, v] : bpf::dump<pns_denied_name, std::uint8_t>(fd(kDeniedNames)))
        if (!keep.contains(k.ns)) gone.insert(k.ns);
    for (std::uint32_t ns : gone)
        if (auto st = forget(ns); !st)
            spdlog::warn("guard: rules of a namespace that is gone: {}", st.error().message);
}

std::uint64_t Guard::refusals() const {
    std::uint32_t zero = 0;
    std::uint64_t n = 0;
    bpf_map_lookup_elem(fd(kRefusals), &zero, &n);
    return n;
}

std::size_t Guard::guarded() const {
    return bpf::dump<std::uint32_t, std::uint32_t>(fd(kGuarded)).size();
}

std::size_t Guard::denied() const {
    return bpf::dump<pns_denied_file, pns_denied_generation>(fd(kDenied)).size();
}

std::uint32_t kernel_dev(dev_t dev) {
    return static_cast<std::uint32_t>((major(dev) << 20) | minor(dev));
}

const char* refusal_name(std::uint32_t what) {
    switch (what) {
        case PNS_REFUSED_MOUNT:
            return "mount";
        case PNS_REFUSED_UMOUNT:
            return "umount";
        case PNS_REFUSED_MOVE_MOUNT:
            return "move_mount";
        case PNS_REFUSED_PIVOT_ROOT:
            return "pivot_root";
        case PNS_REFUSED_MOUNT_SETATTR:
            return "mount_setattr";
        case PNS_REFUSED_SETNS:
            return "setns";
        case PNS_REFUSED_UNSHARE:
            return "unshare";
        case PNS_REFUSED_CLONE:
            return "clone";
        case PNS_REFUSED_OPEN:
            return "open";
        case PNS_REFUSED_PRIVILEGE:
            return "privilege";
        case PNS_REFUSED_OUTSIDE:
            return "outside";
        case PNS_REFUSED_RECEIVE:
            return "receive";
        case PNS_REFUSED_PTRACE:
            return "ptrace";
    }
    return "?";
}

}  // namespace pns::agent
