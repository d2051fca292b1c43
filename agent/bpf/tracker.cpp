#include "agent/bpf/tracker.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "agent/bpf/bpf.hpp"
#include "tracker.skel.h"

namespace pns::agent {

// The layout BPF and pnsd share (bpf/abi.h), checked where both meet.
static_assert(sizeof(pns_member) == 16 && offsetof(pns_member, cgroup) == 8);
static_assert(sizeof(pns_event) == 48 && offsetof(pns_event, cgroup) == 16 &&
              offsetof(pns_event, comm) == 24 && offsetof(pns_event, start_time) == 40);

namespace {

// The tracker's pins: maps by their own names, links as link_PROGRAM, the stamp as build.
bpf::Layout tracker_layout() {
    return {.map_prefix = "",
            .link_prefix = "link_",
            .stamp_name = "build",
            .maps = {"members", "policies", "views", "events", "counters"},  // Tracker::Map
            .programs = {"on_fork", "on_exec", "on_exit", "on_cgroup_attach", "on_setns",
                         "on_unshare"}};
}

}  // namespace

using bpf::libbpf_error;

Tracker::Tracker(std::string dir, bool reused)
    : pins_(std::move(dir), tracker_layout()), reused_(reused) {}

Tracker::~Tracker() {
    if (ring_) ring_buffer__free(ring_);
}

Status Tracker::remove(const std::string& pin_dir) {
    DIR* d = ::opendir(pin_dir.c_str());
    if (!d) return errno == ENOENT ? Status{} : sys_error("open '" + pin_dir + "'");
    while (struct dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        ::unlink((pin_dir + "/" + name).c_str());
    }
    ::closedir(d);
    if (::rmdir(pin_dir.c_str()) != 0 && errno != ENOENT)
        return sys_error("remove '" + pin_dir + "'");
    return {};
}

Status Tracker::load_and_pin(Tracker& tracker, bool keep_maps) {
    tracker_bpf* skel = tracker_bpf__open();
    if (!skel) return libbpf_error(errno, "open the BPF tracker");
    struct Close {
        tracker_bpf* s;
        ~Close() { tracker_bpf__destroy(s); }
    } close{skel};
    if (keep_maps) {
        if (auto st = tracker.pins_.reuse_pinned_maps(skel->obj); !st) return st;
    } else {
        // Every member is a live process, so a map as large as the number of processes the
        // kernel allows cannot be filled by forks, which pnsd has no say in. (A reused map
        // keeps the size it was made with.)
        if (int err = bpf_map__set_max_entries(skel->maps.members,
                                               static_cast<__u32>(members_for_kernel()));
            err)
            return libbpf_error(err, "size the members map");
    }
    if (int err = tracker_bpf__load(skel); err)
        return libbpf_error(err, "load the BPF tracker (tracepoint and tp_btf programs)");
    auto tracefs = bpf::DetachedFs::open("tracefs");
    if (!tracefs) return tracefs.error();
    if (auto st = tracker.pins_.attach_and_pin(
            skel->obj, [&](bpf_program* program) { return bpf::attach(program, *tracefs); });
        !st)
        return st;
    if (keep_maps) return {};
    return tracker.pins_.pin_maps(skel->obj);
}

Result<std::unique_ptr<Tracker>> Tracker::open(const std::string& pin_dir) {
    libbpf_set_print(bpf::log_libbpf);
    const std::uint64_t stamp = bpf::stamp_of(tracker_bpf__elf_bytes);
    std::unique_ptr<Tracker> tracker(new Tracker(pin_dir, false));
    bpf::PinnedObject& pins = tracker->pins_;
    bool all_pinned = pins.all_pinned();
    tracker->reused_ = all_pinned;
    if (all_pinned) {
        if (auto st = pins.open_pinned_maps(); !st) return st.error();
        if (!pins.has_stamp(stamp)) {
            // Another build's programs: this build's take their place on the same maps. The
            // new links are attached before the old ones are unpinned, so no event is missed.
            bpf::QuietLibbpf quiet;
            auto replaced = load_and_pin(*tracker, true);
            if (replaced) {
                tracker->upgraded_ = true;
                spdlog::info("tracker: replaced the programs of another build, kept its maps");
            } else {
                spdlog::warn(
                    "tracker: another build's maps cannot be kept ({}); loading anew, "
                    "what it tracked is lost",
                    replaced.error().message);
                all_pinned = false;
                tracker->reused_ = false;
            }
        }
    }
    if (!all_pinned) {
        // Nothing, or the remains of a start that failed half-way: begin again.
        if (auto st = remove(pin_dir); !st) return st.error();
        if (::mkdir(pin_dir.c_str(), 0700) != 0) return sys_error("create '" + pin_dir + "'");
        if (auto st = load_and_pin(*tracker, false); !st) {
            (void)remove(pin_dir);
            return st.error();
        }
    }
    if (!all_pinned || tracker->upgraded_)
        if (auto st = pins.pin_stamp(stamp); !st) return st.error();
    tracker->ring_ = ring_buffer__new(
        tracker->fd(kEvents),
        [](void* ctx, void* data, size_t size) -> int {
            auto* self = static_cast<Tracker*>(ctx);
            // Programs of an earlier build (until this pnsd replaces them) send events
            // without the start time: it is 0 then.
            if (size >= offsetof(pns_event, start_time) && self->sink_) {
                pns_event event{};
                std::memcpy(&event, data, std::min(size, sizeof event));
                (*self->sink_)(event);
            }
            return 0;
        },
        tracker.get(), nullptr);
    if (!tracker->ring_) return libbpf_error(errno, "open the tracker's ring buffer");
    return tracker;
}

int Tracker::event_fd() const {
    return ring_buffer__epoll_fd(ring_);
}

void Tracker::drain(const std::function<void(const pns_event&)>& on_event) {
    auto sink = on_event;
    sink_ = &sink;
    ring_buffer__consume(ring_);
    sink_ = nullptr;
}

Status Tracker::set_view(std::uint32_t mnt, std::uint32_t ns) {
    return bpf::update(fd(kViews), mnt, ns, "the tracker's views");
}
Status Tracker::remove_view(std::uint32_t mnt) {
    return bpf::erase(fd(kViews), mnt, "the tracker's views");
}
std::vector<std::pair<std::uint32_t, std::uint32_t>> Tracker::views() const {
    return bpf::dump<std::uint32_t, std::uint32_t>(fd(kViews));
}

Status Tracker::set_policy(std::uint64_t cgroup, std::uint32_t ns) {
    return bpf::update(fd(kPolicies), cgroup, ns, "the tracker's policies");
}
Status Tracker::remove_policy(std::uint64_t cgroup) {
    return bpf::erase(fd(kPolicies), cgroup, "the tracker's policies");
}
std::vector<std::pair<std::uint64_t, std::uint32_t>> Tracker::policies() const {
    return bpf::dump<std::uint64_t, std::uint32_t>(fd(kPolicies));
}

std::size_t Tracker::members_for_kernel() {
    auto read_number = [](const char* path) -> std::size_t {
        std::FILE* f = std::fopen(path, "re");
        unsigned long long value = 0;
        if (f) {
            if (std::fscanf(f, "%llu", &value) != 1) value = 0;
            std::fclose(f);
        }
        return static_cast<std::size_t>(value);
    };
    // pid_max bounds the process ids in use, threads-max the tasks (kernel/fork.c:
    // copy_process refuses a fork past max_threads); a process is at least one of each.
    std::size_t pids = read_number("/proc/sys/kernel/pid_max");
    std::size_t threads = read_number("/proc/sys/kernel/threads-max");
    std::size_t most = pids && threads ? std::min(pids, threads) : std::max(pids, threads);
    return std::min<std::size_t>(std::max<std::size_t>(most, PNS_MAX_MEMBERS), 1u << 22);
}

std::size_t Tracker::members_capacity() const {
    bpf_map_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd(kMembers), &info, &len) != 0) return 0;
    return info.max_entries;
}

