// pns-test-enter: joins a view the way pnsd's joiner will, for tests that come before it.
//
//   pns-test-enter [--uid UID --gid GID] [--user USERNS_PIN] --mnt MNTNS_PIN -- CMD [ARGS...]
//
// Drops to UID/GID first (so a satellite is joined as its member would: the owner of the user
// namespace has CAP_SYS_ADMIN in it), then enters the user namespace if given, then the mount
// namespace, then execs CMD.
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int open_ns(const char* path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "pns-test-enter: open %s: %m\n", path);
        exit(125);
    }
    return fd;
}

int main(int argc, char** argv) {
    const char *user = NULL, *mnt = NULL;
    long uid = -1, gid = -1;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc) break;
        if (strcmp(argv[i], "--user") == 0)
            user = argv[++i];
        else if (strcmp(argv[i], "--mnt") == 0)
            mnt = argv[++i];
        else if (strcmp(argv[i], "--uid") == 0)
            uid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--gid") == 0)
            gid = strtol(argv[++i], NULL, 10);
        else
            break;
    }
    if (!mnt || i >= argc) {
        fprintf(stderr,
                "usage: pns-test-enter [--uid U --gid G] [--user PIN] --mnt PIN -- CMD...\n");
        return 125;
    }
    int user_fd = user ? open_ns(user) : -1;
    int mnt_fd = open_ns(mnt);
    if (uid >= 0) {
        if (gid < 0) gid = uid;
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            fprintf(stderr, "pns-test-enter: drop to %ld: %m\n", uid);
            return 125;
        }
    }
    if (user_fd >= 0 && setns(user_fd, CLONE_NEWUSER) != 0) {
        fprintf(stderr, "pns-test-enter: setns user: %m\n");
        return 125;
    }
    if (setns(mnt_fd, CLONE_NEWNS) != 0) {
        fprintf(stderr, "pns-test-enter: setns mnt: %m\n");
        return 125;
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "pns-test-enter: exec %s: %m\n", argv[i]);
    return 127;
}
