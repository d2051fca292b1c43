// Tries one thing the LSM guard refuses members of locked namespaces (or an exec that gains
// privilege) and prints what happened: "ok" or "errno N (NAME)". With --private first, it
// does so in a private mount namespace of its own (a control run: nothing it does reaches
// the host), after making the mount the operation needs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(int rc) {
    if (rc == 0)
        printf("ok\n");
    else
        printf("errno %d (%s)\n", errno, strerrorname_np(errno));
    return 0;
}

static int tmpfs_at(const char* dir) {
    return mount("none", dir, "tmpfs", 0, NULL);
}

int main(int argc, char** argv) {
    int private = argc > 1 && strcmp(argv[1], "--private") == 0;
    if (private) {
        ++argv;
        --argc;
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
            perror("private mount namespace");
            return 2;
        }
    }
    if (argc < 2) {
        fprintf(stderr,
                "usage: mount_ops [--private] mount|umount|move_mount|mount_setattr DIR | "
                "pivot_root | setns | unshare | clone | caps | dropcaps-exec PROG [ARGS]\n");
        return 2;
    }
    const char* op = argv[1];
    const char* dir = argc > 2 ? argv[2] : "/";
    if (strcmp(op, "mount") == 0) return report(tmpfs_at(dir));
    if (strcmp(op, "umount") == 0) {
        if (private && tmpfs_at(dir) != 0) return 2;
        return report(umount2(dir, MNT_DETACH));
    }
    if (strcmp(op, "move_mount") == 0) {
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0) return report(-1);
        return report(
            (int)syscall(SYS_move_mount, tree, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH));
    }
    if (strcmp(op, "mount_setattr") == 0) {
        if (private && tmpfs_at(dir) != 0) return 2;
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID};
        return report((int)syscall(SYS_mount_setattr, AT_FDCWD, dir, 0, &attr, sizeof attr));
    }
    if (strcmp(op, "pivot_root") == 0) {
        if (chdir("/") != 0) return 2;
        return report((int)syscall(SYS_pivot_root, ".", "."));
    }
    if (strcmp(op, "setns") == 0) {
        // Its own mount namespace: the guard refuses a locked member a namespace of a process
        // outside the view before any setns (ptrace-mode access to /proc/1/ns), and setns
        // itself is what this tries.
        int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return report(-1);
        return report(setns(fd, CLONE_NEWNS));
    }
    if (strcmp(op, "unshare") == 0) return report(unshare(CLONE_NEWNS));
    if (strcmp(op, "clone") == 0) {
        long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid < 0) return report(-1);
        waitpid((pid_t)pid, NULL, 0);
        return report(0);
    }
    if (strcmp(op, "caps") == 0) {
        FILE* f = fopen("/proc/self/status", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "CapEff:", 7) == 0) fputs(line, stdout);
        return 0;
    }
    if (strcmp(op, "dropcaps-exec") == 0 && argc > 2) {
        // Root without capabilities (uid 0 kept): exec gives them all back (as the kernel's
        // commoncap rules do for uid 0), a gain of privilege.
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        if (syscall(SYS_capset, &header, data) != 0) return report(-1);
        execv(argv[2], argv + 2);
        printf("exec: ");
        return report(-1);
    }
    fprintf(stderr, "mount_ops: unknown operation '%s'\n", op);
    return 2;
}
