#include "agent/views.hpp"
#include "agent/auth.hpp"
#include "agent/guard.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <malloc.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "agent/mount.hpp"
#include "agent/proc.hpp"
#include "agent/trusted_dir.hpp"
#include "pns/protocol.hpp"
#include "pns/text.hpp"

namespace pns::agent {

namespace {

using nlohmann::json;

Status make_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return sys_error("create directory '" + path + "'");
    return {};
}

Result<std::string> read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error::from_errno(errno ? errno : ENOENT, "read '" + path + "'");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Writes `path` through a temporary file and rename, so a reader sees old or new.
Status write_text(const std::string& path, const std::string& text) {
    std::string temp = path + ".tmp";
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error("create '" + temp + "'");
    std::string_view rest = text;
    while (!rest.empty()) {
        ssize_t n = ::write(fd.get(), rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("write '" + temp + "'");
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    fd.reset();
    if (::rename(temp.c_str(), path.c_str()) != 0) return sys_error("rename '" + temp + "'");
    return {};
}

// Whether the mount at "/" of the calling thread's namespace is in a shared peer group.
Result<bool> root_is_shared() {
    auto text = read_text("/proc/thread-self/mountinfo");
    if (!text) return Error(std::move(text).error());
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
        // mountinfo(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - ...
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point, options, field;
        fields >> id >> parent >> dev >> root >> mount_point >> options;
        if (mount_point != "/") continue;
        bool shared = false;
        while (fields >> field && field != "-") shared = shared || field.starts_with("shared:");
        return shared;
    }
    return Error{ENOENT, "no mount at '/' in mountinfo"};
}

std::string parent_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

// The overlayfs work directory a -c union makes beside its SRC: one per namespace, so two
// namespaces with the same SRC do not share it.
std::string work_dir_name(const std::string& source, const std::string& view) {
    return "." + source.substr(source.rfind('/') + 1) + ".pns-work." + view;
}

std::string join(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

// The file-system credentials of the worker thread switched to a user's for a scope. Raw
// system calls on purpose: glibc's setgroups() changes every thread of the process, and only
// this thread may look at the file system as the user. When fsuid leaves 0 the kernel drops
// the file-system capabilities (CAP_DAC_OVERRIDE, ...) from the effective set, and restores
// them when it returns (security/commoncap.c: cap_task_fix_setuid), so every lookup is checked
// exactly as the user's own would be.
class ScopedFsCredentials {
  public:
    static Result<ScopedFsCredentials> become(uid_t uid, gid_t gid,
                                              const std::vector<gid_t>& groups) {
        if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0)
            return sys_error("setgroups");
        ScopedFsCredentials scope;
        ::syscall(SYS_setfsgid, gid);
        ::syscall(SYS_setfsuid, uid);
        // setfsuid(2) reports no error; asking again tells whether it took effect.
        if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != uid ||
            static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) != gid)
            return Error{EPERM, "could not take the caller's file-system credentials"};
        return scope;
    }
    ScopedFsCredentials(ScopedFsCredentials&& other) noexcept : active_(other.active_) {
        other.active_ = false;
    }
    ScopedFsCredentials& operator=(ScopedFsCredentials&&) = delete;
    ~ScopedFsCredentials() {
        if (!active_) return;
        ::syscall(SYS_setfsuid, 0);
        ::syscall(SYS_setfsgid, 0);
        ::syscall(SYS_setgroups, 0, nullptr);
    }

  private:
    ScopedFsCredentials() = default;
    bool active_ = true;
};

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

// The supplementary groups of a user, for lookups made on their behalf without a process.
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

