#include "agent/views/sources.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "agent/namespaces/auth.hpp"
#include "agent/proc.hpp"
#include "agent/views/files.hpp"
#include "agent/views/mount.hpp"
#include "common/text.hpp"

namespace pns::agent::detail {

namespace {

// The supplementary groups of a process, from /proc/PID/status.
Result<std::vector<gid_t>> process_groups(pid_t pid) {
    auto text = read_text("/proc/" + std::to_string(pid) + "/status");
    if (!text) return Error(std::move(text).error());
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.starts_with("Groups:")) continue;
        std::istringstream fields(line.substr(7));
        std::vector<gid_t> groups;
        gid_t gid;
        while (fields >> gid) groups.push_back(gid);
        return groups;
    }
    return Error{EINVAL, "no Groups: line for pid " + std::to_string(pid)};
}

}  // namespace

std::string parent_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string work_dir_name(const std::string& source, const std::string& view) {
    return "." + source.substr(source.rfind('/') + 1) + ".pns-work." + view;
}

std::string join(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

std::vector<gid_t> user_groups(uid_t uid, gid_t gid) {
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return {gid};
    std::vector<gid_t> groups(64);
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) {
        groups.resize(static_cast<std::size_t>(n));
        ::getgrouplist(pw.pw_name, gid, groups.data(), &n);
    }
    groups.resize(static_cast<std::size_t>(std::max(n, 0)));
    return groups;
}

Result<Identity> identity_of(const Resolver& who) {
    Identity id{who.uid, who.gid, {}};
    if (who.pid > 0) {
        auto groups = process_groups(who.pid);
        if (!groups || !proc::pidfd_alive(who.pidfd))
            return Error{ESRCH, "the requesting process is gone"};
        id.groups = std::move(*groups);
    } else {
        id.groups = user_groups(who.uid, who.gid);
    }
    return id;
}

UniqueFd open_at(int dir, const std::string& path, std::uint64_t flags, std::uint64_t resolve) {
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.resolve = resolve;
    return UniqueFd(static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how)));
}

std::string relative(const std::string& path) {
    return path == "/" ? "." : path.substr(1);
}

bool same_file(int a, int b) {
    struct stat sa {
    }, sb{};
    return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

std::string base_name(const std::string& path) {
    return path.substr(path.rfind('/') + 1);
}

Credentials user_credentials(uid_t uid) {
    gid_t gid = auth::primary_gid(uid);
    return Credentials{uid, gid, user_groups(uid, gid)};
}

Result<Source> resolve_source(int host, int proc_fds, const Resolver& who, const Identity& as,
                              const std::string& source, const std::string& work_dir,
                              bool union_layer) {
    UniqueFd root, ns;
    if (who.pid > 0) {
        // The requester's pidfd (taken when it connected) keeps its pid from being reused
        // while its root and namespace are opened: if it is gone by the check below, what was
        // opened may belong to a process that reused its pid.
        std::string proc = "/proc/" + std::to_string(who.pid);
        root.reset(::open((proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        ns.reset(::open((proc + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
        if (!root || !ns || !proc::pidfd_alive(who.pidfd))
            return Error{ESRCH, "the requesting process is gone"};
    } else {
        root.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return sys_error("open '/'");
    }

    std::optional<ScopedMountNamespace> in_caller_view;
    if (ns) {
        auto entered = ScopedMountNamespace::enter(host, ns.get());
        if (!entered) return Error(std::move(entered).error());
        in_caller_view.emplace(std::move(*entered));
    }
    std::string as_uid = " (looked up as uid " + std::to_string(as.uid) + " in its own view)";
    Source found;
    UniqueFd copy_of;
    {
        auto as_user = ScopedFsCredentials::become(as);
        if (!as_user) return Error(std::move(as_user).error());
        UniqueFd src = open_at(root.get(), relative(source), O_PATH, kAsUser);
        if (!src) return Error::from_errno(errno, "SRC " + quote(source) + as_uid);
        if (work_dir.empty()) {
            copy_of = std::move(src);
        } else {
            struct stat st {
            }, top{};
            if (::fstat(src.get(), &st) != 0 || !S_ISDIR(st.st_mode))
                return Error::invalid("a union needs a directory at SRC " + quote(source));
            // ".." of the requester's own root would leave it.
            if (::fstat(root.get(), &top) == 0 && st.st_dev == top.st_dev &&
                st.st_ino == top.st_ino)
                return Error::invalid("SRC " + quote(source) +
                                      " is the root of its view: -c needs the directory that "
                                      "holds SRC, for overlayfs's work directory");
            UniqueFd parent = open_at(src.get(), "..", O_PATH | O_DIRECTORY,
                                      RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS);
            if (!parent && errno == EXDEV)
                return Error::invalid("SRC " + quote(source) +
                                      " is the root of a mount: -c needs the directory that "
                                      "holds SRC on the same mount, for overlayfs's work "
                                      "directory");
            if (!parent)
                return Error::from_errno(errno,
                                         "the directory holding SRC " + quote(source) + as_uid);
            auto mounter = unions::writable_mounter(as, st, user_credentials);
            if (!mounter)
                return Error{mounter.error().code,
                             "bind -c of " + quote(source) + ": " + mounter.error().message};
            found.mounter = std::move(*mounter);
            found.upper = std::move(src);
            found.work_name = work_dir;
            copy_of = std::move(parent);
        }
    }
    if (found.mounter) {
        // The work directory is the mounter's: overlayfs makes its own directories in it, with
        // mode 0, as the mounter (fs/overlayfs/super.c: ovl_workdir_create).
        const Credentials& mounter = *found.mounter;
        auto as_mounter = ScopedFsCredentials::become(mounter);
        if (!as_mounter) return Error(std::move(as_mounter).error());
        if (::mkdirat(copy_of.get(), work_dir.c_str(), 0700) != 0 && errno != EEXIST)
            return Error::from_errno(errno, "make overlayfs work directory " + quote(work_dir) +
                                                " beside SRC " + quote(source) + " as uid " +
                                                std::to_string(mounter.uid));
        found.work = open_at(copy_of.get(), work_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, kOneName);
        struct stat work {};
        if (!found.work || ::fstat(found.work.get(), &work) != 0 || work.st_uid != mounter.uid)
            return Error{EEXIST, quote(work_dir) + " beside SRC " + quote(source) +
                                     " exists and is not a directory of uid " +
                                     std::to_string(mounter.uid)};
    }
    if (union_layer && work_dir.empty() && !as.is_root()) found.mounter = as;
    if (found.upper) {
        // SRC's name in the directory that holds it, as the kernel names it now; build_union
        // checks that it still leads to the same directory.
        auto path = mnt::path_of(proc_fds, found.upper.get());
        if (!path)
            return Error{path.error().code, "SRC " + quote(source) + ": " + path.error().message};
        found.upper_name = base_name(*path);
    }
    // open_tree may clone only mounts of the caller's namespace (fs/namespace.c:
    // __do_loopback), which is why the lookup above entered it.
    auto tree = mnt::clone_tree(copy_of.get(), "");
    if (!tree)
        return Error{tree.error().code, "SRC " + quote(source) + ": " + tree.error().message};
    found.tree = std::move(*tree);
    return found;
}

}  // namespace pns::agent::detail
