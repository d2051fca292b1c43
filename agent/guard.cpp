#include "agent/guard.hpp"

#include <dirent.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "agent/bpf.hpp"
#include "guard.skel.h"

namespace pns::agent {

static_assert(sizeof(pns_denied_file) == 16 && offsetof(pns_denied_file, ino) == 8);
static_assert(sizeof(pns_denied_name) == 24 && offsetof(pns_denied_name, name) == 16);
static_assert(sizeof(pns_denied_generation) == 8);

namespace {

constexpr const char* kMaps[] = {"guarded", "denied", "denied_names", "guard_config", "refusals"};
constexpr const char* kPrograms[] = {"guard_mount",      "guard_umount",  "guard_move_mount",
                                     "guard_pivot_root", "guard_capable", "guard_clone",
                                     "guard_open",       "guard_exec",    "guard_receive",
                                     "guard_ptrace"};

std::string map_pin(const std::string& dir, const char* map) {
    return dir + "/guard_map_" + map;
}
std::string link_pin(const std::string& dir, const char* program) {
    return dir + "/guard_link_" + program;
}
std::string stamp_pin(const std::string& dir) {
    return dir + "/guard_build";
}

// Unpins a guard left half-pinned by a start that failed.
void unpin_all(const std::string& dir) {
    for (const char* map : kMaps) ::unlink(map_pin(dir, map).c_str());
    for (const char* program : kPrograms) ::unlink(link_pin(dir, program).c_str());
    ::unlink(stamp_pin(dir).c_str());
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

template <typename Key, typename Value>
Status write_entries(int map, const std::vector<std::pair<Key, Value>>& wanted, const char* what) {
    for (const auto& [k, v] : wanted)
        if (auto st = bpf::update(map, k, v, what); !st) return st;
    return {};
}

// Takes off the entries of `map` for namespace `ns` that are not in `wanted`.
template <typename Key, typename Value>
Status erase_other_entries(int map, std::uint32_t ns,
                           const std::vector<std::pair<Key, Value>>& wanted, const char* what) {
    auto less = [](const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof a) < 0; };
    std::set<Key, decltype(less)> keep(less);
    for (const auto& w : wanted) keep.insert(w.first);
    for (const auto& entry : bpf::dump<Key, Value>(map)) {
        const Key& k = entry.first;
        if (k.ns != ns || keep.contains(k)) continue;
        if (auto st = bpf::erase(map, k, what); !st) return st;
    }
    return {};
}

}  // namespace

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
    bpf_program* programs[] = {skel->progs.guard_mount,      skel->progs.guard_umount,
                               skel->progs.guard_move_mount, skel->progs.guard_pivot_root,
                               skel->progs.guard_capable,    skel->progs.guard_clone,
                               skel->progs.guard_open,       skel->progs.guard_exec,
                               skel->progs.guard_receive,    skel->progs.guard_ptrace};
    static_assert(std::size(programs) == std::size(kPrograms));
    bpf_map* maps[] = {skel->maps.guarded, skel->maps.denied, skel->maps.denied_names,
                       skel->maps.guard_config, skel->maps.refusals};
    UniqueFd* fds[] = {&guarded_, &denied_, &denied_names_, &config_, &refusals_};
    static_assert(std::size(maps) == std::size(kMaps));
    if (replacing) {
        // The old guard's rules, so that the new one refuses what it refused from the start.
        for (std::size_t i = 0; i < std::size(maps); ++i) {
            UniqueFd old(bpf_obj_get(map_pin(dir_, kMaps[i]).c_str()));
            if (!old) continue;
            auto copied = bpf::copy_entries(old.get(), bpf_map__fd(maps[i]));
            if (!copied) return copied.error();
            if (!*copied)
                spdlog::info(
                    "guard: the map {} has another shape in the old build; pnsd "
                    "fills it anew",
                    kMaps[i]);
        }
    }
    // Maps first: a guard whose links are pinned is complete.
    for (std::size_t i = 0; i < std::size(maps); ++i) {
        if (auto st = bpf::pin_replacing(bpf_map__fd(maps[i]), map_pin(dir_, kMaps[i])); !st)
            return Error{st.error().code, "pin the guard's map " + std::string(kMaps[i]) + ": " +
                                              st.error().message};
        fds[i]->reset(bpf::dup_fd(bpf_map__fd(maps[i])));
        if (!*fds[i]) return sys_error("dup");
    }
    for (std::size_t i = 0; i < std::size(programs); ++i) {
        bpf_link* link = bpf_program__attach(programs[i]);
        if (!link) return bpf::libbpf_error(errno, std::string("attach ") + kPrograms[i]);
        auto pinned = bpf::pin_replacing(bpf_link__fd(link), link_pin(dir_, kPrograms[i]));
        bpf_link__destroy(link);  // the pin keeps it attached
        if (!pinned) return pinned.error();
    }
    return {};
}

