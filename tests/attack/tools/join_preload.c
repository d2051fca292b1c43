// libpns-attack-preload.so: what an attacker lists in the /etc/ld.so.preload of its own view.
// The dynamic loader of every program started in that view runs this constructor, as whoever
// the program runs as (ld.so reads /etc/ld.so.preload even for set-uid programs: only the
// LD_PRELOAD variable is restricted in secure mode).
//
// With PNS_ATTACK_DIR=DIR in the environment it leaves evidence there, with plain system calls:
//   DIR/ran/COMM.PID          always: the library ran (DIR/ran is world-writable)
//   DIR/root-only/COMM.PID    only as root: DIR/root-only is root's, mode 0700
//   DIR/group-only/COMM.PID   only with a privileged group: DIR/group-only is root:GROUP, 0770
// The file systems' own permission checks decide, with the kernel's ids (inside a satellite
// root shows as 65534, yet owns what uid 0 owns).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void leave(const char* dir, const char* sub, const char* comm) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s.%d", dir, sub, comm, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[128];
    int n = snprintf(line, sizeof line, "uid %d euid %d gid %d egid %d\n", (int)getuid(),
                     (int)geteuid(), (int)getgid(), (int)getegid());
    if (write(fd, line, (size_t)n) != n) {
    }
    close(fd);
}

__attribute__((constructor)) static void pns_attack_payload(void) {
    const char* dir = getenv("PNS_ATTACK_DIR");
    if (!dir) return;
    char comm[32] = "unknown";
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof comm - 1);
        if (n > 0) comm[n - (comm[n - 1] == '\n')] = 0;
        close(fd);
    }
    leave(dir, "ran", comm);
    leave(dir, "root-only", comm);
    leave(dir, "group-only", comm);
}
