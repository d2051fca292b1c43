// pns-attack-join-racer: races pnsd's join of a process with that process's own execve, as
// `pnsctl run` would if the program it execs were chosen to win the race (issue 11, case 1).
//
//   pns-attack-join-racer SOCKET NS SECONDS WHEN PROGRAM [ARGS...]
//
// For SECONDS, round after round, a child connects to pnsd at SOCKET, asks it to join the
// child itself to namespace NS (proc.join without a pid, what pnsctl run sends) and execs
// PROGRAM ARGS, with stdin, stdout and stderr on /dev/null. WHEN says when it execs:
//   now         at once: the exec lands before pnsd stops the process
//   spin        after a random busy wait of up to 300 microseconds: either side of the stop
//   answer      once pnsd answered: the exec lands after the join
//   supervised  the child starts a thread first, so pnsd supervises it instead of joining it
//               at once; once pnsd answered, it execs, and joins (or not) at that exec
// The child hands its connection to the racer before it execs, and the racer reads pnsd's
// answer (a program may exit, or be killed after 5 s, before that answer comes).
//
// PNS_TEST_SLOWDOWN=F (the suite's, on an emulated CPU) stretches those 5 s and the 20 s it
// waits for an answer F times.
//
// PNS_RACER_ENV_BYTES=N in the racer's environment gives PROGRAM that many more bytes of
// environment, in variables of 100,000 bytes: the kernel copies them during the exec, so the
// window is wider. The rest of the racer's environment is passed on as it is.
//
// Prints "rounds N joined J supervised S refused R changed C unanswered U killed K stuck T"
// (C: the refusals because the process was not what pnsd had checked any more when it stopped
// it; K: programs that ended by a signal; T: programs still there after 5 s, killed by the
// racer), then each distinct refusal (at most 8, numbers as N) on a line "refused: MESSAGE".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_fd(int via, int fd) {
    char byte = 'f';
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    return sendmsg(via, &msg, 0) == 1 ? 0 : -1;
}

static int receive_fd(int via) {
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    if (recvmsg(via, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
    return fd;
}

// One line from `fd` into `line` (without its newline), waiting at most `ms`; 0 on success.
static int read_line(int fd, char* line, size_t size, int ms) {
    size_t used = 0;
    int64_t deadline = now_ms() + ms;
    while (used + 1 < size) {
        int left = (int)(deadline - now_ms());
        if (left <= 0) return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0) continue;
        ssize_t n = read(fd, line + used, 1);
        if (n <= 0) return -1;
        if (line[used] == '\n') break;
        ++used;
    }
    line[used] = 0;
    return 0;
}

static void* idle(void* unused) {
    (void)unused;
    for (;;) pause();
    return NULL;
}

static char** environment(void) {
    const char* bytes = getenv("PNS_RACER_ENV_BYTES");
    long extra = bytes ? atol(bytes) : 0;
    size_t own = 0;
    while (environ[own]) ++own;
    size_t chunks = (size_t)((extra + 99999) / 100000);
    char** env = calloc(own + chunks + 1, sizeof *env);
    if (!env) return environ;
    for (size_t i = 0; i < own; ++i) env[i] = environ[i];
    for (size_t i = 0; i < chunks; ++i) {
        char* var = malloc(100000 + 16);
        if (!var) break;
        int n = snprintf(var, 16, "PAD%zu=", i);
        memset(var + n, 'x', 100000 - (size_t)n);
        var[100000] = 0;
        env[own + i] = var;
    }
    return env;
}

static void child(const char* socket_path, const char* ns, const char* when, char** argv,
                  char** env, int to_racer) {
    if (strcmp(when, "supervised") == 0) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, idle, NULL) != 0) _exit(120);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path);
    if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) _exit(121);
    char request[512];
    int n = snprintf(request, sizeof request,
                     "{\"version\": 1, \"op\": \"proc.join\", \"args\": {\"name\": \"%s\"}}\n", ns);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) _exit(122);
    if (strcmp(when, "answer") == 0 || strcmp(when, "supervised") == 0) {
        if (write(fd, request, (size_t)n) != n) _exit(123);
        char line[4096];
        if (read_line(fd, line, sizeof line, 20000) != 0) _exit(124);
        size_t len = strlen(line);
        line[len] = '\n';
        if (write(to_racer, line, len + 1) != (ssize_t)(len + 1)) _exit(125);
    } else {
        if (send_fd(to_racer, fd) != 0) _exit(123);
        long spin = strcmp(when, "spin") == 0 ? random() % 30000 : 0;
        if (write(fd, request, (size_t)n) != n) _exit(124);
        for (volatile long i = 0; i < spin; ++i) {
        }
    }
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    execve(argv[0], argv, env);
    _exit(127);
}

