// The floods of tests/bench/flood.sh, as one user would run them against pnsd's socket, and
// the measure of root's `pnsctl status` latency taken meanwhile.
//
//   pns-bench-flood hold SOCKET N       N connections held open; then, without pause, one more
//                                       connection after another (each refused, or served if
//                                       there is room), until killed
//   pns-bench-flood trickle SOCKET N MS N connections, each sending a request one byte every MS
//                                       milliseconds, reconnecting when pnsd closes one
//   pns-bench-flood requests SOCKET N   N connections, each sending `status` requests and
//                                       reading the answers as fast as pnsd serves them
//   pns-bench-flood latency PNSCTL N    runs `PNSCTL status` N times; prints the median and the
//                                       99th percentile of its wall time, in milliseconds, of
//                                       the ones that succeeded, and how many failed
//
// The floods print "ready" once their connections are open.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char kStatus[] = "{\"version\": 1, \"op\": \"status\"}\n";

static int connect_to(const char* path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Whether pnsd has closed `fd` (what it sent meanwhile is read and dropped).
static int closed(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        return !(n < 0 && errno == EAGAIN);
    }
}

static int hold(const char* path, int n) {
    // Connections pnsd refuses are answered and closed by it; kept here all the same, as an
    // attacker would, so that a pnsd without bounds holds every one.
    for (int i = 0; i < n; ++i)
        if (connect_to(path) < 0) {
            perror("connect");
            return 1;
        }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int fd = connect_to(path);
        if (fd >= 0) {
            // Refused (answered and closed by pnsd): wait for that, then try again.
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, 100);
            close(fd);
        }
    }
}

static int trickle(const char* path, int n, int ms) {
    int* fds = calloc((size_t)n, sizeof *fds);
    size_t* sent = calloc((size_t)n, sizeof *sent);
    for (int i = 0; i < n; ++i) fds[i] = connect_to(path);
    printf("ready\n");
    fflush(stdout);
    const size_t len = sizeof kStatus - 2;  // never the newline
    for (;;) {
        for (int i = 0; i < n; ++i) {
            if (fds[i] < 0 || closed(fds[i])) {
                if (fds[i] >= 0) close(fds[i]);
                fds[i] = connect_to(path);
                sent[i] = 0;
                continue;
            }
            (void)!send(fds[i], kStatus + sent[i] % len, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            ++sent[i];
        }
        usleep((useconds_t)ms * 1000);
    }
}

static int requests(const char* path, int n) {
    struct pollfd* p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; ++i) {
        p[i].fd = connect_to(path);
        p[i].events = POLLIN;
        if (p[i].fd < 0 || send(p[i].fd, kStatus, sizeof kStatus - 1, MSG_NOSIGNAL) < 0) {
            perror("connect");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    char buf[65536];
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0) continue;
        for (int i = 0; i < n; ++i) {
            if (!p[i].revents) continue;
            ssize_t got = recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got <= 0) return 0;
            // One request in flight per connection: the next when its answer is in.
            if (memchr(buf, '\n', (size_t)got) &&
                send(p[i].fd, kStatus, sizeof kStatus - 1, MSG_NOSIGNAL) < 0)
                return 0;
        }
    }
}

static int compare(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static int latency(const char* pnsctl, int rounds) {
    double* took = calloc((size_t)rounds, sizeof *took);
    int served = 0, failed = 0;
    for (int i = 0; i < rounds; ++i) {
        double start = now_ms();
        pid_t child = fork();
        if (child == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execl(pnsctl, pnsctl, "status", (char*)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(child, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            took[served++] = now_ms() - start;
        else
            ++failed;
    }
    // A refused request has no latency: it is counted apart.
    if (served == 0) {
        printf("- - %d\n", failed);
        return 0;
    }
    qsort(took, (size_t)served, sizeof *took, compare);
    int p99 = (int)(0.99 * served);
    if (p99 >= served) p99 = served - 1;
    printf("%.3f %.3f %d\n", took[served / 2], took[p99], failed);
    return 0;
}

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 4 && strcmp(argv[1], "hold") == 0) return hold(argv[2], atoi(argv[3]));
    if (argc >= 5 && strcmp(argv[1], "trickle") == 0)
        return trickle(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "requests") == 0) return requests(argv[2], atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "latency") == 0) return latency(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: see tests/bench/flood.c\n");
    return 2;
}
