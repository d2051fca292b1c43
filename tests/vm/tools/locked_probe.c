// Tries the ways out of a locked view that a descriptor or /proc offers, and prints what it got:
// the first line of the file it reached, or "errno N (NAME)", or "no descriptor".
//
//   locked_probe send-fd SOCKET DIR   serve SOCKET; hand the first client an O_PATH fd of DIR
//   locked_probe recv-fd SOCKET NAME  take an fd from SOCKET, then read NAME below it
//   locked_probe hold DIR NAME        open DIR (O_PATH) now, print "ready", and on a line from
//                                     stdin read NAME below that fd
//   locked_probe read PATH            read PATH
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char* what) {
    printf("errno %d (%s) %s\n", errno, strerrorname_np(errno), what);
    return 0;
}

// Prints the first line of NAME below DIRFD (AT_FDCWD: a path).
static int show(int dirfd, const char* name) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("open");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return fail("read");
    buf[n] = '\0';
    char* nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    printf("%s\n", buf);
    return 0;
}

static struct sockaddr_un address(const char* path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    return addr;
}

static int send_fd(const char* socket_path, const char* dir) {
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = address(socket_path);
    unlink(socket_path);
    if (fd < 0 || server < 0 || bind(server, (struct sockaddr*)&addr, sizeof addr) != 0 ||
        chmod(socket_path, 0777) != 0 || listen(server, 1) != 0)
        return fail("serve"), 2;
    printf("ready\n");
    fflush(stdout);
    int client = accept4(server, NULL, NULL, SOCK_CLOEXEC);
    if (client < 0) return fail("accept"), 2;
    char byte = 'f';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    if (sendmsg(client, &msg, 0) != 1) return fail("sendmsg"), 2;
    // Until the client has taken it (or not): then it closes.
    read(client, &byte, 1);
    printf("sent\n");
    return 0;
}

static int recv_fd(const char* socket_path, const char* name) {
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = address(socket_path);
    if (sock < 0 || connect(sock, (struct sockaddr*)&addr, sizeof addr) != 0)
        return fail("connect");
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return fail("recvmsg");
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) {
        printf("no descriptor%s\n", (msg.msg_flags & MSG_CTRUNC) ? " (MSG_CTRUNC)" : "");
        return 0;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
    return show(fd, name);
}

static int hold(const char* dir, const char* name) {
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail("open the directory"), 2;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 2;
    return show(fd, name);
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "send-fd") == 0) return send_fd(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "recv-fd") == 0) return recv_fd(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "hold") == 0) return hold(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "read") == 0) return show(AT_FDCWD, argv[2]);
    fprintf(stderr, "usage: locked_probe send-fd|recv-fd|hold|read ...\n");
    return 2;
}
