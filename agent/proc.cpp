#include "agent/proc.hpp"
#include "agent/namespaces/namespace.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace pns::agent::proc {

namespace {

constexpr unsigned kPfKthread = 0x00200000;  // include/linux/sched.h

Result<std::string> read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? Error{ESRCH, "no such process"} : sys_error("open " + path);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    int err = errno;
    ::close(fd);
    // A process that exits while its file is read leaves it empty (or ESRCH).
    if (n < 0) return err == ESRCH ? Error{ESRCH, "no such process"} : Error::from_errno(err, path);
    if (text.empty()) return Error{ESRCH, "no such process"};
    return text;
}

std::string path_of(pid_t pid, const char* file) {
    return "/proc/" + std::to_string(pid) + "/" + file;
}

template <typename T, std::size_t N>
void parse_ids(std::string_view value, std::array<T, N>& out) {
    const char* p = value.data();
    const char* end = value.data() + value.size();
    for (auto& id : out) {
        while (p < end && (*p == ' ' || *p == '\t')) ++p;
        char* next = nullptr;
        id = static_cast<T>(std::strtoul(p, &next, 10));
        p = next;
    }
}

void parse_group_list(std::string_view value, std::vector<gid_t>& out) {
    std::string text(value);
    const char* p = text.c_str();
    for (;;) {
        while (*p == ' ' || *p == '\t') ++p;
        if (!*p) break;
        char* next = nullptr;
        out.push_back(static_cast<gid_t>(std::strtoul(p, &next, 10)));
        if (next == p) break;
        p = next;
    }
}

std::uint64_t parse_hex(std::string_view value) {
    return std::strtoull(std::string(value).c_str(), nullptr, 16);
}

}  // namespace

Result<Status> read_status(pid_t pid) {
    auto text = read_file(path_of(pid, "status"));
    if (!text) return Error(std::move(text).error());
    Status st;
    std::string_view rest(*text);
    while (!rest.empty()) {
        auto eol = rest.find('\n');
        std::string_view line = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 1);
        auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        if (key == "Name")
            st.name = std::string(value);
        else if (key == "State")
            st.state = value.empty() ? '?' : value.front();
        else if (key == "Tgid")
            st.tgid = std::atoi(std::string(value).c_str());
        else if (key == "PPid")
            st.ppid = std::atoi(std::string(value).c_str());
        else if (key == "TracerPid")
            st.tracer = std::atoi(std::string(value).c_str());
        else if (key == "Uid")
            parse_ids(value, st.uids);
        else if (key == "Gid")
            parse_ids(value, st.gids);
        else if (key == "Threads")
            st.threads = std::atoi(std::string(value).c_str());
        else if (key == "CapInh")
            st.cap_inheritable = parse_hex(value);
        else if (key == "CapPrm")
            st.cap_permitted = parse_hex(value);
        else if (key == "CapEff")
            st.cap_effective = parse_hex(value);
        else if (key == "Groups")
            parse_group_list(value, st.groups);
        else if (key == "CapBnd")
            st.cap_bounding = parse_hex(value);
        else if (key == "CapAmb")
            st.cap_ambient = parse_hex(value);
        else if (key == "Seccomp")
            st.seccomp = std::atoi(std::string(value).c_str());
    }
    return st;
}

Result<Stat> read_stat(pid_t pid) {
    auto text = read_file(path_of(pid, "stat"));
    if (!text) return Error(std::move(text).error());
    // "PID (COMM) STATE PPID ...": COMM may hold anything, so fields count from its last ')'.
    auto close = text->rfind(')');
    if (close == std::string::npos) return Error{EIO, "unreadable " + path_of(pid, "stat")};
    Stat st;
    const char* p = text->c_str() + close + 2;  // at field 3, the state
    for (int field = 3; field <= 22 && *p; ++field) {
        if (field == 9) st.flags = static_cast<unsigned>(std::strtoul(p, nullptr, 10));
        if (field == 22) st.start_time = std::strtoull(p, nullptr, 10);
        while (*p && *p != ' ') ++p;
        while (*p == ' ') ++p;
    }
    return st;
}

bool is_kernel_thread(const Stat& stat) {
    return (stat.flags & kPfKthread) != 0;
}

