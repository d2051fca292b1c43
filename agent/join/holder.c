// pns-holder: the process a joining process names to enter its view (agent/join/tracer.cpp,
// DESIGN.md decision 5). The target of a join calls pidfd_open(HOLDER) and
// setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS), which moves it into the namespaces this process
// is in. pnsd starts one per join (or per supervision): a child of pnsd takes the identity
// pnsd authorized the join for (its uid and gid, no supplementary groups), enters the
// destination's user namespace (a satellite) and mount namespace, and execs this program, so
// that nothing of pnsd's memory (other users' tables and requests) comes along.
//
//   fd 0  the release pipe: it exits once that reaches end of file (pnsd is done, or died)
//   fd 1  the ready pipe: "R" once it is set up, then closed
// It reads no argument and no environment and opens nothing. It is linked statically because
// it is exec'd inside the view, whose /etc/ld.so.preload and libraries may be a user's.
//
// What makes it joinable, and by whom (kernel/nsproxy.c: validate_nsset checks
// ptrace_may_access(holder, PTRACE_MODE_READ_REALCREDS); kernel/ptrace.c __ptrace_may_access):
//   - it runs as the target's uid and gid, which the credential check wants (or
//     CAP_SYS_PTRACE in the holder's user namespace);
//   - it is not dumpable, which leaves only processes with CAP_SYS_PTRACE in the user
//     namespace it was exec'd in (mm->user_ns). In a satellite that is the satellite, where
//     its owner, the target's uid in the initial user namespace, holds every capability
//     (kernel/capability.c: the owner of a namespace): that uid's processes in the initial
//     user namespace may join, that uid's processes in other user namespaces (another view,
//     a sandbox) may not even read it. For a primary (root's processes) it is the initial
//     user namespace: joiners need CAP_SYS_PTRACE there, as they need CAP_SYS_ADMIN and
//     CAP_SYS_CHROOT for setns(CLONE_NEWNS) itself (fs/namespace.c: mntns_install).
//   - it holds no capabilities (exec'd as a uid that is not root in a satellite, it has none;
//     as root it drops them all), and sets no_new_privs: a process of the same uid that
//     ptraces it gains nothing it could not do itself.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int drop_capabilities(void) {
    // The bounding set needs CAP_SETPCAP to shrink: root's holder has it, a satellite's has no
    // capability to keep anyway.
    for (int cap = 0; cap <= 63; ++cap)
        if (prctl(PR_CAPBSET_READ, cap) == 1) prctl(PR_CAPBSET_DROP, cap);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    return (data[0].permitted | data[1].permitted | data[0].effective | data[1].effective) ? -1 : 0;
}

int main(void) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0 || prctl(PR_GET_DUMPABLE) != 0) return 1;
    // Its name from exec is the descriptor's number (fs/exec.c names a program run by
    // descriptor after it); `ps` shows this one.
    prctl(PR_SET_NAME, "pns-holder");
    if (drop_capabilities() != 0) return 2;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 3;
    if (write(1, "R", 1) != 1) return 4;
    close(1);
    char byte;
    for (;;) {
        ssize_t n = read(0, &byte, 1);
        if (n == 0 || (n < 0 && errno != EINTR)) return 0;
    }
}
