#include "agent/views/unions.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace pns::agent::unions {

Result<Credentials> writable_mounter(const Credentials& editor, const struct stat& src,
                                     const std::function<Credentials(uid_t)>& user) {
    if (!editor.is_root()) return editor;
    if (src.st_uid != 0) return user(src.st_uid);
    // Group or other write without the sticky bit (S_IWGRP also stands for an ACL's mask):
    // those users could rename root's copies out of SRC, a hard link in all but name.
    bool others_write = (src.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (others_write && !(src.st_mode & S_ISVTX))
        return Error{EPERM,
                     "SRC is root's but others may write to it: overlayfs would copy root's "
                     "files (set-uid programs among them) where those users can take them; give "
                     "-c a directory only root may write to, or one user's own (the union is "
                     "then made as that user)"};
    return editor;
}

std::string gid_map(gid_t gid, const std::vector<gid_t>& groups) {
    std::vector<gid_t> ids = groups;
    ids.push_back(gid);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    // Runs of consecutive ids, the one holding `gid` first: the mounter takes that gid inside.
    std::vector<std::pair<gid_t, std::size_t>> runs;
    for (std::size_t i = 0; i < ids.size();) {
        std::size_t j = i + 1;
        while (j < ids.size() && ids[j] == ids[j - 1] + 1) ++j;
        runs.emplace_back(ids[i], j - i);
        i = j;
    }
    std::stable_partition(runs.begin(), runs.end(), [&](const auto& run) {
        return gid >= run.first && gid - run.first < run.second;
    });
    constexpr std::size_t kMaxLines = 340;   // UID_GID_MAP_MAX_EXTENTS
    constexpr std::size_t kMaxBytes = 4000;  // map_write takes less than a page
    std::string map;
    std::size_t lines = 0;
    for (const auto& [first, count] : runs) {
        std::string line = std::to_string(first) + " " + std::to_string(first) + " " +
                           std::to_string(count) + "\n";
        if (lines == kMaxLines || map.size() + line.size() > kMaxBytes) break;
        map += line;
        ++lines;
    }
    return map;
}

namespace {

// What the child was doing, for the message of a failure.
enum class Step : int {
    kDone = 0,
    kGroups,
    kUserNamespace,
    kWaitMaps,
    kIds,
    kSource,
    kDst,
    kMountNamespace,
    kFindSource,
    kProc,
    kFsopen,
    kUserXattr,
    kUpper,
    kWork,
    kLowerSource,
    kLowerDst,
    kCreate,
    kAskMaps,  // not a failure: the user namespace is there, waiting for its maps
};

const char* describe(Step step) {
    switch (step) {
        case Step::kDone:
            return "done";
        case Step::kGroups:
            return "take the mounter's groups";
        case Step::kUserNamespace:
            return "make the user namespace";
        case Step::kWaitMaps:
            return "wait for the user namespace's maps";
        case Step::kIds:
            return "take the mounter's uid and gid";
        case Step::kSource:
            return "enter SRC (or the directory that holds it)";
        case Step::kDst:
            return "enter DST";
        case Step::kMountNamespace:
            return "make the mount namespace";
        case Step::kFindSource:
            return "find SRC and its work directory again";
        case Step::kProc:
            return "open /proc/thread-self/fd";
        case Step::kFsopen:
            return "fsopen overlay";
        case Step::kUserXattr:
            return "overlayfs userxattr";
        case Step::kUpper:
            return "overlayfs upperdir (SRC)";
        case Step::kWork:
            return "overlayfs workdir";
        case Step::kLowerSource:
            return "overlayfs lowerdir+ (SRC)";
        case Step::kLowerDst:
            return "overlayfs lowerdir+ (DST)";
        case Step::kCreate:
            return "create the union";
        case Step::kAskMaps:
            return "ask for the maps";
    }
    return "?";
}

// The child's word to pnsd: a step and its errno (kDone with the file-system context attached,
// kAskMaps, or a failure), and what overlayfs logged in the context, if anything.
struct Report {
    int step = 0;
    int error = 0;
    char log[256] = {};
};

// Sends `report`, with `fd` attached if it is not -1. Raw calls only (the child's side).
bool send_report(int sock, const Report& report, int fd) {
    iovec iov{const_cast<Report*>(&report), sizeof report};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    }
    return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof report);
}