// A detached copy of SRC as the requester sees it: looked up in the requester's own mount
// namespace, below its root, with its credentials. A source the requester cannot reach is
// refused here, so a view never shows anyone what they could not see themselves.
//
// With `work_dir`, `source` is the parent of a -c union's SRC, and a directory of that name is
// made in it (as the requester) for overlayfs's work, which must be on the upper layer's mount.
Result<UniqueFd> resolve_source(int host, const Resolver& who, const std::string& source,
                                const std::string& work_dir = {}) {
    UniqueFd root, ns;
    std::vector<gid_t> groups;
    if (who.pid > 0) {
        // The requester's pidfd (taken when it connected) keeps its pid from being reused
        // while its root and namespace are opened: if it is gone by the check below, what was
        // opened may belong to a process that reused its pid.
        std::string proc = "/proc/" + std::to_string(who.pid);
        root.reset(::open((proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        ns.reset(::open((proc + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
        auto g = process_groups(who.pid);
        if (!root || !ns || !g || !proc::pidfd_alive(who.pidfd))
            return Error{ESRCH, "the requesting process is gone"};
        groups = std::move(*g);
    } else {
        root.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return sys_error("open '/'");
        groups = user_groups(who.uid, who.gid);
    }

    std::optional<ScopedMountNamespace> in_caller_view;
    if (ns) {
        auto entered = ScopedMountNamespace::enter(host, ns.get());
        if (!entered) return Error(std::move(entered).error());
        in_caller_view.emplace(std::move(*entered));
    }
    UniqueFd found;
    {
        auto as_user = ScopedFsCredentials::become(who.uid, who.gid, groups);
        if (!as_user) return Error(std::move(as_user).error());
        open_how how{};
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        std::string relative = source.substr(1).empty() ? "." : source.substr(1);
        found.reset(static_cast<int>(
            ::syscall(SYS_openat2, root.get(), relative.c_str(), &how, sizeof how)));
        if (!found)
            return Error::from_errno(errno, "SRC " + quote(source) + " (looked up as uid " +
                                                std::to_string(who.uid) + " in its own view)");
        if (!work_dir.empty()) {
            if (::mkdirat(found.get(), work_dir.c_str(), 0700) != 0 && errno != EEXIST)
                return Error::from_errno(errno, "make overlayfs work directory " +
                                                    quote(source + "/" + work_dir) + " as uid " +
                                                    std::to_string(who.uid));
            struct stat st {};
            if (::fstatat(found.get(), work_dir.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISDIR(st.st_mode) || st.st_uid != who.uid)
                return Error{EEXIST, quote(source + "/" + work_dir) +
                                         " exists and is not a directory of uid " +
                                         std::to_string(who.uid)};
        }
    }
    // open_tree may clone only mounts of the caller's namespace (fs/namespace.c:
    // __do_loopback), which is why the lookup above entered it.
    auto tree = mnt::clone_tree(found.get(), "");
    if (!tree)
        return Error{tree.error().code, "SRC " + quote(source) + ": " + tree.error().message};
    return tree;
}

// Pins the namespace behind `ns_fd` (an nsfs fd) at `path`, a file created for it.
Status pin_namespace(int ns_fd, const std::string& path) {
    // A plain clone: an nsfs mount has no propagation to speak of.
    UniqueFd tree(::open_tree(ns_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
    if (!tree) return sys_error("clone the namespace to pin at '" + path + "'");
    UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!file) return sys_error("create '" + path + "'");
    return mnt::attach(tree.get(), AT_FDCWD, path);
}

void unpin(const std::string& path) {
    ::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    ::unlink(path.c_str());
}

Status write_proc(pid_t pid, const char* file, const std::string& text) {
    std::string path = "/proc/" + std::to_string(pid) + "/" + file;
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return sys_error("open '" + path + "'");
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        return sys_error("write '" + path + "'");
    return {};
}

// One byte over a pipe, for the steps of satellite creation.
bool send_byte(int fd) {
    char c = 1;
    return ::write(fd, &c, 1) == 1;
}
bool wait_byte(int fd) {
    char c;
    ssize_t n;
    while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
}

// The kernel refuses to pin a mount namespace whose ID is not above that of the namespace
// doing the pinning (fs/namespace.c: mnt_ns_loop), and Linux 6.18 hands out namespace IDs in
// per-CPU batches, so a namespace made now on one CPU can have a lower ID than an older one
// made on another: pinning fails with ELOOP unless pnsd's own namespace is the initial one.
// `attempt` makes and pins a namespace; on ELOOP it is tried again from each CPU in turn.
template <typename Attempt>
auto on_each_cpu_until_pinned(const Attempt& attempt) -> decltype(attempt()) {
    auto result = attempt();
    if (result || result.error().code != ELOOP) return result;
    cpu_set_t allowed;
    if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return result;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (::sched_setaffinity(0, sizeof one, &one) != 0) continue;
        result = attempt();
        if (result || result.error().code != ELOOP) break;
    }
    ::sched_setaffinity(0, sizeof allowed, &allowed);
    return result;
}

}  // namespace

Views::Views(std::string dir, UniqueFd host) : dir_(std::move(dir)), host_(std::move(host)) {}

Views::~Views() = default;

Result<std::unique_ptr<Views>> Views::open(const std::string& runtime_dir) {
    std::string dir = runtime_dir + "/views";
    // Pins, states and journals live below: root's alone, never reached through a link.
    auto runtime = open_trusted_dir(runtime_dir, {.what = "runtime directory"});
    if (!runtime) return runtime.error();
    auto views_dir = open_trusted_subdir(runtime->get(), runtime_dir, "views", 0700);
    if (!views_dir) return views_dir.error();
    if (auto stage = open_trusted_subdir(views_dir->get(), dir, ".stage", 0700); !stage)
        return stage.error();
    UniqueFd host(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
    if (!host) return sys_error("open the host's mount namespace");
    std::unique_ptr<Views> views(new Views(dir, std::move(host)));
    if (!views->worker_.started()) return views->worker_.started().error();

    auto st = views->worker_.run([&]() -> Status {
        // Views are slaves of the host: that needs the host's mounts in shared peer groups,
        // which systemd sets up at boot and a machine without it may not have.
        auto shared = root_is_shared();
        if (!shared) return shared.error();
        if (!*shared) {
            if (auto s = mnt::set_propagation("/", MS_SHARED); !s) return s;
            views->host_made_shared_ = true;
        }
        // <runtime>/views becomes an unbindable mount of its own, so the pins below it are
        // in no copy of the host's tree: not propagated into views, and not in the source of
        // a bind of '/' or '/run' (a view holding its own pin is a loop the kernel refuses).
        UniqueFd views_fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        UniqueFd parent_fd(::open(runtime_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!views_fd || !parent_fd) return sys_error("open '" + dir + "'");
        auto own = mnt::mount_id(views_fd.get());
        auto parent = mnt::mount_id(parent_fd.get());
        if (!own || !parent) return own ? parent.error() : own.error();
        if (*own == *parent) {
            auto tree = mnt::clone_tree(views_fd.get(), "");
            if (!tree) return tree.error();
            if (auto s = mnt::attach(tree->get(), AT_FDCWD, dir); !s) return s;
        }
        return mnt::set_propagation(dir, MS_UNBINDABLE);
    });
    if (!st) return st.error();
    return views;
}

Result<UniqueFd> Views::primary(const std::string& name) const {
    UniqueFd fd(::open((view_dir(name) + "/mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return sys_error("open the view of " + quote(name));
    // Only a pin is a mount namespace; the file under a lost pin is an empty regular file.
    if (::ioctl(fd.get(), NS_GET_NSTYPE) != CLONE_NEWNS)
        return Error{ENOENT, "the view of " + quote(name) + " is not pinned"};
    return fd;
}

Result<Views::Satellite> Views::open_satellite(const std::string& name, uid_t uid) const {
    std::string dir = view_dir(name) + "/users/" + std::to_string(uid);
    Satellite sat;
    sat.user.reset(::open((dir + "/user").c_str(), O_RDONLY | O_CLOEXEC));
    sat.mnt.reset(::open((dir + "/mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!sat.user || !sat.mnt) return Error{ENOENT, "no satellite"};
    return sat;
}

Result<Views::Satellite> Views::satellite(const std::string& name, uid_t uid, gid_t gid) {
    if (uid == 0) return Error::invalid("root joins the primary view, not a satellite");
    Result<Satellite> result = Error{EIO, "not run"};
    auto st = worker_.run([&]() -> Status {
        result = open_satellite(name, uid);
        if (!result)
            result = on_each_cpu_until_pinned([&] { return create_satellite(name, uid, gid); });
        return {};
    });
    if (!st) return st.error();
    return result;
}

// Runs on the worker. A child process builds the satellite, because a user namespace is owned
// by the effective uid of the process that creates it (user_namespaces(7)), and only a
// process of that uid can make one that the member may later join. The child enters the
// primary first, so the mount namespace it then unshares is a copy of the primary; being
// created inside a less privileged user namespace, that copy's mounts become slaves of the
// primary's peer groups and are locked (mount_namespaces(7)): every edit made once in the
// primary propagates, and no member can unmount an entry to see what lies beneath.
Result<Views::Satellite> Views::create_satellite(const std::string& name, uid_t uid, gid_t gid) {
    auto primary_fd = primary(name);
    if (!primary_fd) return primary_fd.error();
    std::string dir = view_dir(name) + "/users";
    if (auto st = make_dir(dir, 0700); !st) return st.error();
    dir += "/" + std::to_string(uid);
    if (auto st = make_dir(dir, 0700); !st) return st.error();

    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0) return sys_error("pipe");
    if (::pipe2(from_child, O_CLOEXEC) != 0) {
        ::close(to_child[0]);
        ::close(to_child[1]);
        return sys_error("pipe");
    }
    UniqueFd child_in(to_child[0]), parent_out(to_child[1]);
    UniqueFd parent_in(from_child[0]), child_out(from_child[1]);

    pid_t child = ::fork();
    if (child < 0) return sys_error("fork");
    if (child == 0) {
        // Only raw system calls from here: the parent is multithreaded.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::setns(primary_fd->get(), CLONE_NEWNS) != 0) ::_exit(1);
        if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
            ::syscall(SYS_setresgid, gid, gid, gid) != 0 ||
            ::syscall(SYS_setresuid, uid, uid, uid) != 0)
            ::_exit(2);
        if (::unshare(CLONE_NEWUSER) != 0) ::_exit(3);
        if (!send_byte(child_out.get()) || !wait_byte(child_in.get())) ::_exit(4);
        if (::unshare(CLONE_NEWNS) != 0) ::_exit(5);
        if (!send_byte(child_out.get())) ::_exit(6);
        wait_byte(child_in.get());  // until the parent has pinned both namespaces
        ::_exit(0);
    }
    child_in.reset();
    child_out.reset();

    auto fail = [&](Error error) -> Error {
        ::kill(child, SIGKILL);
        int status;
        ::waitpid(child, &status, 0);
        unpin(dir + "/user");
        unpin(dir + "/mnt");
        ::rmdir(dir.c_str());
        return error;
    };
    if (!wait_byte(parent_in.get()))
        return fail(
            Error{EPERM, "creating the user namespace of uid " + std::to_string(uid) + " failed"});
    // Only the member's own ids are mapped: root is not, so set-uid-root programs do not
    // elevate inside. setgroups is denied so no member can shed a group that denies it access.
    std::string uid_line = std::to_string(uid) + " " + std::to_string(uid) + " 1\n";
    std::string gid_line = std::to_string(gid) + " " + std::to_string(gid) + " 1\n";
    if (auto st = write_proc(child, "uid_map", uid_line); !st) return fail(st.error());
    if (auto st = write_proc(child, "setgroups", "deny"); !st) return fail(st.error());
    if (auto st = write_proc(child, "gid_map", gid_line); !st) return fail(st.error());
    if (!send_byte(parent_out.get()) || !wait_byte(parent_in.get()))
        return fail(Error{EPERM, "creating the mount namespace of the satellite failed"});

    std::string proc = "/proc/" + std::to_string(child) + "/ns/";
    UniqueFd user(::open((proc + "user").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd mnt(::open((proc + "mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!user || !mnt) return fail(sys_error("open the satellite's namespaces"));
    if (auto st = pin_namespace(user.get(), dir + "/user"); !st) return fail(st.error());
    if (auto st = pin_namespace(mnt.get(), dir + "/mnt"); !st) return fail(st.error());
    send_byte(parent_out.get());
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return Satellite{std::move(user), std::move(mnt)};
}

Result<std::vector<ino_t>> Views::namespace_inodes(const std::string& name) const {
    std::vector<ino_t> inodes;
    struct stat st {};
    std::string view = view_dir(name);
    if (::stat((view + "/mnt").c_str(), &st) == 0) inodes.push_back(st.st_ino);
    DIR* d = ::opendir((view + "/users").c_str());
    if (!d) return inodes;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        if (::stat((view + "/users/" + e->d_name + "/mnt").c_str(), &st) == 0)
            inodes.push_back(st.st_ino);
    }
    ::closedir(d);
    return inodes;
}

Views::Index Views::index() const {
    Index index;
    auto names = pinned();
    if (!names) return index;
    struct stat st {};
    for (const auto& name : *names) {
        std::string view = view_dir(name);
        if (::stat((view + "/mnt").c_str(), &st) == 0) index.mnt[st.st_ino] = Location{name, 0};
        DIR* d = ::opendir((view + "/users").c_str());
        if (!d) continue;
        while (struct dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            auto uid = static_cast<uid_t>(std::strtoul(e->d_name, nullptr, 10));
            std::string users = view + "/users/" + e->d_name;
            if (::stat((users + "/mnt").c_str(), &st) == 0)
                index.mnt[st.st_ino] = Location{name, uid};
            if (::stat((users + "/user").c_str(), &st) == 0)
                index.user[st.st_ino] = Location{name, uid};
        }
        ::closedir(d);
    }
    return index;
}

Result<std::vector<std::string>> Views::pinned() const {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return sys_error("read '" + dir_ + "'");
    while (struct dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != ".." && validate_name(name)) names.push_back(name);
    }
    ::closedir(d);
    return names;
}

// Runs on the worker, in the host's namespace.
Result<UniqueFd> Views::open_or_create_primary(const std::string& name) {
    if (auto existing = primary(name); existing) return existing;
    std::string view = view_dir(name);
    if (auto st = make_dir(view, 0700); !st) return st.error();
    // A new primary holds none of the entries an old state or journal may list.
    ::unlink((view + "/state.json").c_str());
    clear_journal(name);
    ::umount2((view + "/mnt").c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);

    // The worker itself moves into a new mount namespace, copied from the host's: that is the
    // primary. Slave first (host events flow in), then shared (a new peer group of its own,
    // towards its satellites). Then back to the host to pin it.
    return on_each_cpu_until_pinned([&]() -> Result<UniqueFd> {
        if (::unshare(CLONE_NEWNS) != 0) return sys_error("unshare(CLONE_NEWNS)");
        UniqueFd created(::open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC));
        Status configured = [&]() -> Status {
            if (!created) return sys_error("open the new mount namespace");
            if (auto st = mnt::set_propagation("/", MS_SLAVE); !st) return st;
            if (auto st = mnt::set_propagation("/", MS_SHARED); !st) return st;
            // Members have no business with the pins of other views.
            if (auto st = mnt::detach(dir_); !st) return st;
            return {};
        }();
        // Back to the host whatever happened; a worker stuck elsewhere could do no more right.
        if (::setns(host_.get(), CLONE_NEWNS) != 0) std::abort();
        if (configured) configured = pin_namespace(created.get(), view + "/mnt");
        if (!configured) return configured.error();
        return created;
    });
}

Result<std::vector<Views::Applied>> Views::load_state(const std::string& name) const {
    std::string path = view_dir(name) + "/state.json";
    auto text = read_text(path);
    if (!text) {
        if (text.error().code == ENOENT) return std::vector<Applied>{};
        return Error(std::move(text).error());
    }
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("applied") || !j["applied"].is_array())
        return Error{EIO, "'" + path + "' is corrupt"};
    std::vector<Applied> applied;
    for (const auto& a : j["applied"]) {
        auto entry = protocol::entry_from_json(a.value("entry", json::object()));
        if (!entry || !a.contains("mount_id") || !a["mount_id"].is_number_unsigned() ||
            !a.contains("path") || !a["path"].is_string())
            return Error{EIO, "'" + path + "' is corrupt"};
        applied.push_back({std::move(*entry), a["path"].get<std::string>(),
                           a["mount_id"].get<std::uint64_t>(),
                           a.value("under_id", std::uint64_t{0})});
    }
    return applied;
}

Status Views::save_state(const std::string& name, const std::vector<Applied>& applied) const {
    json list = json::array();
    for (const auto& a : applied)
        list.push_back({{"entry", protocol::entry_to_json(a.entry)},
                        {"path", a.path},
                        {"mount_id", a.mount_id},
                        {"under_id", a.under_id}});
    return write_text(view_dir(name) + "/state.json", json{{"applied", list}}.dump() + "\n");
}

namespace {

// A detached tree taken off a view, kept for an entry that wants it back.
struct Parked {
    Entry entry;
    std::string path;  // where it was attached
    UniqueFd tree;
};

struct Stat {
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

Result<std::optional<Stat>> lstat_optional(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return std::optional<Stat>{};
        return sys_error("lstat " + quote(path));
    }
    return std::optional<Stat>{Stat{st.st_mode, st.st_uid, st.st_gid}};
}

// Edits the mount stack of one view; runs on the worker, inside the view. Every entry is one
// mount attached at one path: its DST, or for a DST that does not exist, a skeleton of the
// nearest existing ancestor (see make_skeleton) with the entry's mount inside.
class Editor {
  public:
    using Journal = std::function<Status(const std::string& path, std::uint64_t under_id)>;

    Editor(const std::string& view_name, std::string stage, Journal journal,
           std::vector<std::uint64_t> skeletons)
        : view_(view_name),
          stage_(std::move(stage)),
          journal_(std::move(journal)),
          skeletons_(std::move(skeletons)) {}

    // Whether the mount of an entry can be taken off and put back as it is: only when it
    // holds nothing of the entries below it. A read-only copy, a union or a skeleton captures
    // the view beneath as it was when it was made, so those are made anew.
    static bool reusable(const Entry& entry, const std::string& path) {
        if (path != entry.target) return false;
        if (entry.kind == EntryKind::kBind) return entry.mode == UnionMode::kReplace;
        return entry.kind == EntryKind::kTmpfs || entry.kind == EntryKind::kHide;
    }

    // Takes the entries of `list` past `from` off, top first, keeping each as a detached tree.
    template <typename List>
    Status take_off(List& list, std::size_t from) {
        while (list.size() > from) {
            auto& top = list.back();
            UniqueFd at(::open(top.path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
            if (!at) return sys_error("open " + quote(top.path));
            auto id = mnt::mount_id(at.get());
            if (!id) return id.error();
            if (*id != top.mount_id)
                return Error{EIO, "the mount at " + quote(top.path) + " in view " + quote(view_) +
                                      " is not the one pnsd made"};
            if (reusable(top.entry, top.path)) {
                auto saved = mnt::clone_tree(at.get(), "");
                if (!saved) return saved.error();
                parked_.push_back({top.entry, top.path, std::move(*saved)});
            }
            if (auto st = mnt::detach(top.path); !st) return st;
            list.pop_back();
        }
        return {};
    }

    // Puts `entry` on top: the tree it had if it was taken off in this edit, else a new one
    // (`ready` holds a bind's source, looked up beforehand outside the view).
    template <typename Item>
    Result<Item> put_on(const Entry& entry, std::optional<UniqueFd>& ready) {
        for (auto it = parked_.rbegin(); it != parked_.rend(); ++it) {
            if (it->entry != entry) continue;
            Parked back = std::move(*it);
            parked_.erase(std::next(it).base());
            return attach<Item>(entry, back.path, back.tree);
        }
        auto target = lstat_optional(entry.target);
        if (!target) return target.error();
        std::string path = entry.target;
        std::optional<UniqueFd> skeleton;
        if (!*target) {
            auto inside = make_in_skeleton(entry, ready);
            if (!inside) return inside.error();
            if (!*inside) {
                auto made = make_skeleton(entry, ready);
                if (!made) return made.error();
                path = made->first;
                skeleton = std::move(made->second);
            }
            target = lstat_optional(entry.target);
            if (!target || !*target)
                return Error{EIO, "skeleton for " + quote(entry.target) + " failed"};
        }
        const Stat& st = **target;
        if (S_ISLNK(st.mode))
            return Error::invalid("DST " + quote(entry.target) +
                                  " is a symbolic link in the view; name the path it points to");
        auto tree = build(entry, st, ready);
        if (!tree) {
            if (skeleton) (void)mnt::detach(path);
            return tree.error();
        }
        if (skeleton) {
            if (auto done = mnt::attach(tree->get(), AT_FDCWD, entry.target); !done) {
                (void)mnt::detach(path);
                return done.error();
            }
            auto made = record<Item>(entry, path, skeleton->get(), skeleton_under_);
            if (made) skeletons_.push_back(made->mount_id);
            return made;
        }
        return attach<Item>(entry, path, *tree);
    }

  private:
    template <typename Item>
    Result<Item> attach(const Entry& entry, const std::string& path, UniqueFd& tree) {
        auto under = journaled(path);
        if (!under) return under.error();
        if (auto st = mnt::attach(tree.get(), AT_FDCWD, path); !st) return st.error();
        return record<Item>(entry, path, tree.get(), *under);
    }

    // The mount on top at `path` now, written to the journal before anything goes on it.
    Result<std::uint64_t> journaled(const std::string& path) {
        UniqueFd at(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!at) return sys_error("open " + quote(path));
        auto under = mnt::mount_id(at.get());
        if (!under) return under.error();
        if (auto st = journal_(path, *under); !st) return st.error();
        return *under;
    }

    template <typename Item>
    static Result<Item> record(const Entry& entry, const std::string& path, int tree,
                               std::uint64_t under) {
        auto id = mnt::mount_id(tree);
        if (!id) return id.error();
        return Item{entry, path, *id, under};
    }

    // A new mount for `entry` over the existing `target`.
    Result<UniqueFd> build(const Entry& entry, const Stat& target, std::optional<UniqueFd>& ready) {
        switch (entry.kind) {
            case EntryKind::kBind:
                if (!ready) return Error{EIO, "no source prepared for " + quote(entry.source)};
                if (entry.mode != UnionMode::kReplace) return build_union(entry, target, *ready);
                return std::move(*ready);
            case EntryKind::kReadOnly: {
                auto tree = mnt::clone_tree(AT_FDCWD, entry.target);
                if (!tree) return tree;
                if (auto st = mnt::set_attributes(tree->get(), MOUNT_ATTR_RDONLY, 0); !st)
                    return st.error();
                return tree;
            }
            case EntryKind::kHide:
                if (!S_ISDIR(target.mode)) {
                    // A file (or device, fifo, socket) hides behind an empty read-only file,
                    // cloned in the host beforehand (open_tree clones only mounts of the
                    // namespace it runs in).
                    if (!ready)
                        return Error{EIO, "no empty file prepared for " + quote(entry.target)};
                    UniqueFd tree = std::move(*ready);
                    if (auto st = mnt::set_attributes(tree.get(), MOUNT_ATTR_RDONLY, 0); !st)
                        return st.error();
                    return tree;
                }
                [[fallthrough]];
            case EntryKind::kTmpfs: {
                if (!S_ISDIR(target.mode))
                    return Error::invalid("tmpfs of " + quote(entry.target) +
                                          " needs a directory there");
                // An empty directory with the mode and owner of the one it covers.
                auto tree = mnt::new_tmpfs(target.mode, target.uid, target.gid);
                if (!tree) return tree;
                if (entry.kind == EntryKind::kHide) {
                    if (auto st = mnt::set_attributes(tree->get(), MOUNT_ATTR_RDONLY, 0); !st)
                        return st.error();
                }
                return tree;
            }
            case EntryKind::kDeny:
                break;  // not a mount: Views::realize takes deny entries out of the table
        }
        return Error{EINVAL, "unknown entry kind"};
    }

    // The nearest existing ancestor of a DST that does not exist, and the components below it
    // that are missing (innermost first). Only directories can hold what is to be made.
    static Result<std::pair<std::string, std::vector<std::string>>> missing_path(
        const Entry& entry) {
        if (entry.kind == EntryKind::kReadOnly)
            return Error{ENOENT, "ro of " + quote(entry.target) + ": no such path in the view"};
        std::string ancestor = parent_of(entry.target);
        std::vector<std::string> missing{entry.target.substr(entry.target.rfind('/') + 1)};
        for (;;) {
            auto st = lstat_optional(ancestor);
            if (!st) return st.error();
            if (*st) {
                if (!S_ISDIR((*st)->mode))
                    return Error{ENOTDIR, "DST " + quote(entry.target) + " cannot be made: " +
                                              quote(ancestor) + " is not a directory in the view"};
                return std::pair{ancestor, missing};
            }
            missing.push_back(ancestor.substr(ancestor.rfind('/') + 1));
            ancestor = parent_of(ancestor);
        }
    }

    // The missing path of `entry` made inside a skeleton pnsd already has over its nearest
    // existing ancestor, if there is one: many missing DSTs below one directory (a private
    // /dev, say) then share a single skeleton instead of each copying the last. The entry's
    // own mount then goes on the new placeholder. Returns false when there is no skeleton.
    Result<bool> make_in_skeleton(const Entry& entry, std::optional<UniqueFd>& ready) {
        auto found = missing_path(entry);
        if (!found) return found.error();
        // (Plain references: clang 14 cannot capture structured bindings in a lambda.)
        const std::string& ancestor = found->first;
        const std::vector<std::string>& missing = found->second;
        UniqueFd dir(::open(ancestor.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir) return sys_error("open " + quote(ancestor));
        auto id = mnt::mount_id(dir.get());
        if (!id) return id.error();
        if (std::find(skeletons_.begin(), skeletons_.end(), *id) == skeletons_.end()) return false;

        // The skeleton is read-only for members; open it for the moment of the change.
        mount_attr attr{};
        attr.attr_clr = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(dir.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
            return sys_error("open the skeleton at " + quote(ancestor) + " for a change");
        Status made = make_missing(dir.get(), ancestor, missing, entry, ready);
        attr = mount_attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(dir.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0 && made)
            made = sys_error("make the skeleton at " + quote(ancestor) + " read-only again");
        if (!made) return made.error();
        return true;
    }

    // Creates the `missing` components (outermost last) below `dir`: directories, and DST as
    // the kind of thing it will show.
    static Status make_missing(int dir, const std::string& ancestor,
                               const std::vector<std::string>& missing, const Entry& entry,
                               const std::optional<UniqueFd>& ready) {
        std::string rel;
        for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
            rel += (rel.empty() ? "" : "/") + *it;
            bool last = std::next(it) == missing.rend();
            bool as_file = false;
            if (last && entry.kind == EntryKind::kBind && ready) {
                struct stat src {};
                if (::fstat(ready->get(), &src) == 0) as_file = !S_ISDIR(src.st_mode);
            }
            int made = as_file ? ::mknodat(dir, rel.c_str(), S_IFREG | 0644, 0)
                               : ::mkdirat(dir, rel.c_str(), 0755);
            if (made != 0 && !(errno == EEXIST && !last))
                return sys_error("create " + quote(join(ancestor, rel)) + " in the view");
        }
        return {};
    }

    // Makes a DST that does not exist appear, in the view only. The nearest existing ancestor
    // A is covered by a read-only tmpfs holding a placeholder for each of A's entries, each
    // with A's own entry bind-mounted on it (with everything mounted below), and the missing
    // path down to DST. So A lists as before and its entries are the real ones, but A itself
    // becomes a fixed listing: names added to or removed from the real A afterwards do not
    // show, and nothing new can be created directly in A inside the view (EROFS).
    Result<std::pair<std::string, UniqueFd>> make_skeleton(const Entry& entry,
                                                           std::optional<UniqueFd>& ready) {
        auto found = missing_path(entry);
        if (!found) return found.error();
        // (Plain references: clang 14 cannot capture structured bindings in a lambda.)
        const std::string& ancestor = found->first;
        const std::vector<std::string>& missing = found->second;
        struct stat info {};
        UniqueFd original(::open(ancestor.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!original || ::fstat(original.get(), &info) != 0)
            return sys_error("open " + quote(ancestor));
        auto skeleton = mnt::new_tmpfs(info.st_mode, info.st_uid, info.st_gid);
        if (!skeleton) return skeleton.error();

        // Placeholders for the ancestor's entries, created through the detached tmpfs.
        std::vector<std::string> to_bind;
        int list_fd = ::dup(original.get());
        DIR* dir = list_fd >= 0 ? ::fdopendir(list_fd) : nullptr;
        if (!dir) {
            if (list_fd >= 0) ::close(list_fd);
            return sys_error("list " + quote(ancestor));
        }
        Status populated = [&]() -> Status {
            while (struct dirent* d = ::readdir(dir)) {
                std::string name = d->d_name;
                if (name == "." || name == "..") continue;
                struct stat child {};
                if (::fstatat(original.get(), name.c_str(), &child, AT_SYMLINK_NOFOLLOW) != 0)
                    continue;  // gone meanwhile
                int made;
                if (S_ISLNK(child.st_mode)) {
                    std::string link(4096, '\0');
                    ssize_t n =
                        ::readlinkat(original.get(), name.c_str(), link.data(), link.size());
                    if (n < 0) continue;
                    link.resize(static_cast<std::size_t>(n));
                    made = ::symlinkat(link.c_str(), skeleton->get(), name.c_str());
                    if (made == 0)
                        ::fchownat(skeleton->get(), name.c_str(), child.st_uid, child.st_gid,
                                   AT_SYMLINK_NOFOLLOW);
                } else if (S_ISDIR(child.st_mode)) {
                    made = ::mkdirat(skeleton->get(), name.c_str(), 0755);
                    to_bind.push_back(name);
                } else {
                    made = ::mknodat(skeleton->get(), name.c_str(), S_IFREG | 0644, 0);
                    to_bind.push_back(name);
                }
                if (made != 0) return sys_error("placeholder for " + quote(join(ancestor, name)));
            }
            return make_missing(skeleton->get(), ancestor, missing, entry, ready);
        }();
        ::closedir(dir);
        if (!populated) return populated.error();

        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(skeleton->get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
            return sys_error("make the skeleton of " + quote(ancestor) + " read-only");
        auto under = journaled(ancestor);
        if (!under) return under.error();
        skeleton_under_ = *under;
        if (auto st = mnt::attach(skeleton->get(), AT_FDCWD, ancestor); !st) return st.error();
        for (const auto& name : to_bind) {
            auto child = mnt::clone_tree(original.get(), name);
            Status done = child ? mnt::attach(child->get(), AT_FDCWD, join(ancestor, name))
                                : Status(child.error());
            if (!done) {
                (void)mnt::detach(ancestor);
                return done.error();
            }
        }
        return std::pair<std::string, UniqueFd>{ancestor, std::move(*skeleton)};
    }

    // A union of SRC with what DST holds, by overlayfs. Its layers must be mounts of the view
    // (fs/namespace.c: clone_private_mount), so SRC's tree is attached at the stage, a
    // directory no member reaches, for the moment overlayfs takes its own copy.
    Result<UniqueFd> build_union(const Entry& entry, const Stat& target, UniqueFd& source) {
        if (!S_ISDIR(target.mode))
            return Error::invalid("a union needs a directory at DST " + quote(entry.target));
        if (auto st = mnt::attach(source.get(), AT_FDCWD, stage_); !st) return st.error();
        struct Unstage {
            const std::string& path;
            ~Unstage() { (void)mnt::detach(path); }
        } unstage{stage_};
        std::string src = stage_;
        if (entry.create) src = join(stage_, entry.source.substr(entry.source.rfind('/') + 1));
        struct stat st {};
        if (::stat(src.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            return Error::invalid("a union needs a directory at SRC " + quote(entry.source));

        UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
        if (!fs) return sys_error("fsopen overlay (is the overlay module loaded?)");
        auto set = [&](const char* key, const std::string& value) -> Status {
            if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0)
                return sys_error(std::string("overlayfs ") + key + " " + quote(value));
            return {};
        };
        std::vector<std::string> lower;  // top first
        if (entry.create) {
            if (auto r = set("upperdir", src); !r) return r.error();
            std::string work = join(stage_, work_dir_name(entry.source, view_));
            if (auto r = set("workdir", work); !r) return r.error();
            lower = {entry.target};
        } else if (entry.mode == UnionMode::kBefore) {
            lower = {src, entry.target};
        } else {
            lower = {entry.target, src};
        }
        for (const auto& layer : lower) {
            if (auto r = set("lowerdir+", layer); !r) return r.error();
        }
        if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
            return sys_error("create the union at " + quote(entry.target));
        UniqueFd tree(::fsmount(fs.get(), FSMOUNT_CLOEXEC, entry.create ? 0 : MOUNT_ATTR_RDONLY));
        if (!tree) return sys_error("fsmount the union at " + quote(entry.target));
        return tree;
    }

    std::string view_;
    std::string stage_;
    Journal journal_;
    std::uint64_t skeleton_under_ = 0;
    std::vector<std::uint64_t> skeletons_;  // mount IDs of the skeletons in the view
    std::vector<Parked> parked_;
};

}  // namespace

std::vector<Views::JournalRecord> Views::load_journal(const std::string& name) const {
    std::vector<JournalRecord> records;
    std::ifstream in(view_dir(name) + "/journal");
    std::string line;
    while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        // A line cut short by a crash is the one record that was never acted on.
        if (j.is_discarded() || !j.is_object() || !j.contains("path") || !j["path"].is_string())
            continue;
        records.push_back({j["path"].get<std::string>(), j.value("under_id", std::uint64_t{0})});
    }
    return records;
}

Status Views::append_journal(const std::string& name, const JournalRecord& record) const {
    std::string path = view_dir(name) + "/journal";
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error("open '" + path + "'");
    std::string line = json{{"path", record.path}, {"under_id", record.under_id}}.dump() + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return sys_error("write '" + path + "'");
    return {};
}

void Views::clear_journal(const std::string& name) const {
    ::unlink((view_dir(name) + "/journal").c_str());
}

void Views::scrub(int primary, const std::vector<Applied>& applied,
                  const std::vector<JournalRecord>& journal) {
    std::vector<JournalRecord> records;
    for (const auto& a : applied) records.push_back({a.path, a.under_id});
    records.insert(records.end(), journal.begin(), journal.end());
    auto in_view = ScopedMountNamespace::enter(host_.get(), primary);
    if (!in_view) return;
    // Newest first: whatever is on top at a path and is not what was there before pnsd's
    // mount goes, including mounts of an edit that was cut short before it was recorded.
    for (auto it = records.rbegin(); it != records.rend(); ++it) {
        for (int guard = 0; guard < 256; ++guard) {
            UniqueFd at(::open(it->path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
            if (!at) break;
            auto id = mnt::mount_id(at.get());
            if (!id || *id == it->under_id || it->under_id == 0) break;
            if (!mnt::detach(it->path)) break;
        }
    }
}

Status Views::realize(const Namespace& full, const Resolver& resolver) {
    // `deny` entries are the guard's, not mounts (guard_facts resolves them).
    Namespace ns = full;
    std::erase_if(ns.table.entries, [](const Entry& e) { return e.kind == EntryKind::kDeny; });
    return worker_.run([&]() -> Status {
        auto primary_fd = open_or_create_primary(ns.name);
        if (!primary_fd) return primary_fd.error();
        auto loaded = load_state(ns.name);
        if (!loaded) return loaded.error();
        std::vector<Applied> applied = std::move(*loaded);

        // A journal left over means pnsd died in the middle of an edit: take off everything
        // it made and put the whole table on again.
        auto journal = load_journal(ns.name);
        if (!journal.empty()) {
            scrub(primary_fd->get(), applied, journal);
            applied.clear();
            clear_journal(ns.name);
            if (auto st = save_state(ns.name, applied); !st) return st;
        }
        Status st = edit(ns, resolver, primary_fd->get(), applied);
        if (!st && st.error().code == EIO) {
            // The view is not as its state says (a member with privilege changed it, or an
            // undo failed): repair it the same way.
            scrub(primary_fd->get(), applied, load_journal(ns.name));
            applied.clear();
            clear_journal(ns.name);
            (void)save_state(ns.name, applied);
            st = edit(ns, resolver, primary_fd->get(), applied);
        }
        // A large edit leaves much freed memory in this thread's malloc arena; give it back
        // rather than keep pnsd's footprint at its high-water mark.
        if (ns.table.entries.size() > 256) ::malloc_trim(0);
        return st;
    });
}

Status Views::edit(const Namespace& ns, const Resolver& resolver, int primary,
                   std::vector<Applied>& applied) {
    const auto& wanted = ns.table.entries;
    std::size_t keep = 0;
    while (keep < applied.size() && keep < wanted.size() && applied[keep].entry == wanted[keep])
        ++keep;
    if (keep == applied.size() && keep == wanted.size()) return {};

    // Outside the view: the sources of binds that cannot come back as they were. A new
    // entry's is looked up as the requester; one made anew beneath a change, as the owner in
    // the host's view (the requester of that entry is not here).
    Resolver owner{ns.owner, auth::primary_gid(ns.owner), 0};
    std::vector<Entry> coming_back, leaving;
    for (std::size_t i = keep; i < applied.size(); ++i) {
        leaving.push_back(applied[i].entry);
        if (Editor::reusable(applied[i].entry, applied[i].path))
            coming_back.push_back(applied[i].entry);
    }
    // What hides a file: an empty file of pnsd's own, in the host.
    // (Outside <runtime>/views: mounts there are unbindable.)
    std::string empty = dir_.substr(0, dir_.rfind('/')) + "/empty";
    UniqueFd empty_fd(::open(empty.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!empty_fd) return sys_error("create '" + empty + "'");

    std::vector<std::optional<UniqueFd>> prepared(wanted.size());
    for (std::size_t j = keep; j < wanted.size(); ++j) {
        const Entry& entry = wanted[j];
        if (auto back = std::find(coming_back.begin(), coming_back.end(), entry);
            back != coming_back.end()) {
            coming_back.erase(back);
            continue;
        }
        if (entry.kind == EntryKind::kHide) {
            auto tree = mnt::clone_tree(empty_fd.get(), "");
            if (!tree) return tree.error();
            prepared[j] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        if (entry.create && entry.mode == UnionMode::kAfter)
            return Error::invalid("'" + format_entry(entry) +
                                  "': overlayfs always searches its writable layer first, so "
                                  "-c works with -b only");
        bool is_old = std::find(leaving.begin(), leaving.end(), entry) != leaving.end();
        const Resolver& who = is_old ? owner : resolver;
        auto tree = entry.create ? resolve_source(host_.get(), who, parent_of(entry.source),
                                                  work_dir_name(entry.source, ns.name))
                                 : resolve_source(host_.get(), who, entry.source);
        if (!tree) return tree.error();
        prepared[j] = std::move(*tree);
    }
    // Old entries that must be made anew on the way back, should the edit fail.
    std::vector<std::optional<UniqueFd>> restore_sources(applied.size());
    for (std::size_t i = keep; i < applied.size(); ++i) {
        const Entry& entry = applied[i].entry;
        if (Editor::reusable(entry, applied[i].path)) continue;
        if (entry.kind == EntryKind::kHide) {
            auto tree = mnt::clone_tree(empty_fd.get(), "");
            if (tree) restore_sources[i] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        auto tree = entry.create ? resolve_source(host_.get(), owner, parent_of(entry.source),
                                                  work_dir_name(entry.source, ns.name))
                                 : resolve_source(host_.get(), owner, entry.source);
        if (tree) restore_sources[i] = std::move(*tree);
    }

    // In the view: edit the mount stack. The state is written after leaving it.
    std::vector<Applied> now = applied;
    Status edited = [&]() -> Status {
        auto in_view = ScopedMountNamespace::enter(host_.get(), primary);
        if (!in_view) return in_view.error();
        std::vector<std::uint64_t> skeletons;
        for (const auto& a : applied)
            if (a.path != a.entry.target) skeletons.push_back(a.mount_id);
        Editor editor(
            ns.name, dir_ + "/.stage",
            [&](const std::string& path, std::uint64_t under) {
                return append_journal(ns.name, JournalRecord{path, under});
            },
            std::move(skeletons));
        auto restore = [&]() -> Status {
            if (auto st = editor.take_off(now, keep); !st) return st;
            for (std::size_t i = keep; i < applied.size(); ++i) {
                auto back = editor.put_on<Applied>(applied[i].entry, restore_sources[i]);
                if (!back) return back.error();
                now.push_back(std::move(*back));
            }
            return {};
        };
        auto fail = [&](Error error) -> Status {
            if (error.code == EIO) return error;  // not as recorded: the caller repairs it
            if (auto undone = restore(); !undone)
                return Error{EIO,
                             error.message + "; undoing it failed too: " + undone.error().message};
            return error;
        };
        if (auto st = editor.take_off(now, keep); !st) return fail(st.error());
        for (std::size_t j = keep; j < wanted.size(); ++j) {
            auto put = editor.put_on<Applied>(wanted[j], prepared[j]);
            if (!put) return fail(std::move(put).error());
            now.push_back(std::move(*put));
        }
        return {};
    }();
    if (edited || edited.error().code != EIO) {
        // Done, or undone: the state says what is in the view now.
        if (auto saved = save_state(ns.name, now); !saved) return saved;
        clear_journal(ns.name);
        applied = std::move(now);
    }
    return edited;
}

Status Views::destroy(const std::string& name) {
    return worker_.run([&]() -> Status {
        std::string view = view_dir(name);
        struct stat st {};
        if (::lstat(view.c_str(), &st) != 0) return {};
        if (DIR* d = ::opendir((view + "/users").c_str())) {
            while (struct dirent* e = ::readdir(d)) {
                if (e->d_name[0] == '.') continue;
                std::string user = view + "/users/" + e->d_name;
                unpin(user + "/mnt");
                unpin(user + "/user");
                ::rmdir(user.c_str());
            }
            ::closedir(d);
            ::rmdir((view + "/users").c_str());
        }
        unpin(view + "/mnt");
        for (const char* file : {"/state.json", "/state.json.tmp", "/journal", "/id", "/id.tmp"})
            ::unlink((view + file).c_str());
        if (::rmdir(view.c_str()) != 0 && errno != ENOENT)
            return sys_error("remove '" + view + "'");
        return {};
    });
}

Result<std::string> Views::identity(const std::string& name) const {
    auto text = read_text(view_dir(name) + "/id");
    if (!text) return Error(std::move(text).error());
    while (!text->empty() && text->back() == '\n') text->pop_back();
    return text;
}

Status Views::set_identity(const std::string& name, const NamespaceId& id) const {
    return write_text(view_dir(name) + "/id", id.hex() + "\n");
}

Result<Views::GuardFacts> Views::guard_facts(const Namespace& ns, const Resolver& resolver) {
    GuardFacts facts;
    facts.user_controlled = ns.owner != 0;
    auto primary_fd = primary(ns.name);
    if (!primary_fd) return primary_fd.error();
    struct stat pinned {};
    if (::fstat(primary_fd->get(), &pinned) != 0) return sys_error("stat the view");
    facts.ns = static_cast<std::uint32_t>(pinned.st_ino);

    std::vector<gid_t> groups;
    if (resolver.pid > 0) {
        auto g = process_groups(resolver.pid);
        if (!g || !proc::pidfd_alive(resolver.pidfd))
            return Error{ESRCH, "the requesting process is gone"};
        groups = std::move(*g);
    } else {
        groups = user_groups(resolver.uid, resolver.gid);
    }
    auto open_path = [](const std::string& path, std::uint64_t resolve,
                        std::uint64_t flags = O_PATH) {
        open_how how{};
        how.flags = flags | O_CLOEXEC;
        how.resolve = resolve;
        std::string relative = path == "/" ? "." : path.substr(1);
        return UniqueFd(
            static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, relative.c_str(), &how, sizeof how)));
    };
    auto lookup = [&](const std::string& path, std::uint64_t resolve, struct stat& st) {
        UniqueFd fd = open_path(path, resolve);
        return fd && ::fstat(fd.get(), &st) == 0;
    };
    // The inode generation of `path`'s file (`file`), where its file system tells it: asked of
    // a regular file opened for nothing (no read, no blocking, no controlling terminal).
    auto generation_of = [&](const std::string& path,
                             const struct stat& file) -> pns_denied_generation {
        if (!S_ISREG(file.st_mode)) return {0, 0};
        constexpr std::uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        constexpr std::uint64_t kFlags = O_RDONLY | O_NONBLOCK | O_NOCTTY;
        UniqueFd fd = open_path(path, kResolve, kFlags | O_NOATIME);
        if (!fd && errno == EPERM) fd = open_path(path, kResolve, kFlags);  // not the caller's
        struct stat opened {};
        unsigned int generation = 0;
        if (!fd || ::fstat(fd.get(), &opened) != 0 || opened.st_ino != file.st_ino ||
            opened.st_dev != file.st_dev || ::ioctl(fd.get(), FS_IOC_GETVERSION, &generation) != 0)
            return {0, 0};
        return {static_cast<std::uint32_t>(generation), 1};
    };
    // The directory that holds `path`'s file and its name there, when `path` names the file
    // itself (it ends in neither a symlink nor a mount: then the kernel's dentry of the file
    // has that directory for parent).
    auto by_name = [&](const std::string& path,
                       const struct stat& file) -> std::optional<pns_denied_name> {
        auto slash = path.rfind('/');
        std::string name = path.substr(slash + 1);
        UniqueFd dir = open_path(slash == 0 ? "/" : path.substr(0, slash),
                                 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        struct stat dir_st {};
        struct statx last {};
        if (!dir || ::fstat(dir.get(), &dir_st) != 0 ||
            ::statx(dir.get(), name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, &last) !=
                0)
            return std::nullopt;
        bool same = makedev(last.stx_dev_major, last.stx_dev_minor) == file.st_dev &&
                    last.stx_ino == file.st_ino && dir_st.st_dev == file.st_dev;
        bool mount_root = (last.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                          (last.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        if (!same || S_ISLNK(last.stx_mode) || mount_root) return std::nullopt;
        return pns_denied_name{facts.ns, kernel_dev(file.st_dev),
                               static_cast<std::uint64_t>(dir_st.st_ino),
                               pns_name_hash(reinterpret_cast<const unsigned char*>(name.data()),
                                             static_cast<std::uint32_t>(name.size()))};
    };
    Status st = worker_.run([&]() -> Status {
        auto in_view = ScopedMountNamespace::enter(host_.get(), primary_fd->get());
        if (!in_view) return in_view.error();
        // setns(CLONE_NEWNS) put this thread's root and cwd at the view's root.
        for (const Entry& e : ns.table.entries) {
            struct stat target {};
            if (e.kind == EntryKind::kDeny) {
                auto as_user = ScopedFsCredentials::become(resolver.uid, resolver.gid, groups);
                if (!as_user) return as_user.error();
                if (!lookup(e.target, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, target))
                    return Error::from_errno(errno,
                                             "deny " + quote(e.target) + " (looked up as uid " +
                                                 std::to_string(resolver.uid) + " in the view)");
                if (S_ISDIR(target.st_mode))
                    return Error::invalid("deny " + quote(e.target) +
                                          ": a directory (deny takes files; hide takes "
                                          "directories)");
                facts.denied.emplace_back(
                    pns_denied_file{facts.ns, kernel_dev(target.st_dev),
                                    static_cast<std::uint64_t>(target.st_ino)},
                    generation_of(e.target, target));
                if (auto named = by_name(e.target, target)) facts.denied_names.push_back(*named);
            } else if (e.kind == EntryKind::kBind && !facts.user_controlled) {
                // As root, but following no symlink: only what the entry itself shows.
                facts.user_controlled =
                    !lookup(e.target, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS, target) ||
                    target.st_uid != 0;
            }
        }
        return {};
    });
    if (!st) return st.error();
    return facts;
}

Result<nlohmann::json> Views::explain(const Namespace& ns, const std::string& path) {
    // The last entry at or above `path` decides; its DST prefix is replaced by its SRC. A deny
    // entry serves nothing; it only says that members may not open the file.
    json denied = nullptr;
    for (std::size_t i = 0; i < ns.table.entries.size(); ++i) {
        const Entry& e = ns.table.entries[i];
        if (e.kind == EntryKind::kDeny && e.target == path) denied = i + 1;
    }
    for (auto it = ns.table.entries.rbegin(); it != ns.table.entries.rend(); ++it) {
        const Entry& e = *it;
        if (e.kind == EntryKind::kDeny) continue;
        bool covers = path == e.target || e.target == "/" ||
                      (path.starts_with(e.target) && path[e.target.size()] == '/');
        if (!covers) continue;
        std::size_t index = static_cast<std::size_t>(ns.table.entries.rend() - it);
        std::string rest = e.target == "/" ? path : path.substr(e.target.size());
        json j = {{"path", path}, {"entry", index}, {"line", format_entry(e)}};
        if (!denied.is_null()) j["denied_by_entry"] = denied;
        switch (e.kind) {
            case EntryKind::kBind: {
                std::string from = e.source == "/" ? (rest.empty() ? "/" : rest) : e.source + rest;
                j["resolves_to"] = from;
                // A union searches its layers in order; the first that has the name serves it.
                if (e.mode == UnionMode::kBefore) j["layers"] = {from, path};
                if (e.mode == UnionMode::kAfter) {
                    j["layers"] = {path, from};
                    j["resolves_to"] = path;
                }
                if (e.mode != UnionMode::kReplace) j["union"] = true;
                break;
            }
            case EntryKind::kHide:
                j["hidden"] = true;
                break;
            case EntryKind::kReadOnly:
                j["read_only"] = true;
                j["resolves_to"] = path;
                break;
            case EntryKind::kTmpfs:
                j["private_tmpfs"] = true;
                break;
            case EntryKind::kDeny:
                break;
        }
        return j;
    }
    json j = {{"path", path}, {"entry", nullptr}, {"resolves_to", path}};
    if (!denied.is_null()) j["denied_by_entry"] = denied;
    return j;
}

}  // namespace pns::agent
