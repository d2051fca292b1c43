// pns-static-reader: a static binary that works with raw system calls only (no libc
// wrappers, no dynamic loader), as proof that a view is the kernel's doing.
//
//   pns-static-reader cat PATH       print the file
//   pns-static-reader umount PATH    try umount2(PATH, MNT_DETACH); print "ok" or the errno
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static long put(const char* s) {
    return syscall(SYS_write, 1, s, strlen(s));
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    if (strcmp(argv[1], "umount") == 0) {
        if (syscall(SYS_umount2, argv[2], MNT_DETACH) == 0) {
            put("ok\n");
            return 0;
        }
        put(strerror(errno));
        put("\n");
        return 1;
    }
    long fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_RDONLY);
    if (fd < 0) return 1;
    char buf[4096];
    long n;
    while ((n = syscall(SYS_read, fd, buf, sizeof buf)) > 0) syscall(SYS_write, 1, buf, n);
    syscall(SYS_close, fd);
    return n < 0 ? 1 : 0;
}