bool Identity::operator==(const Identity& other) const {
    return uids == other.uids && gids == other.gids && groups == other.groups &&
           cap_inheritable == other.cap_inheritable && cap_permitted == other.cap_permitted &&
           cap_effective == other.cap_effective && cap_bounding == other.cap_bounding &&
           cap_ambient == other.cap_ambient && proc_uid == other.proc_uid &&
           proc_gid == other.proc_gid && user_ns == other.user_ns;
}

Result<Identity> read_identity(pid_t pid) {
    auto status = read_status(pid);
    if (!status) return Error(std::move(status).error());
    Identity id;
    id.uids = status->uids;
    id.gids = status->gids;
    id.groups = status->groups;
    id.cap_inheritable = status->cap_inheritable;
    id.cap_permitted = status->cap_permitted;
    id.cap_effective = status->cap_effective;
    id.cap_bounding = status->cap_bounding;
    id.cap_ambient = status->cap_ambient;
    // Not the directory /proc/PID itself: that one belongs to the euid whatever the
    // dumpability (task_dump_owner makes an exception of world-readable directories).
    struct stat st {};
    std::string dir = "/proc/" + std::to_string(pid);
    if (::stat((dir + "/status").c_str(), &st) != 0) return Error{ESRCH, "no such process"};
    id.proc_uid = st.st_uid;
    id.proc_gid = st.st_gid;
    auto user = namespace_inode(pid, "user");
    if (!user) return Error(std::move(user).error());
    id.user_ns = *user;
    // A process that is exiting has no program any more: it stays 0.
    if (::stat((dir + "/exe").c_str(), &st) == 0) {
        id.exe_dev = st.st_dev;
        id.exe_ino = st.st_ino;
    }
    return id;
}

namespace {

std::string hex(std::uint64_t value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%" PRIx64, value);
    return buf;
}

template <typename T>
void compare(std::string& out, const char* what, const T& was, const T& now,
             std::string (*show)(const T&)) {
    if (was == now) return;
    if (!out.empty()) out += ", ";
    out += std::string(what) + " " + show(was) + " -> " + show(now);
}

std::string number(const unsigned& v) {
    return std::to_string(v);
}
std::string capabilities(const std::uint64_t& v) {
    return hex(v);
}
std::string group_list(const std::vector<gid_t>& groups) {
    std::string s = "[";
    for (gid_t g : groups) s += (s.size() > 1 ? " " : "") + std::to_string(g);
    return s + "]";
}

}  // namespace

std::string identity_change(const Identity& was, const Identity& now) {
    static const char* const kUids[] = {"uid", "euid", "saved uid", "fs uid"};
    static const char* const kGids[] = {"gid", "egid", "saved gid", "fs gid"};
    std::string out;
    for (std::size_t i = 0; i < 4; ++i) {
        compare<unsigned>(out, kUids[i], was.uids[i], now.uids[i], number);
        compare<unsigned>(out, kGids[i], was.gids[i], now.gids[i], number);
    }
    compare(out, "groups", was.groups, now.groups, group_list);
    compare(out, "CapPrm", was.cap_permitted, now.cap_permitted, capabilities);
    compare(out, "CapEff", was.cap_effective, now.cap_effective, capabilities);
    compare(out, "CapInh", was.cap_inheritable, now.cap_inheritable, capabilities);
    compare(out, "CapBnd", was.cap_bounding, now.cap_bounding, capabilities);
    compare(out, "CapAmb", was.cap_ambient, now.cap_ambient, capabilities);
    // (The owner of /proc/PID/status follows the euid and egid, said above, while it is
    // dumpable.)
    if (was.dumpable() != now.dumpable()) {
        if (!out.empty()) out += ", ";
        out += now.dumpable() ? "dumpable again" : "no longer dumpable";
    } else if (out.empty() && (was.proc_uid != now.proc_uid || was.proc_gid != now.proc_gid)) {
        out = "owner of /proc/PID/status " + std::to_string(was.proc_uid) + ":" +
              std::to_string(was.proc_gid) + " -> " + std::to_string(now.proc_uid) + ":" +
              std::to_string(now.proc_gid);
    }
    if (was.user_ns != now.user_ns) {
        if (!out.empty()) out += ", ";
        out += "another user namespace";
    }
    return out;
}