int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s SOCKET NS SECONDS WHEN PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    const char* socket_path = argv[1];
    const char* ns = argv[2];
    int64_t end = now_ms() + (int64_t)(atof(argv[3]) * 1000);
    const char* when = argv[4];
    if (strcmp(when, "now") != 0 && strcmp(when, "spin") != 0 && strcmp(when, "answer") != 0 &&
        strcmp(when, "supervised") != 0) {
        fprintf(stderr, "unknown WHEN '%s'\n", when);
        return 2;
    }
    char** env = environment();
    const char* slow = getenv("PNS_TEST_SLOWDOWN");
    double slowdown = slow && atof(slow) > 1 ? atof(slow) : 1;
    int answer_ms = (int)(20000 * slowdown);
    int64_t exit_ms = (int64_t)(5000 * slowdown);
    srandom((unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);
    long rounds = 0, joined = 0, supervised = 0, refused = 0, changed = 0, unanswered = 0;
    long killed = 0, stuck = 0;
    char refusals[8][512];
    int distinct = 0;
    while (now_ms() < end) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 2;
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            close(pair[0]);
            child(socket_path, ns, when, argv + 5, env, pair[1]);
        }
        close(pair[1]);
        ++rounds;
        char line[4096];
        int got;
        if (strcmp(when, "answer") == 0 || strcmp(when, "supervised") == 0) {
            got = read_line(pair[0], line, sizeof line, answer_ms);
        } else {
            int conn = receive_fd(pair[0]);
            got = conn < 0 ? -1 : read_line(conn, line, sizeof line, answer_ms);
            if (conn >= 0) close(conn);
        }
        close(pair[0]);
        if (got != 0) {
            ++unanswered;
        } else if (strstr(line, "\"ok\":true") || strstr(line, "\"ok\": true")) {
            if (strstr(line, "\"supervised\""))
                ++supervised;
            else
                ++joined;
        } else {
            ++refused;
            if (strstr(line, "changed after pnsd checked it")) ++changed;
            // Told apart without their numbers (pids).
            const char* from = strstr(line, "\"message\":");
            from = from ? from : line;
            char message[512];
            size_t used = 0;
            for (const char* p = from; *p && used + 1 < sizeof message; ++p)
                if (!(*p >= '0' && *p <= '9') || used == 0 || message[used - 1] != 'N')
                    message[used++] = *p >= '0' && *p <= '9' ? 'N' : *p;
            message[used] = 0;
            int seen = 0;
            for (int i = 0; i < distinct; ++i) seen |= strcmp(refusals[i], message) == 0;
            if (!seen && distinct < 8) snprintf(refusals[distinct++], 512, "%s", message);
        }
        // The program exits by itself; one that waits for input it never gets is killed.
        int64_t deadline = now_ms() + exit_ms;
        int status = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                ++stuck;
                status = 0;
                break;
            }
            usleep(500);
        }
        if (WIFSIGNALED(status)) ++killed;
    }
    printf(
        "rounds %ld joined %ld supervised %ld refused %ld changed %ld unanswered %ld killed %ld "
        "stuck %ld\n",
        rounds, joined, supervised, refused, changed, unanswered, killed, stuck);
    for (int i = 0; i < distinct; ++i) printf("refused: %s\n", refusals[i]);
    return 0;
}