Result<std::unique_ptr<Guard>> Guard::open(const Tracker& tracker) {
    const std::string& dir = tracker.pin_dir();
    bool all_pinned = true;
    for (const char* map : kMaps) all_pinned = all_pinned && bpf::exists(map_pin(dir, map));
    for (const char* program : kPrograms)
        all_pinned = all_pinned && bpf::exists(link_pin(dir, program));
    // A guard pinned beside a tracker that was loaded afresh shares nothing with it.
    all_pinned = all_pinned && tracker.reused();

    const std::uint64_t stamp = bpf::stamp_of(guard_bpf__elf_bytes);
    std::unique_ptr<Guard> guard(new Guard(all_pinned));
    guard->dir_ = dir;
    if (all_pinned && bpf::pinned_stamp(stamp_pin(dir)) == stamp) {
        UniqueFd* fds[] = {&guard->guarded_, &guard->denied_, &guard->denied_names_,
                           &guard->config_, &guard->refusals_};
        for (std::size_t i = 0; i < std::size(kMaps); ++i) {
            fds[i]->reset(bpf_obj_get(map_pin(dir, kMaps[i]).c_str()));
            if (!*fds[i]) return sys_error("open the pinned map '" + map_pin(dir, kMaps[i]) + "'");
        }
        return guard;
    }
    bpf::QuietLibbpf quiet;
    if (all_pinned) {
        // Another build's guard: this one takes its place without a moment unguarded.
        if (auto st = guard->load_and_pin(tracker, true); st) {
            guard->upgraded_ = true;
            spdlog::info("guard: replaced the programs of another build");
            if (auto pinned = bpf::pin_stamp(stamp_pin(dir), stamp); !pinned) return pinned.error();
            return guard;
        } else {
            spdlog::warn("guard: cannot replace another build's guard in place ({}); loading anew",
                         st.error().message);
            guard->reused_ = false;
        }
    }
    unpin_all(dir);
    if (auto st = guard->load_and_pin(tracker, false); !st) {
        unpin_all(dir);
        return Error{st.error().code, explain_refusal(st.error())};
    }
    if (auto st = bpf::pin_stamp(stamp_pin(dir), stamp); !st) {
        unpin_all(dir);
        return st.error();
    }
    return guard;
}

void Guard::remove(const Tracker& tracker) {
    unpin_all(tracker.pin_dir());
}

Status Guard::set_pnsd(pid_t tgid) {
    pns_guard_config config{static_cast<std::uint32_t>(tgid), 0};
    return bpf::update(config_.get(), std::uint32_t{0}, config, "the guard's config");
}

Status Guard::set_rules(
    std::uint32_t ns, std::uint32_t flags,
    const std::vector<std::pair<pns_denied_file, pns_denied_generation>>& denied,
    const std::vector<pns_denied_name>& names) {
    constexpr const char* kFiles = "the guard's denied files";
    constexpr const char* kNames = "the guard's denied names";
    std::vector<std::pair<pns_denied_name, std::uint8_t>> denied_names;
    for (const auto& n : names) denied_names.emplace_back(n, 1);
    // New files first, then the flags, then stale files: a file denied before and after the
    // change stays denied throughout.
    if (auto st = write_entries(denied_.get(), denied, kFiles); !st) return st;
    if (auto st = write_entries(denied_names_.get(), denied_names, kNames); !st) return st;
    if (flags) {
        if (auto st = bpf::update(guarded_.get(), ns, flags, "the guard's namespaces"); !st)
            return st;
    } else if (auto st = bpf::erase(guarded_.get(), ns, "the guard's namespaces"); !st) {
        return st;
    }
    if (auto st = erase_other_entries(denied_.get(), ns, denied, kFiles); !st) return st;
    return erase_other_entries(denied_names_.get(), ns, denied_names, kNames);
}

Status Guard::forget(std::uint32_t ns) {
    return set_rules(ns, 0, {}, {});
}

std::uint64_t Guard::refusals() const {
    std::uint32_t zero = 0;
    std::uint64_t n = 0;
    bpf_map_lookup_elem(refusals_.get(), &zero, &n);
    return n;
}

std::size_t Guard::guarded() const {
    return bpf::dump<std::uint32_t, std::uint32_t>(guarded_.get()).size();
}

std::size_t Guard::denied() const {
    return bpf::dump<pns_denied_file, pns_denied_generation>(denied_.get()).size();
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
