// The LSM guard (bpf/guard.bpf.c) as pnsd sees it. It shares the tracker's map of members and
// its ring buffer, and is pinned beside it (guard_* under the tracker's pin directory), so it
// goes on guarding while pnsd is down and a restarted pnsd reuses it. Where the kernel does
// not run BPF LSM programs, open() says why and pnsd serves without it; nothing else depends
// on it, except that `deny` entries are refused.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/bpf/tracker.hpp"
#include "common/result.hpp"
#include "bpf/abi.h"
#include "common/unique_fd.hpp"

namespace pns::agent {

class Guard {
  public:
    // Reuses the guard pinned beside `tracker`, or loads, attaches and pins a new one.
    static Result<std::unique_ptr<Guard>> open(const Tracker& tracker);
    // Unpins a guard pinned beside `tracker`: it stops guarding.
    static void remove(const Tracker& tracker);
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

    // Reused: pinned by an earlier pnsd. Upgraded: by another build, whose programs were
    // replaced by this build's (its rules carried over).
    bool reused() const { return reused_; }
    bool upgraded() const { return upgraded_; }

    // The pnsd whose joins may setns a member of a locked namespace (set at every start).
    Status set_pnsd(pid_t tgid);

    // Shares of the guard's maps (DESIGN.md, decision 8): one user's namespaces may hold at
    // most kMaxDeniedPerUser entries in `denied` and as many in `denied_names`; all non-root
    // owners together leave the last kDeniedRootReserve of each map and kGuardedRootReserve
    // of `guarded` to root's namespaces, so no user filling the maps can switch off root's
    // rules. A change that does not fit is refused and leaves the maps as they were.
    static constexpr std::size_t kMaxDeniedPerUser = 4096;
    static constexpr std::size_t kDeniedRootReserve = PNS_MAX_DENIED / 4;
    static constexpr std::size_t kGuardedRootReserve = PNS_MAX_GUARDED / 4;

    // What the guard enforces for the namespace named `ns` in the maps (the inode of its
    // primary view), owned by `owner`: `flags` (enum pns_guard_flags) and exactly the files in
    // `denied` and the names in `denied_names`. All or nothing: on failure (EDQUOT when over
    // a share above) the maps are as they were.
    Status set_rules(std::uint32_t ns, uid_t owner, std::uint32_t flags,
                     const std::vector<std::pair<pns_denied_file, pns_denied_generation>>& denied,
                     const std::vector<pns_denied_name>& denied_names);
    Status forget(std::uint32_t ns);
    // Drops the rules of every namespace not in `live` (left by a pnsd that died between
    // removing a table and its rules).
    void keep_only(const std::vector<std::uint32_t>& live);

    std::uint64_t refusals() const;
    std::size_t guarded() const;
    std::size_t denied() const;

  private:
    Guard(std::string dir, bool reused);
    // Loads and attaches this build's guard and pins its maps and links. With `replacing`, a
    // guard of another build is pinned there: its maps' entries are copied into the new maps
    // (where their shapes agree) before the new programs are attached, then its pins are
    // replaced.
    Status load_and_pin(const Tracker& tracker, bool replacing);

    // The owner and share of each namespace whose rules this pnsd has set.
    struct Share {
        uid_t owner = 0;
        std::size_t files = 0;
        std::size_t names = 0;
    };
    std::map<std::uint32_t, Share> shares_;

    bool reused_ = false;
    bool upgraded_ = false;
    // The maps, in the order of the layout's names (guard.cpp: guard_layout).
    enum Map : std::size_t { kGuarded, kDenied, kDeniedNames, kConfig, kRefusals };
    int fd(Map map) const { return pins_.fd(map); }
    bpf::PinnedObject pins_;
};

// The kernel's dev_t of a file system as the LSM hooks see it, from stat(2)'s st_dev.
std::uint32_t kernel_dev(dev_t dev);

// What a refusal (enum pns_refusal) refused, for logs and events.
const char* refusal_name(std::uint32_t what);

}  // namespace pns::agent
