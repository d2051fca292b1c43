// What pnsd reads about a process from /proc: who owns it, what it is doing, which
// namespaces it is in. Every function fails with ESRCH once the process is gone.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::proc {

struct Status {
    std::string name;  // comm
    char state = '?';  // R, S, D, T, t, Z, X, ...
    pid_t tgid = 0;
    pid_t ppid = 0;
    pid_t tracer = 0;             // TracerPid; 0 when untraced
    std::array<uid_t, 4> uids{};  // real, effective, saved, filesystem
    std::array<gid_t, 4> gids{};  // likewise
    int threads = 0;
    std::vector<gid_t> groups;  // supplementary
    std::uint64_t cap_inheritable = 0;
    std::uint64_t cap_permitted = 0;
    std::uint64_t cap_effective = 0;
    std::uint64_t cap_bounding = 0;
    std::uint64_t cap_ambient = 0;
    int seccomp = 0;  // 0 none, 1 strict, 2 filter
};

Result<Status> read_status(pid_t pid);

// Fields of /proc/PID/stat: the start time (clock ticks after boot; with the pid, it names
// one process for good) and the PF_* flags.
struct Stat {
    std::uint64_t start_time = 0;
    unsigned flags = 0;
};
Result<Stat> read_stat(pid_t pid);

// Whether the task is a kernel thread (PF_KTHREAD).
bool is_kernel_thread(const Stat& stat);

// Who a process is, as far as what it may do goes: what pnsd authorizes a join for, and
// compares again once the process is stopped, before it makes it run any system call
// (DESIGN.md, decision 8). An execve in between changes what matters here when it gains
// privilege: a set-uid or set-gid program changes the ids, file capabilities or a root's exec
// the capabilities, an unreadable program the dumpability. Securebits are not read (/proc does
// not show them): changing them takes CAP_SETPCAP, which only a process authorized as holding
// capabilities has, and an exec does not raise them.
struct Identity {
    std::array<uid_t, 4> uids{};  // real, effective, saved, filesystem
    std::array<gid_t, 4> gids{};
    std::vector<gid_t> groups;
    std::uint64_t cap_inheritable = 0, cap_permitted = 0, cap_effective = 0, cap_bounding = 0,
                  cap_ambient = 0;
    // The owner of /proc/PID/status: the process's euid and egid while it is dumpable, root's
    // once it is not (fs/proc/base.c: task_dump_owner).
    uid_t proc_uid = 0;
    gid_t proc_gid = 0;
    ino_t user_ns = 0;  // the user namespace its capabilities count in
    // The program it runs (not part of the comparison: an exec that changes nothing above
    // gains nothing, and is joined like the program before it).
    dev_t exe_dev = 0;
    ino_t exe_ino = 0;

    bool dumpable() const { return proc_uid == uids[1]; }
    bool operator==(const Identity& other) const;
};

// Reads the identity of process `pid` from /proc.
Result<Identity> read_identity(pid_t pid);

// What changed from `was` to `now`, for a message ("euid 4242 -> 0, saved uid 4242 -> 0"); ""
// when they are equal.
std::string identity_change(const Identity& was, const Identity& now);

// The inode of one of the process's namespaces ("mnt", "user", "pid").
Result<ino_t> namespace_inode(pid_t pid, const char* type);

// Every process /proc lists now (its threads are not listed) with the inode of its mount
// namespace: the one scan of /proc that pnsd's listings make (`ns show` members, `ps`).
// Processes that exit meanwhile are left out.
struct ProcessMount {
    pid_t pid = 0;
    ino_t mnt = 0;
};
std::vector<ProcessMount> processes_by_mount_namespace();

// The process's cgroup2 path (the "0::" line of /proc/PID/cgroup), "" if none.
std::string cgroup_path(pid_t pid);

// A pidfd of the process at the other end of a connected Unix socket: SO_PEERPIDFD (Linux
// 6.5), which names the very process that connected; on older kernels pidfd_open of the
// SO_PEERCRED pid, checked to run as `uid` (a pid reused by another user's process is
// refused). ESRCH when the process is gone.
Result<UniqueFd> peer_pidfd(int socket, pid_t pid, uid_t uid);

// Whether the process behind `pidfd` has not been reaped (pidfd_send_signal with signal 0).
// While it has not, its pid names it and no other process, so what was read under /proc/PID
// after the pidfd was opened and before this answered true was that process's.
bool pidfd_alive(int pidfd);

// A pidfd of process `pid` (pidfd_open): from then on, pnsd acts on that process through it.
// ESRCH when there is no such process.
Result<UniqueFd> open_pidfd(pid_t pid);

// Sends `sig` through a pidfd: to the process it names, never to one that took its pid since.
pns::Status signal_pidfd(int pidfd, int sig);

// A pidfd of process `pid`, checked to be the process that started at `start_ns` (nanoseconds
// after boot, as the kernel keeps it: task_struct.start_boottime, which BPF reads; /proc shows
// it in clock ticks). ESRCH when `pid` now names another process, or none.
Result<UniqueFd> open_pidfd_started(pid_t pid, std::uint64_t start_ns);

// A start time in nanoseconds after boot, in the clock ticks of /proc/PID/stat.
std::uint64_t start_ticks(std::uint64_t start_ns);

// The target of a /proc/PID link ("cwd", "root", "exe").
Result<std::string> read_link(pid_t pid, const char* link);

}  // namespace pns::agent::proc