// The decimal digits of `n` into `buf` (at least 12 bytes), without the C library's locale.
const char* decimal(int n, char* buf) {
    char* end = buf + 11;
    *end = '\0';
    char* p = end;
    do {
        *--p = static_cast<char>('0' + n % 10);
        n /= 10;
    } while (n > 0);
    return p;
}

bool same_inode(int a, int b) {
    struct stat sa {
    }, sb{};
    return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

// What the child is given, all of it prepared before the fork (the child of a multithreaded
// process may not allocate).
struct ChildPlan {
    int sock;
    uid_t uid;
    gid_t gid;
    const gid_t* groups;
    std::size_t group_count;
    int proc;
    Layers const* layers;
};

// The child's steps below: only raw system calls (the parent is multithreaded), and each
// failure ends the child with a report of the step that failed.
[[noreturn]] void fail_in_child(int sock, Step step, int fs = -1) {
    Report report;
    report.step = static_cast<int>(step);
    report.error = errno ? errno : EIO;
    // overlayfs tells some of its refusals in the context's log (fs_context.c: fscontext_read).
    if (fs >= 0) {
        ssize_t n = ::read(fs, report.log, sizeof report.log - 1);
        if (n < 0) report.log[0] = '\0';
    }
    send_report(sock, report, -1);
    ::_exit(1);
}

// The child keeps none of pnsd's other descriptors (clients' sockets, the other views).
void keep_only_descriptors_of(const ChildPlan& plan) {
    const Layers& l = *plan.layers;
    int keep[] = {plan.sock, plan.proc, l.tree, l.dst, l.upper, l.work};
    std::sort(std::begin(keep), std::end(keep));
    unsigned next = 0;
    for (int fd : keep) {
        if (fd < 0) continue;
        if (static_cast<unsigned>(fd) > next) ::syscall(SYS_close_range, next, fd - 1, 0);
        next = static_cast<unsigned>(fd) + 1;
    }
    ::syscall(SYS_close_range, next, ~0u, 0);
}

// Becomes the mounter: its groups, a user namespace of its own (mapped by the parent), and
// its uid and gid there.
void become_mounter(const ChildPlan& plan) {
    // The groups first, while this process is root in the initial user namespace: in the new
    // one setgroups is denied, and the groups kept are those the mounter is checked with.
    if (::syscall(SYS_setgroups, plan.group_count, plan.groups) != 0)
        fail_in_child(plan.sock, Step::kGroups);
    // Made by root, so owned by root: the mounter's uid gets no capability over it
    // (security/commoncap.c: cap_capable grants the owner of a namespace all of them).
    if (::unshare(CLONE_NEWUSER) != 0) fail_in_child(plan.sock, Step::kUserNamespace);
    Report ask;
    ask.step = static_cast<int>(Step::kAskMaps);
    char mapped = 0;
    if (!send_report(plan.sock, ask, -1) || ::read(plan.sock, &mapped, 1) != 1 || mapped != 1)
        fail_in_child(plan.sock, Step::kWaitMaps);
    // Root is not mapped there, so this keeps the capabilities this process has in the new
    // namespace (commoncap.c: cap_emulate_setxuid clears them only when leaving its root uid),
    // and they reach only inodes whose owner and group it maps (capable_wrt_inode_uidgid).
    // Only the effective uid (and with it the file-system uid, which is what overlayfs checks
    // and creates files with) is the mounter's: with the real and saved uids left root's, the
    // mounter cannot signal this process (kernel/signal.c: kill_ok_by_cred), so it cannot stop
    // it and hold up pnsd's mount thread.
    if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0 ||
        ::syscall(SYS_setresuid, -1, plan.uid, -1) != 0)
        fail_in_child(plan.sock, Step::kIds);
    ::prctl(PR_SET_DUMPABLE, 0);
}

// The union's layers in the child's own copy of the view.
struct LayerFds {
    int source = -1, target = -1;
    int upper = -1, work = -1;  // writable unions only
};