bool Tracker::has_member(pid_t tgid) const {
    pns_member m{};
    auto key = static_cast<std::uint32_t>(tgid);
    return bpf_map_lookup_elem(fd(kMembers), &key, &m) == 0;
}

bool Tracker::has_view(std::uint32_t mnt) const {
    std::uint32_t ns = 0;
    return bpf_map_lookup_elem(fd(kViews), &mnt, &ns) == 0;
}

Status Tracker::set_member(pid_t tgid, const pns_member& member) {
    return bpf::update(fd(kMembers), static_cast<std::uint32_t>(tgid), member,
                       "the tracker's members");
}
Status Tracker::update_member(pid_t tgid, const pns_member& member) {
    const auto key = static_cast<std::uint32_t>(tgid);
    if (bpf_map_update_elem(fd(kMembers), &key, &member, BPF_EXIST) != 0 && errno != ENOENT)
        return sys_error("update the tracker's members");
    return {};
}
Status Tracker::remove_member(pid_t tgid) {
    return bpf::erase(fd(kMembers), static_cast<std::uint32_t>(tgid), "the tracker's members");
}
std::vector<std::pair<pid_t, pns_member>> Tracker::members() const {
    std::vector<std::pair<pid_t, pns_member>> all;
    for (auto& [tgid, m] : bpf::dump<std::uint32_t, pns_member>(fd(kMembers)))
        all.emplace_back(static_cast<pid_t>(tgid), m);
    return all;
}

std::optional<pns_member> Tracker::member(pid_t tgid) const {
    auto key = static_cast<std::uint32_t>(tgid);
    pns_member m{};
    if (bpf_map_lookup_elem(fd(kMembers), &key, &m) != 0) return std::nullopt;
    return m;
}

std::array<std::uint64_t, PNS_COUNTERS> Tracker::counters() const {
    std::array<std::uint64_t, PNS_COUNTERS> values{};
    for (std::uint32_t i = 0; i < PNS_COUNTERS; ++i)
        bpf_map_lookup_elem(fd(kCounters), &i, &values[i]);
    return values;
}

}  // namespace pns::agent
