// The BPF tracker (bpf/tracker.bpf.c) as pnsd sees it: loaded once, its maps and links pinned
// under a directory of bpffs (default /sys/fs/bpf/pns), so tracking goes on while pnsd is
// down and a restarted pnsd reuses them instead of loading a second copy.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/bpf/pinned.hpp"
#include "common/result.hpp"
#include "bpf/abi.h"
#include "common/unique_fd.hpp"

struct ring_buffer;

namespace pns::agent {

class Tracker {
  public:
    // Reuses the tracker pinned under `pin_dir`, or loads, attaches and pins a new one.
    static Result<std::unique_ptr<Tracker>> open(const std::string& pin_dir);
    ~Tracker();  // closes pnsd's handles; the pinned tracker goes on
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;

    // Unpins everything under `pin_dir`: the programs detach once no process holds them.
    static Status remove(const std::string& pin_dir);

    // Reused: pinned by an earlier pnsd, with what it tracked. Upgraded: that pnsd loaded
    // another build of the BPF object; its programs were replaced by this build's, and the maps
    // kept.
    bool reused() const { return reused_; }
    bool upgraded() const { return upgraded_; }
    const std::string& pin_dir() const { return pins_.dir(); }

    // Readable when events wait; drain() hands each to `on_event`.
    int event_fd() const;
    void drain(const std::function<void(const pns_event&)>& on_event);

    Status set_view(std::uint32_t mnt, std::uint32_t ns);
    Status remove_view(std::uint32_t mnt);
    std::vector<std::pair<std::uint32_t, std::uint32_t>> views() const;

    Status set_policy(std::uint64_t cgroup, std::uint32_t ns);
    Status remove_policy(std::uint64_t cgroup);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> policies() const;

    // How many processes the members map can hold (set when it was made: members_for_kernel).
    std::size_t members_capacity() const;
    // The most processes the kernel allows now (the lower of pid_max and threads-max, never
    // below PNS_MAX_MEMBERS): the size a members map is made with.
    static std::size_t members_for_kernel();
    bool has_member(pid_t tgid) const;
    bool has_view(std::uint32_t mnt) const;

    Status set_member(pid_t tgid, const pns_member& member);
    // Changes the entry of `tgid` only if it has one (it has not exited since).
    Status update_member(pid_t tgid, const pns_member& member);
    Status remove_member(pid_t tgid);
    std::vector<std::pair<pid_t, pns_member>> members() const;
    // The entry of one tgid, if there is one.
    std::optional<pns_member> member(pid_t tgid) const;

    std::array<std::uint64_t, PNS_COUNTERS> counters() const;

    // For the guard, which shares these two maps.
    int members_fd() const { return fd(kMembers); }
    int events_fd() const { return fd(kEvents); }

  private:
    Tracker(std::string dir, bool reused);
    // Loads and attaches this build's programs and pins their links (replacing pinned ones).
    // With `keep_maps`, the programs use the pinned maps pnsd has open; without, new maps are
    // made and pinned.
    static Status load_and_pin(Tracker& tracker, bool keep_maps);

    // The maps, in the order of the layout's names (tracker.cpp: tracker_layout).
    enum Map : std::size_t { kMembers, kPolicies, kViews, kEvents, kCounters };
    int fd(Map map) const { return pins_.fd(map); }

    bpf::PinnedObject pins_;
    bool reused_ = false;
    bool upgraded_ = false;
    ring_buffer* ring_ = nullptr;
    std::function<void(const pns_event&)>* sink_ = nullptr;
};

}  // namespace pns::agent