LayerFds copy_view_and_find_layers(const ChildPlan& plan) {
    const Layers& l = *plan.layers;
    // overlayfs takes as layers only mounts of its creator's mount namespace that its creator
    // has CAP_SYS_ADMIN over (fs/namespace.c: clone_private_mount), so the union is made in a
    // copy of the view owned by the new user namespace. unshare(CLONE_NEWNS) moves the root
    // and working directory to their copies (copy_mnt_ns): the root at the copy of SRC's tree,
    // the working directory at DST, so neither is looked up by path in the copy.
    if (::fchdir(l.tree) != 0 || ::chroot(".") != 0) fail_in_child(plan.sock, Step::kSource);
    if (::fchdir(l.dst) != 0) fail_in_child(plan.sock, Step::kDst);
    if (::unshare(CLONE_NEWNS) != 0) fail_in_child(plan.sock, Step::kMountNamespace);
    LayerFds fds;
    fds.source = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    fds.target = ::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fds.source < 0 || fds.target < 0) fail_in_child(plan.sock, Step::kMountNamespace);
    if (!l.writable) return fds;
    // SRC and the work directory by the names they had, taken only if they are still the
    // directories the editor found: one name each, no link, no other mount.
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    fds.upper = static_cast<int>(
        ::syscall(SYS_openat2, fds.source, l.upper_name.c_str(), &how, sizeof how));
    fds.work = static_cast<int>(
        ::syscall(SYS_openat2, fds.source, l.work_name.c_str(), &how, sizeof how));
    if (fds.upper < 0 || fds.work < 0 || !same_inode(fds.upper, l.upper) ||
        !same_inode(fds.work, l.work)) {
        errno = EAGAIN;
        fail_in_child(plan.sock, Step::kFindSource);
    }
    return fds;
}

// Creates the union from its layers; its file-system context, ready to mount.
int create_union(const ChildPlan& plan, const LayerFds& fds) {
    const Layers& l = *plan.layers;
    // overlayfs looks its layers up by path, as this process: each is given as the magic link
    // of its descriptor (fs/proc/base.c: proc_fd_link leads to exactly that file), named from
    // this process's own /proc/thread-self/fd (the view's /proc may be anything).
    int proc_fds = ::openat(plan.proc, "thread-self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc_fds < 0 || ::fchdir(proc_fds) != 0) fail_in_child(plan.sock, Step::kProc);
    int fs = ::fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0) fail_in_child(plan.sock, Step::kFsopen);
    char name[12];
    auto set = [&](unsigned cmd, const char* key, const char* value, Step step) {
        if (::fsconfig(fs, cmd, key, value, 0) != 0) fail_in_child(plan.sock, step, fs);
    };
    auto lower = [&](int fd, Step step) {
        set(FSCONFIG_SET_STRING, "lowerdir+", decimal(fd, name), step);
    };
    if (l.writable) {
        // overlayfs's own xattrs (opaque directories, whiteouts) as user.overlay.*, which the
        // mounter may set on its files; trusted.overlay.* needs CAP_SYS_ADMIN in the initial
        // user namespace (Documentation/filesystems/overlayfs.rst, "userxattr").
        set(FSCONFIG_SET_FLAG, "userxattr", nullptr, Step::kUserXattr);
        set(FSCONFIG_SET_STRING, "upperdir", decimal(fds.upper, name), Step::kUpper);
        set(FSCONFIG_SET_STRING, "workdir", decimal(fds.work, name), Step::kWork);
        lower(fds.target, Step::kLowerDst);
    } else if (l.source_first) {
        lower(fds.source, Step::kLowerSource);
        lower(fds.target, Step::kLowerDst);
    } else {
        lower(fds.target, Step::kLowerDst);
        lower(fds.source, Step::kLowerSource);
    }
    // ovl_fill_super runs here, as this process: its credentials become the union's
    // (ofs->creator_cred), and its layers are cloned from this mount namespace.
    set(FSCONFIG_CMD_CREATE, nullptr, nullptr, Step::kCreate);
    return fs;
}

