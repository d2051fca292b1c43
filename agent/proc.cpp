#include "agent/proc.hpp"
#include "agent/namespace.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

Result<ino_t> namespace_inode(pid_t pid, const char* type) {
    struct stat st {};
    std::string path = path_of(pid, "ns/") + type;
    if (::stat(path.c_str(), &st) != 0)
        return errno == ENOENT ? Error{ESRCH, "no such process"} : sys_error("stat " + path);
    return st.st_ino;
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
    if (!st || st->uids[0] != uid || st->uids[1] != uid)
        return Error{ESRCH, "the client is gone"};
    return pidfd;
}

bool pidfd_alive(int pidfd) {
    return pidfd >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0;
}

}  // namespace pns::agent::proc

namespace pns::agent {

bool Caller::alive() const {
    return pidfd && proc::pidfd_alive(pidfd->get());
}

}  // namespace pns::agent

namespace pns::agent::proc {

}  // namespace pns::agent::proc
