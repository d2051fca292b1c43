#include "agent/trusted_dir.hpp"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <vector>

namespace pns::agent {

namespace {

// As the kernel's own limit on links followed in one lookup (MAXSYMLINKS, fs/namei.c).
constexpr int kMaxLinks = 40;

std::string octal(mode_t mode) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// The components of `path`, without empty ones and ".".
std::deque<std::string> components(const std::string& path) {
    std::deque<std::string> parts;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        std::string part = path.substr(start, end - start);
        if (!part.empty() && part != ".") parts.push_back(std::move(part));
        start = end + 1;
    }
    return parts;
}

std::string join(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

// A directory reopened for reading (an O_PATH fd cannot be read or fsync'd).
Result<UniqueFd> reopen_for_reading(int fd, const std::string& path) {
    UniqueFd dir(::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sys_error("open '" + path + "'");
    return dir;
}

}  // namespace

Status check_trusted(const struct stat& st, uid_t euid, DirRole role, const std::string& what,
                     const std::string& path) {
    const bool owner_ok = st.st_uid == 0 || st.st_uid == euid;
    const bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    const bool sticky = (st.st_mode & S_ISVTX) != 0;
    if (role == DirRole::kOwn) {
        if (!owner_ok)
            return Error{EPERM, what + " is owned by uid " + std::to_string(st.st_uid) +
                                    ", not root; pnsd keeps root's files only in root's "
                                    "directories: chown root '" +
                                    path + "'"};
        if (others_write)
            return Error{EPERM, what + " is writable by group or others (mode " +
                                    octal(st.st_mode) +
                                    "), who could plant files there that pnsd would use as "
                                    "root: chmod go-w '" +
                                    path + "'"};
        return {};
    }
    if (!owner_ok)
        return Error{EPERM, what + " is owned by uid " + std::to_string(st.st_uid) +
                                ", not root, who could swap what lies below it: chown root '" +
                                path + "', or give pnsd a path only root controls"};
    if (others_write && !sticky)
        return Error{EPERM, what + " is writable by group or others and not sticky (mode " +
                                octal(st.st_mode) +
                                "), so anyone could swap what lies below it: chmod go-w '" + path +
                                "', or give pnsd a path only root controls"};
    return {};
}

Result<UniqueFd> open_trusted_dir(const std::string& path, const TrustedDirOptions& options) {
    const std::string kind = options.what;
    if (path.empty()) return Error::invalid(kind + " is empty");
    std::string full = path;
    if (full.front() != '/') {
        char cwd[PATH_MAX];
        if (!::getcwd(cwd, sizeof cwd)) return sys_error("find the working directory");
        full = join(cwd, path);
    }
    const std::string whole = kind + " '" + path + "'";
    auto on_the_way = [&](const std::string& at) {
        return "'" + at + "', on the path to the " + whole + ",";
    };
    const uid_t euid = ::geteuid();

    // One fd per directory walked so far (".." goes back one), and its path for messages.
    std::vector<UniqueFd> fds;
    std::vector<std::string> paths;
    fds.emplace_back(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    paths.emplace_back("/");
    if (!fds.back()) return sys_error("open '/'");
    std::deque<std::string> todo = components(full);
    int links = 0;
    while (!todo.empty()) {
        // Every directory looked into is on the path; where the walk ends is checked below.
        struct stat st {};
        if (::fstat(fds.back().get(), &st) != 0) return sys_error("stat '" + paths.back() + "'");
        if (auto s =
                check_trusted(st, euid, DirRole::kOnPath, on_the_way(paths.back()), paths.back());
            !s)
            return s.error();
        std::string part = std::move(todo.front());
        todo.pop_front();
        if (part == "..") {
            if (fds.size() > 1) {
                fds.pop_back();
                paths.pop_back();
            }
            continue;
        }
        const std::string at = join(paths.back(), part);
        const bool last = todo.empty();
        // O_PATH|O_NOFOLLOW opens a symbolic link itself, so it is seen, not followed.
        UniqueFd next(::openat(fds.back().get(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!next && errno == ENOENT && last && options.create) {
            if (::mkdirat(fds.back().get(), part.c_str(), options.create) != 0 && errno != EEXIST)
                return sys_error("create " + whole);
            next.reset(::openat(fds.back().get(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        }
        if (!next) return sys_error("open " + (last ? whole : "'" + at + "'"));
        struct stat link {};
        if (::fstat(next.get(), &link) != 0) return sys_error("stat '" + at + "'");
        if (S_ISLNK(link.st_mode)) {
            if (link.st_uid != 0 && link.st_uid != euid)
                return Error{EPERM, on_the_way(at) + " is a symbolic link owned by uid " +
                                        std::to_string(link.st_uid) +
                                        "; pnsd follows only root's: give it the real path"};
            if (++links > kMaxLinks) return Error{ELOOP, "too many symbolic links in " + whole};
            char target[PATH_MAX];
            ssize_t n = ::readlinkat(next.get(), "", target, sizeof target - 1);
            if (n < 0) return sys_error("read the symbolic link '" + at + "'");
            std::string text(target, static_cast<std::size_t>(n));
            auto parts = components(text);
            todo.insert(todo.begin(), parts.begin(), parts.end());
            if (text.starts_with('/')) {
                fds.resize(1);
                paths.resize(1);
            }
            continue;
        }
        if (!S_ISDIR(link.st_mode))
            return Error{ENOTDIR, (last ? whole : "'" + at + "'") + " is not a directory"};
        fds.push_back(std::move(next));
        paths.push_back(at);
    }
    struct stat st {};
    if (::fstat(fds.back().get(), &st) != 0) return sys_error("stat " + whole);
    DirRole role = options.sticky_ok ? DirRole::kOnPath : DirRole::kOwn;
    if (auto s = check_trusted(st, euid, role, whole, paths.back()); !s) return s.error();
    return reopen_for_reading(fds.back().get(), path);
}

Result<UniqueFd> open_trusted_subdir(int parent, const std::string& parent_path,
                                     const std::string& name, mode_t create) {
    const std::string path = join(parent_path, name);
    if (create && ::mkdirat(parent, name.c_str(), create) != 0 && errno != EEXIST)
        return sys_error("create directory '" + path + "'");
    UniqueFd fd(::openat(parent, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return sys_error("open '" + path + "'");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("stat '" + path + "'");
    if (S_ISLNK(st.st_mode))
        return Error{ELOOP, "'" + path +
                                "' is a symbolic link; pnsd does not follow links in its own "
                                "directories: remove it"};
    if (!S_ISDIR(st.st_mode)) return Error{ENOTDIR, "'" + path + "' is not a directory"};
    if (auto s = check_trusted(st, ::geteuid(), DirRole::kOwn, "'" + path + "'", path); !s)
        return s.error();
    return reopen_for_reading(fd.get(), path);
}

}  // namespace pns::agent
