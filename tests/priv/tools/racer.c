// pns-test-racer: races processes into a policy cgroup right before they exec, and checks that
// the program they exec runs in the view.
//
//   pns-test-racer MODE ROUNDS CGROUP_DIR CHECKER PATH EXPECT
//     MODE moved:  the parent writes the child into CGROUP_DIR/cgroup.procs, then lets it exec
//          self:   the child writes itself into cgroup.procs and execs at once
//          clone3: clone3(CLONE_INTO_CGROUP) and exec at once
//   Each child execs `CHECKER check PATH EXPECT` (exit 0: PATH held EXPECT). The parent waits
//   for exits only (waitid WEXITED) and checks it never gets anything but an exit.
//   Prints "rounds N misses M stops S".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_pid(const char* procs, pid_t pid) {
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", pid);
    if (write(fd, buf, (size_t)n) != n) perror("write cgroup.procs");
    close(fd);
}

int main(int argc, char** argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODE ROUNDS CGROUP_DIR CHECKER PATH EXPECT\n", argv[0]);
        return 2;
    }
    const char* mode = argv[1];
    int rounds = atoi(argv[2]);
    char procs[4096];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[3]);
    char* child_argv[] = {argv[4], "check", argv[5], argv[6], NULL};
    int cgroup_fd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd < 0) {
        perror("open cgroup");
        return 2;
    }
    int misses = 0, stops = 0;
    for (int i = 0; i < rounds; ++i) {
        pid_t pid;
        if (strcmp(mode, "moved") == 0) {
            int go[2];
            if (pipe2(go, O_CLOEXEC) != 0) return 2;
            pid = fork();
            if (pid == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) != 1) _exit(3);
                execv(argv[4], child_argv);
                _exit(127);
            }
            close(go[0]);
            write_pid(procs, pid);
            if (write(go[1], "g", 1) != 1) return 2;
            close(go[1]);
        } else if (strcmp(mode, "self") == 0) {
            pid = fork();
            if (pid == 0) {
                write_pid(procs, 0);
                execv(argv[4], child_argv);
                _exit(127);
            }
        } else {
            struct clone_args args;
            memset(&args, 0, sizeof args);
            args.flags = CLONE_INTO_CGROUP;
            args.exit_signal = SIGCHLD;
            args.cgroup = (uint64_t)cgroup_fd;
            pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
            if (pid == 0) {
                execv(argv[4], child_argv);
                _exit(127);
            }
        }
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        siginfo_t info;
        memset(&info, 0, sizeof info);
        for (;;) {
            if (waitid(P_PID, (id_t)pid, &info, WEXITED) == 0) break;
            if (errno != EINTR) return 2;
        }
        if (info.si_code != CLD_EXITED) ++stops;  // anything but an exit (it cannot be a stop)
        if (info.si_code != CLD_EXITED || info.si_status != 0) ++misses;
    }
    printf("rounds %d misses %d stops %d\n", rounds, misses, stops);
    return 0;
}
