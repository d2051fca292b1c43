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

#include "agent/views/editor.hpp"
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

namespace {

// The inode of the mount namespace `fd` refers to, as the tracker's and guard's maps hold it.
Result<std::uint32_t> namespace_inode_of(int fd, const std::string& name) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return sys_error("stat the view of " + quote(name));
    return static_cast<std::uint32_t>(st.st_ino);
}

}  // namespace

Result<std::uint32_t> Views::primary_inode(const std::string& name) const {
    auto fd = primary(name);
    if (!fd) return fd.error();
    return namespace_inode_of(fd->get(), name);
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

namespace {

// Who an edit looks paths up as, and where (Views::edit).
struct Lookups {
    int host;                 // the host's mount namespace
    int proc_fds;             // pnsd's /proc/self/fd, opened in the host
    const std::string& view;  // the view's name: a -c union's work directory is named after it
    int empty;                // pnsd's empty file, in the host: what hides a file
    const Resolver& owner;    // for entries made anew: their requester is not here
    const Identity& owner_id;
    const Resolver& requester;  // for new entries
    const Identity& requester_id;
};

// A clone of pnsd's empty file, made in the host (open_tree clones only mounts of the
// namespace it runs in).
Result<Source> empty_file_tree(int empty) {
    auto tree = mnt::clone_tree(empty, "");
    if (!tree) return tree.error();
    return Source{std::move(*tree), {}, {}, {}, {}};
}

// SRC of a bind entry as `who` finds it, outside the view.
Result<Source> bind_source(const Lookups& l, const Entry& entry, const Resolver& who,
                           const Identity& as) {
    return resolve_source(l.host, l.proc_fds, who, as, entry.source,
                          entry.create ? work_dir_name(entry.source, l.view) : "",
                          entry.mode != UnionMode::kReplace);
}

// Outside the view, before anything comes off: what the plan's new entries are made of (the
// sources of binds and the empty files of hides that cannot come back as they were), by index
// of `wanted`.
Result<std::vector<std::optional<Source>>> prepare_put_on(const Lookups& l, const EditPlan& plan,
                                                          const std::vector<Entry>& wanted) {
    std::vector<std::optional<Source>> prepared(wanted.size());
    for (const auto& put : plan.put_on) {
        if (put.reused) continue;
        const Entry& entry = wanted[put.index];
        if (entry.kind == EntryKind::kHide) {
            auto tree = empty_file_tree(l.empty);
            if (!tree) return tree.error();
            prepared[put.index] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        if (entry.create && entry.mode == UnionMode::kAfter)
            return Error::invalid("'" + format_entry(entry) +
                                  "': overlayfs always searches its writable layer first, so "
                                  "-c works with -b only");
        auto source = put.as_owner ? bind_source(l, entry, l.owner, l.owner_id)
                                   : bind_source(l, entry, l.requester, l.requester_id);
        if (!source) return source.error();
        prepared[put.index] = std::move(*source);
    }
    return prepared;
}

// The applied entries that must be made anew on the way back, should the edit fail, by index
// of `applied`; looked up as the owner. One that cannot be found now is missing from the undo,
// which then fails with the reason.
std::vector<std::optional<Source>> prepare_undo(const Lookups& l, const EditPlan& plan,
                                                const std::vector<AppliedEntry>& applied) {
    std::vector<std::optional<Source>> sources(applied.size());
    for (const auto& back : plan.undo) {
        if (!back.remade) continue;
        const Entry& entry = applied[back.index].entry;
        if (entry.kind == EntryKind::kHide) {
            if (auto tree = empty_file_tree(l.empty)) sources[back.index] = std::move(*tree);
            continue;
        }
        if (entry.kind != EntryKind::kBind) continue;
        if (auto source = bind_source(l, entry, l.owner, l.owner_id))
            sources[back.index] = std::move(*source);
    }
    return sources;
}

}  // namespace

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
    Lookups lookups{host_.get(), proc_fds_.get(), ns.name,  empty_fd.get(),
                    owner,       *owner_id,       resolver, *requester_id};
    auto prepared = prepare_put_on(lookups, plan, wanted);
    if (!prepared) return prepared.error();
    auto restore_sources = prepare_undo(lookups, plan, as_applied);

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
            auto made = editor.put_on<Applied>(wanted[put.index], (*prepared)[put.index],
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
        // (state.json.tmp and id.tmp: the temporary names of builds before agent/files.hpp.)
        for (const char* file : {"/state.json", "/.state.tmp", "/state.json.tmp", "/journal",
                                 "/id", "/.id.tmp", "/id.tmp"})
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
    auto inode = namespace_inode_of(primary_fd->get(), ns.name);
    if (!inode) return inode.error();
    facts.ns = *inode;
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
