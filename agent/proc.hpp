// What pnsd reads about a process from /proc: who owns it, what it is doing, which
// namespaces it is in. Every function fails with ESRCH once the process is gone.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>

#include "pns/result.hpp"
#include "pns/unique_fd.hpp"

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
    std::uint64_t cap_inheritable = 0;
    std::uint64_t cap_permitted = 0;
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

// The inode of one of the process's namespaces ("mnt", "user", "pid").
Result<ino_t> namespace_inode(pid_t pid, const char* type);

// The process's cgroup2 path (the "0::" line of /proc/PID/cgroup), "" if none.
std::string cgroup_path(pid_t pid);

// A pidfd of the process at the other end of a connected Unix socket: SO_PEERPIDFD (Linux
// 6.5), which names the very process that connected; on older kernels pidfd_open of the
// SO_PEERCRED pid, checked to run as `uid` (a pid reused by another user's process is
// refused). ESRCH when the process is gone.
Result<UniqueFd> peer_pidfd(int socket, pid_t pid, uid_t uid);

// Whether the process behind `pidfd` has not been reaped (pidfd_send_signal with signal 0).
bool pidfd_alive(int pidfd);

// The target of a /proc/PID link ("cwd", "root", "exe").
Result<std::string> read_link(pid_t pid, const char* link);

}  // namespace pns::agent::proc
