#include "agent/join/holder_process.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pns::agent {

namespace {

// How a holder's child reports a failure before its exec (one byte, then it exits).
enum HolderStep : char {
    kHolderIds = 'i',
    kHolderUserns = 'u',
    kHolderMntns = 'm',
    kHolderFds = 'f',
    kHolderExec = 'x',
    kHolderReady = 'R',  // what pns-holder writes once it is set up
};

const char* holder_step(char code) {
    switch (code) {
        case kHolderIds:
            return "take the process's ids";
        case kHolderUserns:
            return "enter the view's user namespace";
        case kHolderMntns:
            return "enter the view's mount namespace";
        case kHolderFds:
            return "set up its descriptors";
        case kHolderExec:
            return "exec pns-holder";
        default:
            return "start";
    }
}

}  // namespace

Result<std::shared_ptr<Holder>> Holder::start(int program, const Destination& dest,
                                              const proc::Identity& who) {
    int ready[2], release[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return sys_error("pipe");
    if (::pipe2(release, O_CLOEXEC) != 0) {
        ::close(ready[0]);
        ::close(ready[1]);
        return sys_error("pipe");
    }
    UniqueFd ready_r(ready[0]), ready_w(ready[1]), release_r(release[0]), release_w(release[1]);
    // Read when the tracer loop's poll says so, never waited on.
    if (::fcntl(ready_r.get(), F_SETFL, O_NONBLOCK) != 0) return sys_error("fcntl");
    // The identity the join was authorized for: for a satellite the process's own uid and
    // gid; for the primary root's (uid 0 with the process's group). Never pnsd's.
    const uid_t uid = who.uids[1];
    const gid_t gid = who.gids[1];
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork a holder");
    if (pid == 0) {
        // Raw system calls only: pnsd is multithreaded. Changing the euid makes this child
        // not dumpable at once (kernel/cred.c: commit_creds), so until its exec nothing but
        // root may read the copy of pnsd's memory it has.
        auto fail = [&](char step) {
            (void)!::write(ready_w.get(), &step, 1);
            ::_exit(1);
        };
        if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
            ::syscall(SYS_setresgid, gid, gid, gid) != 0 ||
            ::syscall(SYS_setresuid, uid, uid, uid) != 0)
            fail(kHolderIds);
        // After the ids: a change of credentials clears the parent-death signal.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        // The satellite's owner may enter it (kernel/user_namespace.c: userns_install wants
        // CAP_SYS_ADMIN there, which its owner has); in it, this child has every capability
        // there, which entering its mount namespace needs (fs/namespace.c: mntns_install).
        if (dest.user && ::setns(dest.user.get(), CLONE_NEWUSER) != 0) fail(kHolderUserns);
        if (::setns(dest.mnt.get(), CLONE_NEWNS) != 0) fail(kHolderMntns);
        // Exec'd in the satellite's user namespace, the program's mm belongs to it
        // (fs/exec.c: bprm_mm_init), which is what lets the target name it although it is not
        // dumpable; a uid that is not root there execs without capabilities.
        if (::dup2(release_r.get(), 0) != 0 || ::dup2(ready_w.get(), 1) != 1) fail(kHolderFds);
        // Every other descriptor goes at the exec (the program's own is needed until then).
        if (::syscall(SYS_close_range, 2, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(kHolderFds);
        char name[] = "pns-holder";
        char* argv[] = {name, nullptr};
        char* envp[] = {nullptr};
        // By descriptor: no path is looked up, least of all in the view.
        ::syscall(SYS_execveat, program, "", argv, envp, AT_EMPTY_PATH);
        fail(kHolderExec);
    }
    ready_w.reset();
    release_r.reset();
    // Its pid cannot be reused before this: this thread reaps it.
    auto pidfd = proc::open_pidfd(pid);
    if (!pidfd) {
        ::kill(pid, SIGKILL);
        return Error(std::move(pidfd).error());
    }
    return std::shared_ptr<Holder>(
        new Holder(pid, std::move(*pidfd), std::move(ready_r), std::move(release_w)));
}

Status Holder::settle(const std::string& ns) {
    char code = 0;
    ssize_t n;
    while ((n = ::read(ready_.get(), &code, 1)) < 0 && errno == EINTR) {
    }
    if (n < 0 && errno == EAGAIN) return {};  // nothing yet (poll said otherwise: spurious)
    ready_.reset();
    if (n == 1 && code == kHolderReady) return {};
    end();
    return Error{EPERM, "cannot start a holder in the view of " + ns + " (" +
                            (n == 1 ? std::string(holder_step(code))
                                    : std::string("pns-holder exited before it was ready")) +
                            ")"};
}

Error Holder::give_up(const std::string& ns) {
    ready_.reset();
    end();
    return Error{ETIMEDOUT, "pnsd's holder in the view of " + ns + " was not ready within " +
                                std::to_string(kHolderPatience.count()) +
                                " s (stopped by its user?); not joined"};
}

void Holder::end() {
    release_.reset();
    (void)proc::signal_pidfd(pidfd_.get(), SIGKILL);
}

// The holder program, beside pnsd (a build tree) or where `cmake --install` puts it relative
// to pnsd (PNS_HOLDER_RELATIVE, libexec/pns/ beside sbin/). Opened once, O_PATH: every holder is
// exec'd from this descriptor, so it is the file checked here. pnsd runs it as root for root's
// processes, so it must be root's and writable by nobody else.
Result<UniqueFd> open_holder_program() {
    std::string self(4096, '\0');
    ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
    if (n <= 0) return sys_error("find pnsd's own program");
    self.resize(static_cast<std::size_t>(n));
    std::string dir = self.substr(0, self.rfind('/') + 1);
    std::string tried;
    for (std::string path : {dir + "pns-holder", dir + PNS_HOLDER_RELATIVE}) {
        UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
        if (!fd) {
            tried += (tried.empty() ? "" : ", ") + ("'" + path + "'");
            continue;
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return sys_error("stat '" + path + "'");
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
            !(st.st_mode & S_IXUSR))
            return Error{EPERM, "the holder program '" + path +
                                    "' must be a regular executable file owned by root and "
                                    "writable by nobody else"};
        return fd;
    }
    return Error{ENOENT, "no holder program (pns-holder) at " + tried};
}

}  // namespace pns::agent
