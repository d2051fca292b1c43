#include "agent/views/views.hpp"
#include "agent/namespaces/auth.hpp"
#include "agent/bpf/guard.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <malloc.h>
#include <poll.h>
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
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "agent/views/explain.hpp"
#include "agent/views/files.hpp"
#include "agent/views/mount.hpp"
#include "agent/views/plan.hpp"
#include "agent/views/sources.hpp"
#include "agent/proc.hpp"
#include "agent/trusted_dir.hpp"
#include "agent/views/unions.hpp"
#include "common/protocol.hpp"
#include "common/text.hpp"

namespace pns::agent {

using namespace detail;

namespace {

using nlohmann::json;

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

// How long a satellite's maker may take (it needs milliseconds).
constexpr std::chrono::seconds kSatelliteDeadline{10};

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

// The same in pnsd, with a deadline: the child it waits for may be stopped by the user it runs
// as, and pnsd must not wait for it for ever.
bool wait_byte_until(int fd, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return false;
        return wait_byte(fd);
    }
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

Views::Views(std::string dir, UniqueFd host, UniqueFd proc, UniqueFd proc_fds)
    : dir_(std::move(dir)),
      host_(std::move(host)),
      proc_(std::move(proc)),
      proc_fds_(std::move(proc_fds)) {}

Views::~Views() = default;

Result<std::unique_ptr<Views>> Views::open(const std::string& runtime_dir) {
    std::string dir = runtime_dir + "/views";
    // Pins, states and journals live below: root's alone, never reached through a link.
    auto runtime = open_trusted_dir(runtime_dir, {.what = "runtime directory"});
    if (!runtime) return runtime.error();
    auto views_dir = open_trusted_subdir(runtime->get(), runtime_dir, "views", 0700);
    if (!views_dir) return views_dir.error();
    auto stage_dir = open_trusted_subdir(views_dir->get(), dir, ".stage", 0700);
    if (!stage_dir) return stage_dir.error();
    UniqueFd host(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
    if (!host) return sys_error("open the host's mount namespace");
    UniqueFd proc(::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!proc) return sys_error("open /proc");
    auto proc_fds = mnt::open_proc_fds();
    if (!proc_fds) return proc_fds.error();
    std::unique_ptr<Views> views(
        new Views(dir, std::move(host), std::move(proc), std::move(*proc_fds)));
    if (!views->worker_.started()) return views->worker_.started().error();
    struct stat stage {};
    if (::fstat(stage_dir->get(), &stage) != 0) return sys_error("stat '" + dir + "/.stage'");
    views->stage_dev_ = stage.st_dev;
    views->stage_ino_ = stage.st_ino;

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
        if (::setns(primary_fd->get(), CLONE_NEWNS) != 0) ::_exit(1);
        if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
            ::syscall(SYS_setresgid, gid, gid, gid) != 0 ||
            ::syscall(SYS_setresuid, uid, uid, uid) != 0)
            ::_exit(2);
        // After the ids: a change of credentials clears the parent-death signal (kernel/cred.c:
        // commit_creds), and a maker stopped by its user would outlive a pnsd that died.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
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
    // The child runs as the member's uid, which may stop it (SIGSTOP is the owner's to send):
    // a few seconds are more than it needs, and then it is killed and the join refused.
    const auto deadline = std::chrono::steady_clock::now() + kSatelliteDeadline;
    if (!wait_byte_until(parent_in.get(), deadline))
        return fail(Error{EPERM, "creating the user namespace of uid " + std::to_string(uid) +
                                     " failed (or it was stopped)"});
    // Only the member's own ids are mapped: root is not, so set-uid-root programs do not
    // elevate inside. setgroups is denied so no member can shed a group that denies it access.
    std::string uid_line = std::to_string(uid) + " " + std::to_string(uid) + " 1\n";
    std::string gid_line = std::to_string(gid) + " " + std::to_string(gid) + " 1\n";
    if (auto st = write_proc(child, "uid_map", uid_line); !st) return fail(st.error());
    if (auto st = write_proc(child, "setgroups", "deny"); !st) return fail(st.error());
    if (auto st = write_proc(child, "gid_map", gid_line); !st) return fail(st.error());
    if (!send_byte(parent_out.get()) || !wait_byte_until(parent_in.get(), deadline))
        return fail(Error{EPERM, "creating the mount namespace of the satellite failed (or it "
                                 "was stopped)"});

    std::string proc = "/proc/" + std::to_string(child) + "/ns/";
    UniqueFd user(::open((proc + "user").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd mnt(::open((proc + "mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!user || !mnt) return fail(sys_error("open the satellite's namespaces"));
    if (auto st = pin_namespace(user.get(), dir + "/user"); !st) return fail(st.error());
    if (auto st = pin_namespace(mnt.get(), dir + "/mnt"); !st) return fail(st.error());
    // Pinned: the child has nothing left to do, and is not waited for to finish by itself.
    ::kill(child, SIGKILL);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return Satellite{std::move(user), std::move(mnt)};
}

namespace {

// The mounts of the calling thread's mount namespace, less those at or below `skip` (if not
// empty): the lines of its mountinfo, found through `proc`, the host's procfs (never through a
// path the view resolves: its table may put anything at /proc).
Result<std::size_t> count_mounts(int proc, const std::string& skip) {
    UniqueFd fd(::openat(proc, "thread-self/mountinfo", O_RDONLY | O_CLOEXEC));
    if (!fd) return sys_error("open /proc/thread-self/mountinfo");
    std::string text;
    char buf[64 << 10];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("read /proc/thread-self/mountinfo");
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t mounts = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        fields >> id >> parent >> dev >> root >> mount_point;
        if (!skip.empty() && (mount_point == skip || mount_point.starts_with(skip + "/"))) continue;
        ++mounts;
    }
    return mounts;
}

}  // namespace

Result<std::size_t> Views::mounts_made(const std::string& name) {
    Result<std::size_t> result = Error{EIO, "not run"};
    auto st = worker_.run([&]() -> Status {
        UniqueFd proc(::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!proc) return sys_error("open /proc");
        // What a view starts with: the host's mounts but the views' pins, which a primary
        // takes off (open_or_create_primary).
        auto host = count_mounts(proc.get(), dir_);
        if (!host) return host.error();
        auto primary_fd = primary(name);
        if (!primary_fd) return primary_fd.error();
        auto in_view = ScopedMountNamespace::enter(host_.get(), primary_fd->get());
        if (!in_view) return in_view.error();
        auto view = count_mounts(proc.get(), {});
        if (!view) return view.error();
        result = *view > *host ? *view - *host : 0;
        return {};
    });
    if (!st) return st.error();
    return result;
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

namespace {

// A detached tree taken off a view, kept for an entry that wants it back.
struct Parked {
    Entry entry;
    UniqueFd tree;
};

// The view the worker is in, seen from inside: its root as of now, paths looked up as a given
// user, and pnsd's own mounts found again by mount ID and taken off by descriptor. Nothing
// here follows a path from the view's root with root's rights but the kernel's own names of
// pnsd's mounts (statmount), and those with no link at all.
class InView {
  public:
    InView(int primary, int proc, int proc_fds)
        : primary_(primary), proc_(proc), proc_fds_(proc_fds) {}

    int proc() const { return proc_; }
    int proc_fds() const { return proc_fds_; }

    // The view's root as a process entering it now gets it: setns(CLONE_NEWNS) puts the
    // thread's root at the top of the namespace's root (fs/namespace.c: mntns_install looks
    // "/" up with LOOKUP_DOWN), where a skeleton over "/" sits; a thread keeps the root it got
    // at its setns, even once a mount covers it or it is taken off.
    Result<int> root() {
        if (::setns(primary_, CLONE_NEWNS) != 0) return sys_error("enter the view again");
        root_.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root_) return sys_error("open the view's root");
        return root_.get();
    }

    // `path` of the view as `who` finds it, from the root: what a member of that uid reaches
    // there, and nothing else. Fails with the lookup's errno.
    Result<UniqueFd> open_as(const Identity& who, const std::string& path, std::uint64_t flags) {
        auto top = root();
        if (!top) return top.error();
        auto as_user = ScopedFsCredentials::become(who);
        if (!as_user) return Error(std::move(as_user).error());
        UniqueFd fd = open_at(*top, relative(path), flags, kAsUser);
        if (!fd) return Error::from_errno(errno, "");
        return fd;
    }

    // pnsd's mount with ID `id`, where it is now (renames move mounts with their directory),
    // provided nothing covers it.
    Result<UniqueFd> find(std::uint64_t id) {
        auto top = root();
        if (!top) return top.error();
        auto point = mnt::mount_point(id);
        if (!point) return point.error();
        UniqueFd fd = open_at(*top, relative(*point), O_PATH | O_NOFOLLOW, kNoLinks);
        if (!fd) return sys_error("open " + quote(*point));
        auto at = mnt::mount_id(fd.get());
        if (!at) return at.error();
        if (*at != id) return Error{EBUSY, "it is covered at " + quote(*point)};
        return fd;
    }

    Status detach(int mount) { return mnt::detach(proc_fds_, mount); }

  private:
    int primary_;
    int proc_;  // the host's /proc (O_PATH)
    int proc_fds_;
    UniqueFd root_;
};

// A DST as the editor found it in the view.
struct Dst {
    UniqueFd fd;  // O_PATH, on the mount on top there; its last component never followed
    struct stat st {};
};

// The nearest existing ancestor of a DST that does not exist.
struct Ancestor {
    UniqueFd fd;                       // as the editor found it (O_PATH, a directory)
    std::string path;                  // as the table names it, for messages
    std::vector<std::string> missing;  // the components below it, innermost first
};

// Edits the mount stack of one view; runs on the worker, inside the view. Every entry is one
// mount attached at one place: its DST, or for a DST that does not exist, a skeleton of the
// nearest existing ancestor (see make_skeleton) with the entry's mount inside. Each DST is
// looked up once, as the editor (the requester of a new entry; the owner for one made anew),
// and everything after works from that descriptor.
class Editor {
  public:
    // Writes down a mount about to be attached: where, what is on top there, its ID.
    using Journal =
        std::function<Status(const std::string& path, std::uint64_t under, std::uint64_t id)>;
    struct Stage {
        std::string path;  // <views>/.stage, as pnsd's own namespace names it
        dev_t dev = 0;
        ino_t ino = 0;
    };

    Editor(const std::string& view_name, InView& view, Stage stage, Journal journal,
           std::vector<std::uint64_t> skeletons)
        : name_(view_name),
          view_(view),
          stage_(std::move(stage)),
          journal_(std::move(journal)),
          skeletons_(std::move(skeletons)) {}

    // Takes the top entry of `list` off, keeping it as a detached tree if `park` (for an
    // identical entry put on later: the plan's reusable ones, agent/views/plan.hpp). The
    // mount is found by its ID, wherever it is now, and unmounted by descriptor.
    template <typename List>
    Status take_off_top(List& list, bool park) {
        auto& top = list.back();
        auto at = view_.find(top.mount_id);
        if (!at)
            return Error{EIO, "the mount of " + quote(format_entry(top.entry)) + " in view " +
                                  quote(name_) + " is not as pnsd made it: " + at.error().message};
        if (park) {
            auto saved = mnt::clone_tree(at->get(), "");
            if (!saved) return saved.error();
            parked_.push_back({top.entry, std::move(*saved)});
        }
        if (auto st = view_.detach(at->get()); !st) return st;
        list.pop_back();
        return {};
    }

    // Takes the entries of `list` past `from` off, top first, keeping the reusable ones as
    // detached trees.
    template <typename List>
    Status take_off(List& list, std::size_t from) {
        while (list.size() > from) {
            if (auto st = take_off_top(list, reusable(list.back().entry, list.back().skeleton));
                !st)
                return st;
        }
        return {};
    }

    // Puts `entry` on top, its DST looked up as `who`: the tree it had if it was taken off in
    // this edit, else a new one (`ready` holds a bind's source, looked up beforehand outside
    // the view, or the empty file that hides a file).
    template <typename Item>
    Result<Item> put_on(const Entry& entry, std::optional<Source>& ready, const Identity& who) {
        auto found = find_dst(entry, who);
        if (!found) return found.error();
        std::optional<Made> made;
        Dst dst;
        if (*found) {
            dst = std::move(**found);
        } else {
            auto ancestor = existing_ancestor(entry, who);
            if (!ancestor) return ancestor.error();
            auto inside = make_in_skeleton(*ancestor, entry, ready);
            if (!inside) return inside.error();
            if (*inside) {
                dst = std::move(**inside);
            } else {
                auto skeleton = make_skeleton(*ancestor, entry, ready, who);
                if (!skeleton) return skeleton.error();
                made = std::move(*skeleton);
                dst = std::move(made->dst);
            }
        }
        auto undo = [&](Error error) -> Error {
            if (made) (void)view_.detach(made->skeleton.get());
            return error;
        };
        if (S_ISLNK(dst.st.st_mode))
            return undo(Error::invalid("DST " + quote(entry.target) +
                                       " is a symbolic link in the view; name the path it "
                                       "points to"));
        UniqueFd tree;
        if (auto back = std::find_if(parked_.rbegin(), parked_.rend(),
                                     [&](const Parked& p) { return p.entry == entry; });
            back != parked_.rend()) {
            tree = std::move(back->tree);
            parked_.erase(std::next(back).base());
        } else {
            auto built = build(entry, dst, ready);
            if (!built) return undo(std::move(built).error());
            tree = std::move(*built);
        }
        if (made) {
            if (auto st = mnt::attach(tree.get(), dst.fd.get()); !st)
                return undo(Error{st.error().code,
                                  "mount on " + quote(entry.target) + ": " + st.error().message});
            auto item = record<Item>(entry, made->path, made->skeleton.get(), made->under, true);
            if (item) skeletons_.push_back(item->mount_id);
            return item;
        }
        auto placed = journaled(dst.fd.get(), tree.get());
        if (!placed) return placed.error();
        if (auto st = mnt::attach(tree.get(), dst.fd.get()); !st)
            return Error{st.error().code,
                         "mount on " + quote(entry.target) + ": " + st.error().message};
        return record<Item>(entry, placed->first, tree.get(), placed->second, false);
    }

  private:
    // A skeleton made for a missing DST, attached, and the DST made in it.
    struct Made {
        UniqueFd skeleton;
        std::string path;
        std::uint64_t under = 0;
        Dst dst;
    };

    Error dst_error(const Entry& entry, const Identity& who, int code) const {
        return Error::from_errno(code, "DST " + quote(entry.target) + " (looked up as uid " +
                                           std::to_string(who.uid) + " in the view)");
    }

    // DST as `who` reaches it in the view, or nothing when it does not exist. Its last
    // component is not followed: a DST that is a symlink is refused by the caller. Links on
    // the way are followed as `who`, inside the view: they lead only where that user could
    // go, and the mount goes where the lookup ended.
    Result<std::optional<Dst>> find_dst(const Entry& entry, const Identity& who) {
        auto fd = view_.open_as(who, entry.target, O_PATH | O_NOFOLLOW);
        if (!fd) {
            if (fd.error().code == ENOENT) return std::optional<Dst>{};
            return dst_error(entry, who, fd.error().code);
        }
        Dst dst{std::move(*fd), {}};
        if (::fstat(dst.fd.get(), &dst.st) != 0)
            return sys_error("stat DST " + quote(entry.target));
        return std::optional<Dst>{std::move(dst)};
    }

    // The nearest existing ancestor of a DST that does not exist, as `who` finds it, and the
    // components below it that are missing. Only directories can hold what is to be made.
    Result<Ancestor> existing_ancestor(const Entry& entry, const Identity& who) {
        if (entry.kind == EntryKind::kReadOnly)
            return Error{ENOENT, "ro of " + quote(entry.target) + ": no such path in the view"};
        Ancestor found{{}, parent_of(entry.target), {base_name(entry.target)}};
        for (;;) {
            auto fd = view_.open_as(who, found.path, O_PATH);
            if (fd) {
                struct stat st {};
                if (::fstat(fd->get(), &st) != 0 || !S_ISDIR(st.st_mode))
                    return Error{ENOTDIR, "DST " + quote(entry.target) +
                                              " cannot be made: " + quote(found.path) +
                                              " is not a directory in the view"};
                found.fd = std::move(*fd);
                return found;
            }
            if (fd.error().code != ENOENT) return dst_error(entry, who, fd.error().code);
            found.missing.push_back(base_name(found.path));
            found.path = parent_of(found.path);
        }
    }

    // The way pnsd's journal names where a mount goes (`at`) and what is on top there now,
    // written before the mount `tree` is attached there.
    Result<std::pair<std::string, std::uint64_t>> journaled(int at, int tree) {
        auto under = mnt::mount_id(at);
        if (!under) return under.error();
        auto id = mnt::mount_id(tree);
        if (!id) return id.error();
        auto path = mnt::path_of(view_.proc_fds(), at);
        if (!path) return path.error();
        if (auto st = journal_(*path, *under, *id); !st) return st.error();
        return std::pair{std::move(*path), *under};
    }

    template <typename Item>
    static Result<Item> record(const Entry& entry, const std::string& path, int tree,
                               std::uint64_t under, bool skeleton) {
        auto id = mnt::mount_id(tree);
        if (!id) return id.error();
        return Item{entry, path, *id, under, skeleton};
    }

    // A new mount for `entry` over the existing DST.
    Result<UniqueFd> build(const Entry& entry, const Dst& dst, std::optional<Source>& ready) {
        switch (entry.kind) {
            case EntryKind::kBind:
                if (!ready) return Error{EIO, "no source prepared for " + quote(entry.source)};
                if (entry.mode != UnionMode::kReplace) return build_union(entry, dst, *ready);
                return std::move(ready->tree);
            case EntryKind::kReadOnly: {
                auto tree = mnt::clone_tree(dst.fd.get(), "");
                if (!tree) return tree;
                if (auto st = mnt::set_attributes(tree->get(), MOUNT_ATTR_RDONLY, 0); !st)
                    return st.error();
                return tree;
            }
            case EntryKind::kHide:
                if (!S_ISDIR(dst.st.st_mode)) {
                    // A file (or device, fifo, socket) hides behind an empty read-only file,
                    // cloned in the host beforehand (open_tree clones only mounts of the
                    // namespace it runs in).
                    if (!ready)
                        return Error{EIO, "no empty file prepared for " + quote(entry.target)};
                    UniqueFd tree = std::move(ready->tree);
                    if (auto st = mnt::set_attributes(tree.get(), MOUNT_ATTR_RDONLY, 0); !st)
                        return st.error();
                    return tree;
                }
                [[fallthrough]];
            case EntryKind::kTmpfs: {
                if (!S_ISDIR(dst.st.st_mode))
                    return Error::invalid("tmpfs of " + quote(entry.target) +
                                          " needs a directory there");
                // An empty directory with the mode and owner of the one it covers; a tmpfs
                // entry's (members write there) bounded in size.
                auto tree = mnt::new_tmpfs(dst.st.st_mode, dst.st.st_uid, dst.st.st_gid,
                                           entry.kind == EntryKind::kTmpfs);
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

    // The missing path of `entry` made inside a skeleton pnsd already has over its nearest
    // existing ancestor, if there is one: many missing DSTs below one directory (a private
    // /dev, say) then share a single skeleton instead of each copying the last. Nothing when
    // there is no skeleton there.
    Result<std::optional<Dst>> make_in_skeleton(const Ancestor& at, const Entry& entry,
                                                const std::optional<Source>& ready) {
        auto id = mnt::mount_id(at.fd.get());
        if (!id) return id.error();
        if (std::find(skeletons_.begin(), skeletons_.end(), *id) == skeletons_.end())
            return std::optional<Dst>{};
        // The skeleton is read-only for members; open it for the moment of the change.
        mount_attr attr{};
        attr.attr_clr = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(at.fd.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
            return sys_error("open the skeleton at " + quote(at.path) + " for a change");
        auto made = make_missing(at.fd.get(), at.path, at.missing, entry, ready);
        attr = mount_attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(at.fd.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0 && made)
            return sys_error("make the skeleton at " + quote(at.path) + " read-only again");
        if (!made) return made.error();
        return std::optional<Dst>{std::move(*made)};
    }

    // Creates the `missing` components (outermost last) below `dir`, a directory of a skeleton
    // of pnsd's: directories, and DST as the kind of thing it will show. A name that is there
    // already (a placeholder for a symlink, say) is never followed.
    static Result<Dst> make_missing(int dir, const std::string& ancestor,
                                    const std::vector<std::string>& missing, const Entry& entry,
                                    const std::optional<Source>& ready) {
        UniqueFd at = open_at(dir, ".", O_PATH | O_DIRECTORY, kOneName);
        if (!at) return sys_error("open " + quote(ancestor) + " in the view");
        std::string rel;
        for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
            rel += (rel.empty() ? "" : "/") + *it;
            bool last = std::next(it) == missing.rend();
            if (!last) {
                if (::mkdirat(at.get(), it->c_str(), 0755) != 0 && errno != EEXIST)
                    return sys_error("create " + quote(join(ancestor, rel)) + " in the view");
                UniqueFd next = open_at(at.get(), *it, O_PATH | O_DIRECTORY | O_NOFOLLOW, kOneName);
                if (!next)
                    return Error{ENOTDIR, "DST " + quote(entry.target) +
                                              " cannot be made: " + quote(join(ancestor, rel)) +
                                              " is not a directory in the view"};
                at = std::move(next);
                continue;
            }
            bool as_file = false;
            if (entry.kind == EntryKind::kBind && ready) {
                struct stat src {};
                if (::fstat(ready->tree.get(), &src) == 0) as_file = !S_ISDIR(src.st_mode);
            }
            int made = as_file ? ::mknodat(at.get(), it->c_str(), S_IFREG | 0644, 0)
                               : ::mkdirat(at.get(), it->c_str(), 0755);
            if (made != 0)
                return sys_error("create " + quote(join(ancestor, rel)) + " in the view");
            Dst dst{open_at(at.get(), *it, O_PATH | O_NOFOLLOW, kOneName), {}};
            if (!dst.fd || ::fstat(dst.fd.get(), &dst.st) != 0)
                return sys_error("open " + quote(join(ancestor, rel)) + " in the view");
            return dst;
        }
        return Error{EINVAL, "nothing is missing of " + quote(entry.target)};
    }

    // Makes a DST that does not exist appear, in the view only. The nearest existing ancestor
    // A is covered by a read-only tmpfs holding a placeholder for each of A's entries, each
    // with A's own entry bind-mounted on it (with everything mounted below), and the missing
    // path down to DST. So A lists as before and its entries are the real ones, but A itself
    // becomes a fixed listing: names added to or removed from the real A afterwards do not
    // show, and nothing new can be created directly in A inside the view (EROFS).
    //
    // A is listed, and its entries copied, as `who`: a skeleton shows nothing its editor could
    // not list and reach. The placeholders are pnsd's own, in its tmpfs.
    Result<Made> make_skeleton(const Ancestor& at, const Entry& entry,
                               const std::optional<Source>& ready, const Identity& who) {
        struct Child {
            std::string name;
            struct stat st;
            std::string link;  // a symlink's target
        };
        std::vector<Child> children;
        UniqueFd listed;
        {
            auto as_user = ScopedFsCredentials::become(who);
            if (!as_user) return Error(std::move(as_user).error());
            // Opened anew for reading through its descriptor, so the permission to list is
            // checked, as `who`, on the very directory that was found.
            listed.reset(::openat(view_.proc_fds(), mnt::fd_name(at.fd.get()).c_str(),
                                  O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (!listed)
                return Error::from_errno(errno, "DST " + quote(entry.target) +
                                                    " cannot be made: its parent " +
                                                    quote(at.path) + " cannot be listed by uid " +
                                                    std::to_string(who.uid));
            int list_fd = ::dup(listed.get());
            DIR* dir = list_fd >= 0 ? ::fdopendir(list_fd) : nullptr;
            if (!dir) {
                if (list_fd >= 0) ::close(list_fd);
                return sys_error("list " + quote(at.path));
            }
            while (struct dirent* d = ::readdir(dir)) {
                Child child{d->d_name, {}, {}};
                if (child.name == "." || child.name == "..") continue;
                if (::fstatat(listed.get(), d->d_name, &child.st, AT_SYMLINK_NOFOLLOW) != 0)
                    continue;  // gone meanwhile
                if (S_ISLNK(child.st.st_mode)) {
                    child.link.resize(4096);
                    ssize_t n =
                        ::readlinkat(listed.get(), d->d_name, child.link.data(), child.link.size());
                    if (n < 0) continue;
                    child.link.resize(static_cast<std::size_t>(n));
                }
                children.push_back(std::move(child));
            }
            ::closedir(dir);
        }
        struct stat info {};
        if (::fstat(at.fd.get(), &info) != 0) return sys_error("stat " + quote(at.path));
        auto skeleton = mnt::new_tmpfs(info.st_mode, info.st_uid, info.st_gid);
        if (!skeleton) return skeleton.error();

        // Placeholders for the ancestor's entries, created through the detached tmpfs.
        for (const auto& child : children) {
            const char* name = child.name.c_str();
            int made;
            if (S_ISLNK(child.st.st_mode)) {
                made = ::symlinkat(child.link.c_str(), skeleton->get(), name);
                if (made == 0)
                    ::fchownat(skeleton->get(), name, child.st.st_uid, child.st.st_gid,
                               AT_SYMLINK_NOFOLLOW);
            } else if (S_ISDIR(child.st.st_mode)) {
                made = ::mkdirat(skeleton->get(), name, 0755);
            } else {
                made = ::mknodat(skeleton->get(), name, S_IFREG | 0644, 0);
            }
            if (made != 0) return sys_error("placeholder for " + quote(join(at.path, child.name)));
        }
        auto dst = make_missing(skeleton->get(), at.path, at.missing, entry, ready);
        if (!dst) return dst.error();

        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::mount_setattr(skeleton->get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
            return sys_error("make the skeleton of " + quote(at.path) + " read-only");
        auto placed = journaled(at.fd.get(), skeleton->get());
        if (!placed) return placed.error();
        if (auto st = mnt::attach(skeleton->get(), at.fd.get()); !st)
            return Error{st.error().code,
                         "mount a skeleton on " + quote(at.path) + ": " + st.error().message};
        // Each entry of A's own on its placeholder: copied from A below the skeleton (the
        // descriptor was opened before it went on), as `who`, one at a time.
        for (const auto& child : children) {
            if (S_ISLNK(child.st.st_mode)) continue;
            Status done = [&]() -> Status {
                Result<UniqueFd> copy = Error{EIO, "not copied"};
                {
                    auto as_user = ScopedFsCredentials::become(who);
                    if (!as_user) return Error(std::move(as_user).error());
                    copy = mnt::clone_tree(listed.get(), child.name);
                }
                if (!copy) return copy.error();
                UniqueFd placeholder =
                    open_at(skeleton->get(), child.name, O_PATH | O_NOFOLLOW, kOneName);
                if (!placeholder) return sys_error("open the placeholder");
                return mnt::attach(copy->get(), placeholder.get());
            }();
            if (!done) {
                (void)view_.detach(skeleton->get());
                return Error{done.error().code, "skeleton of " + quote(at.path) + ": " +
                                                    quote(join(at.path, child.name)) + ": " +
                                                    done.error().message};
            }
        }
        return Made{std::move(*skeleton), std::move(placed->first), placed->second,
                    std::move(*dst)};
    }

    // pnsd's staging directory in this view, if it is that directory: a lookup with no link,
    // that must end at the very directory pnsd made (an entry may cover it in this view).
    Result<UniqueFd> open_stage() {
        auto top = view_.root();
        if (!top) return top.error();
        UniqueFd fd =
            open_at(*top, relative(stage_.path), O_PATH | O_DIRECTORY | O_NOFOLLOW, kNoLinks);
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_dev != stage_.dev ||
            st.st_ino != stage_.ino)
            return Error{EPERM, "pnsd's staging directory " + quote(stage_.path) +
                                    " is covered in view " + quote(name_) +
                                    " (an entry at or above it), so unions cannot be made there"};
        return fd;
    }

    // A union of SRC with what DST holds, by overlayfs. Its layers must be mounts of the view
    // (fs/namespace.c: clone_private_mount), so SRC's tree is attached at the stage, a
    // directory no member reaches, for the moment overlayfs takes its own copy. overlayfs
    // looks its layers up as the mounter: it is given the descriptors found as the editor,
    // each by its magic link in /proc/self/fd from the working directory, never a path from
    // the view's root. A union whose mounter is not root (an ordinary user's, and root's -c
    // into a user's directory) is made with the mounter's rights (agent/views/unions.hpp); root's
    // here, as root.
    Result<UniqueFd> build_union(const Entry& entry, const Dst& dst, Source& source) {
        if (!S_ISDIR(dst.st.st_mode))
            return Error::invalid("a union needs a directory at DST " + quote(entry.target));
        struct stat src {};
        if (!entry.create && (::fstat(source.tree.get(), &src) != 0 || !S_ISDIR(src.st_mode)))
            return Error::invalid("a union needs a directory at SRC " + quote(entry.source));
        auto stage = open_stage();
        if (!stage) return stage.error();
        if (auto placed = journaled(stage->get(), source.tree.get()); !placed)
            return placed.error();
        if (auto st = mnt::attach(source.tree.get(), stage->get()); !st) return st.error();
        struct Unstage {
            InView& view;
            int tree;
            ~Unstage() { (void)view.detach(tree); }
        } unstage{view_, source.tree.get()};

        // -c: SRC and the work directory, found again in the copy by the names they had and
        // taken only if they are still the directories the requester found.
        UniqueFd upper, work;
        if (entry.create) {
            upper = open_at(source.tree.get(), source.upper_name, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                            kOneName);
            work = open_at(source.tree.get(), source.work_name, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                           kOneName);
            if (!upper || !work || !same_file(upper.get(), source.upper.get()) ||
                !same_file(work.get(), source.work.get()))
                return Error{EAGAIN, "SRC " + quote(entry.source) +
                                         " was moved while the union was made; try again"};
        }
        if (source.mounter && !source.mounter->is_root())
            return build_union_as_user(entry, dst, source);

        UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
        if (!fs) return sys_error("fsopen overlay (is the overlay module loaded?)");
        Status created = mnt::in_directory(view_.proc_fds(), [&]() -> Status {
            auto set = [&](const char* key, int fd, const char* what) -> Status {
                if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, mnt::fd_name(fd).c_str(), 0) !=
                    0)
                    return sys_error(std::string("overlayfs ") + key + " (" + what + ")");
                return {};
            };
            std::vector<std::pair<int, const char*>> lower;  // top first
            if (entry.create) {
                if (auto r = set("upperdir", upper.get(), "SRC"); !r) return r;
                if (auto r = set("workdir", work.get(), "its work directory"); !r) return r;
                lower = {{dst.fd.get(), "DST"}};
            } else if (entry.mode == UnionMode::kBefore) {
                lower = {{source.tree.get(), "SRC"}, {dst.fd.get(), "DST"}};
            } else {
                lower = {{dst.fd.get(), "DST"}, {source.tree.get(), "SRC"}};
            }
            for (const auto& [fd, what] : lower) {
                if (auto r = set("lowerdir+", fd, what); !r) return r;
            }
            if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
                return sys_error("create the union at " + quote(entry.target));
            return {};
        });
        if (!created) return created.error();
        UniqueFd tree(::fsmount(fs.get(), FSMOUNT_CLOEXEC, entry.create ? 0 : MOUNT_ATTR_RDONLY));
        if (!tree) return sys_error("fsmount the union at " + quote(entry.target));
        return tree;
    }

    // A union whose mounter is not root: created by a child process with the mounter's
    // credentials in a user namespace of its own (unions::create_as_user), and mounted and
    // attached here, with pnsd's rights, like any other entry. Such a file system belongs to
    // that user namespace, so nothing in it elevates a process of the view (fs/namespace.c:
    // mnt_may_suid wants the file system's user namespace to be the process's own or an
    // ancestor of it) and it opens no device (SB_I_NODEV); nosuid and nodev on the mount say so.
    Result<UniqueFd> build_union_as_user(const Entry& entry, const Dst& dst, const Source& source) {
        const Credentials& mounter = *source.mounter;
        unions::Layers layers;
        layers.tree = source.tree.get();
        layers.dst = dst.fd.get();
        layers.source_first = entry.mode == UnionMode::kBefore;
        layers.writable = entry.create;
        layers.upper = source.upper.get();
        layers.work = source.work.get();
        layers.upper_name = source.upper_name;
        layers.work_name = source.work_name;
        auto fs = unions::create_as_user(mounter, layers, view_.proc());
        if (!fs && fs.error().code == EAGAIN)
            return Error{EAGAIN, "SRC " + quote(entry.source) +
                                     " was moved while the union was made; try again"};
        if (!fs)
            return Error{fs.error().code, "the union at " + quote(entry.target) + " (made as uid " +
                                              std::to_string(mounter.uid) +
                                              "): " + fs.error().message};
        std::uint64_t attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if (!entry.create) attributes |= MOUNT_ATTR_RDONLY;
        UniqueFd tree(::fsmount(fs->get(), FSMOUNT_CLOEXEC, static_cast<unsigned>(attributes)));
        if (!tree) return sys_error("fsmount the union at " + quote(entry.target));
        return tree;
    }

    std::string name_;
    InView& view_;
    Stage stage_;
    Journal journal_;
    std::vector<std::uint64_t> skeletons_;  // mount IDs of the skeletons in the view
    std::vector<Parked> parked_;
};

}  // namespace

void Views::scrub(int primary, const std::vector<Applied>& applied,
                  const std::vector<JournalRecord>& journal) {
    std::vector<JournalRecord> records;
    for (const auto& a : applied) records.push_back({a.path, a.under_id, a.mount_id});
    records.insert(records.end(), journal.begin(), journal.end());
    auto in_view = ScopedMountNamespace::enter(host_.get(), primary);
    if (!in_view) return;
    InView view(primary, proc_.get(), proc_fds_.get());
    // Newest first: every mount pnsd made goes, wherever it is now, including those of an
    // edit that was cut short before it was recorded.
    for (auto it = records.rbegin(); it != records.rend(); ++it) {
        if (it->mount_id != 0) {
            if (auto at = view.find(it->mount_id)) (void)view.detach(at->get());
            continue;
        }
        // A record of an older pnsd, without the mount's ID: whatever is on top at its path
        // and was not there before pnsd's mount goes. Its path is followed with no link.
        for (int guard = 0; guard < 256; ++guard) {
            auto top = view.root();
            if (!top) break;
            UniqueFd at = open_at(*top, relative(it->path), O_PATH | O_NOFOLLOW, kNoLinks);
            if (!at) break;
            auto id = mnt::mount_id(at.get());
            if (!id || *id == it->under_id || it->under_id == 0) break;
            if (!view.detach(at.get())) break;
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
    std::vector<AppliedEntry> as_applied;
    as_applied.reserve(applied.size());
    for (const auto& a : applied) as_applied.push_back({a.entry, a.skeleton});
    const EditPlan plan = plan_edit(as_applied, wanted);
    if (!plan.changes()) return {};
    const std::size_t keep = plan.keep;

    // Paths are looked up as the requester for a new entry; an entry made anew beneath a
    // change (its requester is not here) as the owner, its SRC in the host's view.
    Resolver owner{ns.owner, auth::primary_gid(ns.owner), 0};
    auto owner_id = identity_of(owner);
    if (!owner_id) return owner_id.error();
    // (An edit that only takes entries off needs nothing of the requester.)
    auto requester_id =
        plan.needs_requester() ? identity_of(resolver) : Result<Identity>(*owner_id);
    if (!requester_id) return requester_id.error();
    // What hides a file: an empty file of pnsd's own, in the host.
    // (Outside <runtime>/views: mounts there are unbindable.)
    std::string empty = dir_.substr(0, dir_.rfind('/')) + "/empty";
    UniqueFd empty_fd(::open(empty.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!empty_fd) return sys_error("create '" + empty + "'");
    auto hider = [&]() -> Result<Source> {
        auto tree = mnt::clone_tree(empty_fd.get(), "");
        if (!tree) return tree.error();
        return Source{std::move(*tree), {}, {}, {}, {}};
    };

    // Outside the view: the sources of binds that cannot come back as they were.
    std::vector<std::optional<Source>> prepared(wanted.size());
    for (const auto& put : plan.put_on) {
        if (put.reused) continue;
        const std::size_t j = put.index;
        const Entry& entry = wanted[j];
        if (entry.kind == EntryKind::kHide) {
            auto tree = hider();
            if (!tree) return tree.error();
            prepared[j] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        if (entry.create && entry.mode == UnionMode::kAfter)
            return Error::invalid("'" + format_entry(entry) +
                                  "': overlayfs always searches its writable layer first, so "
                                  "-c works with -b only");
        const Resolver& who = put.as_owner ? owner : resolver;
        const Identity& as = put.as_owner ? *owner_id : *requester_id;
        auto source = resolve_source(host_.get(), proc_fds_.get(), who, as, entry.source,
                                     entry.create ? work_dir_name(entry.source, ns.name) : "",
                                     entry.mode != UnionMode::kReplace);
        if (!source) return source.error();
        prepared[j] = std::move(*source);
    }
    // Old entries that must be made anew on the way back, should the edit fail.
    std::vector<std::optional<Source>> restore_sources(applied.size());
    for (const auto& back : plan.undo) {
        if (!back.remade) continue;
        const std::size_t i = back.index;
        const Entry& entry = applied[i].entry;
        if (entry.kind == EntryKind::kHide) {
            if (auto tree = hider()) restore_sources[i] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        auto source = resolve_source(host_.get(), proc_fds_.get(), owner, *owner_id, entry.source,
                                     entry.create ? work_dir_name(entry.source, ns.name) : "",
                                     entry.mode != UnionMode::kReplace);
        if (source) restore_sources[i] = std::move(*source);
    }

    // The journal is opened here, in the host: in the view, an entry of the owner's may cover
    // the runtime directory.
    UniqueFd journal(::open((view_dir(ns.name) + "/journal").c_str(),
                            O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!journal) return sys_error("open the journal of view " + quote(ns.name));

    // In the view: edit the mount stack. The state is written after leaving it.
    std::vector<Applied> now = applied;
    Status edited = [&]() -> Status {
        auto in_view = ScopedMountNamespace::enter(host_.get(), primary);
        if (!in_view) return in_view.error();
        InView view(primary, proc_.get(), proc_fds_.get());
        std::vector<std::uint64_t> skeletons;
        for (const auto& a : applied)
            if (a.skeleton) skeletons.push_back(a.mount_id);
        Editor editor(
            ns.name, view, Editor::Stage{dir_ + "/.stage", stage_dev_, stage_ino_},
            [&](const std::string& path, std::uint64_t under, std::uint64_t id) {
                return append_journal(journal.get(), JournalRecord{path, under, id});
            },
            std::move(skeletons));
        // The plan's undo: what is above the kept prefix now (what this edit put on, or
        // what it had not yet taken off) comes off, then the applied entries go back on.
        auto restore = [&]() -> Status {
            if (auto st = editor.take_off(now, keep); !st) return st;
            for (const auto& back : plan.undo) {
                auto put = editor.put_on<Applied>(applied[back.index].entry,
                                                  restore_sources[back.index], *owner_id);
                if (!put) return put.error();
                now.push_back(std::move(*put));
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
        // `now` is `applied` until the first take-off: the plan's indices are its top.
        for (const auto& off : plan.take_off) {
            if (auto st = editor.take_off_top(now, off.park); !st) return fail(st.error());
        }
        for (const auto& put : plan.put_on) {
            auto made = editor.put_on<Applied>(wanted[put.index], prepared[put.index],
                                               put.as_owner ? *owner_id : *requester_id);
            if (!made) return fail(std::move(made).error());
            now.push_back(std::move(*made));
        }
        return {};
    }();
    journal.reset();
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

Result<Views::GuardFacts> Views::guard_facts(const Namespace& ns, const Resolver& resolver) {
    GuardFacts facts;
    facts.user_controlled = ns.owner != 0;
    auto primary_fd = primary(ns.name);
    if (!primary_fd) return primary_fd.error();
    struct stat pinned {};
    if (::fstat(primary_fd->get(), &pinned) != 0) return sys_error("stat the view");
    facts.ns = static_cast<std::uint32_t>(pinned.st_ino);
    auto editor = identity_of(resolver);
    if (!editor) return editor.error();

    // The inode generation of the file `file` refers to, where its file system tells it: asked
    // of the very file, opened anew through its descriptor as the editor, for nothing (no
    // read, no blocking, no controlling terminal).
    auto generation_of = [&](int file, const struct stat& st) -> pns_denied_generation {
        if (!S_ISREG(st.st_mode)) return {0, 0};
        constexpr int kFlags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        std::string name = mnt::fd_name(file);
        UniqueFd fd(::openat(proc_fds_.get(), name.c_str(), kFlags | O_NOATIME));
        if (!fd && errno == EPERM) fd.reset(::openat(proc_fds_.get(), name.c_str(), kFlags));
        unsigned int generation = 0;
        if (!fd || ::ioctl(fd.get(), FS_IOC_GETVERSION, &generation) != 0) return {0, 0};
        return {static_cast<std::uint32_t>(generation), 1};
    };
    // The directory that holds `path`'s file and its name there, when `path` names the file
    // itself (it ends in neither a symlink nor a mount: then the kernel's dentry of the file
    // has that directory for parent). The directory is looked up as the editor, and the name
    // in it must lead to the file found before.
    auto by_name = [&](int root, const std::string& path,
                       const struct stat& file) -> std::optional<pns_denied_name> {
        auto slash = path.rfind('/');
        std::string name = path.substr(slash + 1);
        UniqueFd dir =
            open_at(root, relative(slash == 0 ? "/" : path.substr(0, slash)), O_PATH, kAsUser);
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
        InView view(primary_fd->get(), proc_.get(), proc_fds_.get());
        for (const Entry& e : ns.table.entries) {
            if (e.kind == EntryKind::kDeny) {
                // The file as the editor reaches it in the view, a final link followed.
                auto file = view.open_as(*editor, e.target, O_PATH);
                if (!file)
                    return Error::from_errno(file.error().code,
                                             "deny " + quote(e.target) + " (looked up as uid " +
                                                 std::to_string(editor->uid) + " in the view)");
                auto top = view.root();
                if (!top) return top.error();
                auto as_user = ScopedFsCredentials::become(*editor);
                if (!as_user) return as_user.error();
                struct stat target {};
                if (::fstat(file->get(), &target) != 0) return sys_error("stat " + quote(e.target));
                if (S_ISDIR(target.st_mode))
                    return Error::invalid("deny " + quote(e.target) +
                                          ": a directory (deny takes files; hide takes "
                                          "directories)");
                facts.denied.emplace_back(
                    pns_denied_file{facts.ns, kernel_dev(target.st_dev),
                                    static_cast<std::uint64_t>(target.st_ino)},
                    generation_of(file->get(), target));
                if (auto named = by_name(*top, e.target, target))
                    facts.denied_names.push_back(*named);
            } else if (e.kind == EntryKind::kBind && !facts.user_controlled) {
                // As root, but following no symlink: only what the entry itself shows (a DST
                // that can be reached only through a link counts as a user's).
                auto top = view.root();
                if (!top) return top.error();
                UniqueFd at = open_at(*top, relative(e.target), O_PATH, kNoLinks);
                struct stat target {};
                facts.user_controlled =
                    !at || ::fstat(at.get(), &target) != 0 || target.st_uid != 0;
            }
        }
        return {};
    });
    if (!st) return st.error();
    return facts;
}

Result<nlohmann::json> Views::explain(const Namespace& ns, const std::string& path) {
    // Read from the table alone: no lookup in the view (agent/views/explain.hpp).
    return to_json(explain_path(ns.table, path), ns.table);
}

}  // namespace pns::agent