Result<ino_t> namespace_inode(pid_t pid, const char* type) {
    struct stat st {};
    std::string path = path_of(pid, "ns/") + type;
    if (::stat(path.c_str(), &st) != 0)
        return errno == ENOENT ? Error{ESRCH, "no such process"} : sys_error("stat " + path);
    return st.st_ino;
}

std::vector<ProcessMount> processes_by_mount_namespace() {
    std::vector<ProcessMount> found;
    DIR* d = ::opendir("/proc");
    if (!d) return found;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        auto pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (auto mnt = namespace_inode(pid, "mnt"); mnt) found.push_back({pid, *mnt});
    }
    ::closedir(d);
    return found;
}

std::string cgroup_path(pid_t pid) {
    auto text = read_file(path_of(pid, "cgroup"));
    if (!text) return {};
    std::string_view rest(*text);
    while (!rest.empty()) {
        auto eol = rest.find('\n');
        std::string_view line = rest.substr(0, eol);
        if (line.starts_with("0::")) return std::string(line.substr(3));
        if (eol == std::string_view::npos) break;
        rest.remove_prefix(eol + 1);
    }
    return {};
}

Result<std::string> read_link(pid_t pid, const char* link) {
    std::string path = path_of(pid, link);
    std::string target(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0) return errno == ENOENT ? Error{ESRCH, "no such process"} : sys_error("read " + path);
    if (static_cast<std::size_t>(n) >= target.size())
        return Error{ENAMETOOLONG, path + " is too long"};
    target.resize(static_cast<std::size_t>(n));
    return target;
}

// Linux 6.5 (include/uapi/asm-generic/socket.h); glibc 2.36 does not name it.
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

Result<UniqueFd> peer_pidfd(int socket, pid_t pid, uid_t uid) {
    int fd = -1;
    socklen_t len = sizeof fd;
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0) {
        UniqueFd pidfd(fd);
        // The kernel hands it without O_CLOEXEC (net/core/sock.c: pidfd_prepare(..., 0)).
        ::fcntl(pidfd.get(), F_SETFD, FD_CLOEXEC);
        return pidfd;
    }
    if (errno != ENOPROTOOPT && errno != EINVAL) return Error{ESRCH, "the client is gone"};
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return Error{ESRCH, "the client is gone"};
    // Opened after the fact: the pid may have been reused since the client connected. A
    // process of another user is not the client; one of the same user is no gain to it.
    auto st = read_status(pid);
    if (!st || st->uids[0] != uid || st->uids[1] != uid) return Error{ESRCH, "the client is gone"};
    return pidfd;
}

bool pidfd_alive(int pidfd) {
    return pidfd >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0;
}

Result<UniqueFd> open_pidfd(pid_t pid) {
    if (pid <= 0) return Error{ESRCH, "no process " + std::to_string(pid)};
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) {
        // EINVAL: a thread that does not lead its group.
        if (errno == ESRCH || errno == EINVAL)
            return Error{ESRCH, "no process " + std::to_string(pid)};
        return sys_error("pidfd_open " + std::to_string(pid));
    }
    ::fcntl(pidfd.get(), F_SETFD, FD_CLOEXEC);  // pidfd_open sets it; said for the reader
    return pidfd;
}

pns::Status signal_pidfd(int pidfd, int sig) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0)
        return sys_error("pidfd_send_signal");
    return {};
}

std::uint64_t start_ticks(std::uint64_t start_ns) {
    // fs/proc/array.c: nsec_to_clock_t(start_boottime), USER_HZ ticks a second.
    static const std::uint64_t ns_per_tick =
        1000000000ULL / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
    return start_ns / ns_per_tick;
}

Result<UniqueFd> open_pidfd_started(pid_t pid, std::uint64_t start_ns) {
    auto pidfd = open_pidfd(pid);
    if (!pidfd) return pidfd;
    auto stat = read_stat(pid);
    if (!stat || !pidfd_alive(pidfd->get()) || stat->start_time != start_ticks(start_ns))
        return Error{ESRCH, "process " + std::to_string(pid) +
                                " is gone (its pid names another process now)"};
    return pidfd;
}

}  // namespace pns::agent::proc

namespace pns::agent {

bool Caller::alive() const {
    return pidfd && proc::pidfd_alive(pidfd->get());
}

}  // namespace pns::agent