// The child: becomes the mounter in a user namespace of its own and creates the union there.
[[noreturn]] void make_in_child(const ChildPlan& plan) {
    // Nobody may look into this process (its descriptors, its namespaces) once it has the
    // mounter's uid: whose it is matters less than that it holds pnsd's view.
    ::prctl(PR_SET_DUMPABLE, 0);
    keep_only_descriptors_of(plan);
    become_mounter(plan);
    LayerFds fds = copy_view_and_find_layers(plan);
    int fs = create_union(plan, fds);
    Report done;
    if (!send_report(plan.sock, done, fs)) ::_exit(1);
    ::_exit(0);
}

// The child of create_as_user, killed and reaped however the parent leaves.
class Child {
  public:
    explicit Child(pid_t pid) : pid_(pid) {}
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    pid_t pid() const { return pid_; }

  private:
    pid_t pid_;
};

// The child's next report, waiting until `deadline` at most; with the descriptor it attached.
Result<Report> receive(int sock, std::chrono::steady_clock::time_point deadline, UniqueFd& fd) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return Error{ETIMEDOUT, "the process making the union did not answer"};
        pollfd p{sock, POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("poll");
        if (n == 0) continue;
        Report report;
        iovec iov{&report, sizeof report};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return sys_error("receive from the process making the union");
        for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                int received;
                std::memcpy(&received, CMSG_DATA(h), sizeof received);
                fd.reset(received);
            }
        }
        if (got != static_cast<ssize_t>(sizeof report))
            return Error{EIO, "the process making the union ended"};
        report.log[sizeof report.log - 1] = '\0';
        return report;
    }
}

Status write_map(int proc, pid_t pid, const char* file, const std::string& text) {
    std::string path = std::to_string(pid) + "/" + file;
    UniqueFd fd(::openat(proc, path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return sys_error(std::string("open /proc/PID/") + file);
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        return sys_error(std::string("write /proc/PID/") + file);
    return {};
}

}  // namespace

Result<UniqueFd> create_as_user(const Credentials& mounter, const Layers& layers, int proc,
                                int timeout_ms) {
    if (mounter.is_root()) return Error::invalid("a union made as root needs no user namespace");
    std::string uid_map = std::to_string(mounter.uid) + " " + std::to_string(mounter.uid) + " 1\n";
    std::string gids = gid_map(mounter.gid, mounter.groups);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
        return sys_error("socketpair");
    UniqueFd ours(pair[0]), theirs(pair[1]);
    ChildPlan plan{theirs.get(),          mounter.uid, mounter.gid, mounter.groups.data(),
                   mounter.groups.size(), proc,        &layers};
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork");
    if (pid == 0) {
        ::close(ours.get());
        make_in_child(plan);
    }
    Child child(pid);
    theirs.reset();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto failed = [&](const Report& report) {
        std::string message = std::string(describe(static_cast<Step>(report.step))) + ": " +
                              std::strerror(report.error);
        if (report.log[0] != '\0') {
            message += " (" + std::string(report.log) + ")";
        } else if (static_cast<Step>(report.step) == Step::kCreate && report.error == EINVAL) {
            // The likeliest reason, which overlayfs does not log.
            message +=
                " (is something mounted below DST or SRC? Made as a user, a union takes no layer "
                "that would show what a mount covers: fs/namespace.c clone_private_mount)";
        }
        return Error{report.error, message};
    };

    UniqueFd fs;
    auto asked = receive(ours.get(), deadline, fs);
    if (!asked) return asked.error();
    if (asked->step != static_cast<int>(Step::kAskMaps)) return failed(*asked);
    // Only the mounter's uid and groups: root (and every other user) is unmapped inside, so
    // their files are never copied up (fs/overlayfs/copy_up.c: ovl_copy_up_one, EOVERFLOW).
    // setgroups is denied so that the mounter's groups stay the ones it was given.
    if (auto st = write_map(proc, pid, "uid_map", uid_map); !st) return st.error();
    if (auto st = write_map(proc, pid, "setgroups", "deny"); !st) return st.error();
    if (auto st = write_map(proc, pid, "gid_map", gids); !st) return st.error();
    char go = 1;
    if (::write(ours.get(), &go, 1) != 1) return sys_error("tell the union's process to go on");
    auto done = receive(ours.get(), deadline, fs);
    if (!done) return done.error();
    if (done->step != static_cast<int>(Step::kDone) || !fs) return failed(*done);
    return fs;
}

}  // namespace pns::agent::unions
