// pns-test-victim: a process for pnsd to join while it is busy, which checks by itself that
// it never notices: sleeps are not shortened, blocking calls never fail with EINTR, data and
// signals arrive complete and in order, registers keep their values.
//
//   pns-test-victim MODE STOPFILE
//     nanosleep  5 ms sleeps, each measured
//     pipe       blocking reads of sequence numbers a child writes every millisecond
//     poll       poll with a 10 ms timeout on that pipe, each measured
//     signals    sigsuspend while a child queues numbered real-time signals to it
//     spin       a tight loop of system calls with a running checksum in registers
//     seccomp    installs an allow-everything seccomp filter, then sleeps
//     tinystack  waits in pause() on a 192-byte stack right above an inaccessible page, so
//                pnsd finds no room below it and maps a page for its scratch area instead
//   pns-test-victim spawner PATH EXPECT COUNT
//     starts a thread (so it is multithreaded), says "ready", waits for "go" on stdin, then
//     starts COUNT children (fork and posix_spawn in turn) that each read PATH and compare it
//     with EXPECT; prints "children N misses M" and execs cat PATH.
//   pns-test-victim check PATH EXPECT   exit 0 when PATH holds EXPECT
//   pns-test-victim forker COUNT         COUNT rounds of fork, _exit in the child, wait
//
// The busy modes print "ready" once running and, when STOPFILE appears, "ok N" (N rounds)
// or "FAIL reason", exiting 0 or 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

extern char** environ;

static const char* stop_file;
static char failure[256];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int stopped(void) {
    return access(stop_file, F_OK) == 0;
}

static void fail(const char* what) {
    if (!failure[0]) snprintf(failure, sizeof failure, "%s", what);
}

static void failf(const char* what, int err) {
    char buf[200];
    snprintf(buf, sizeof buf, "%s: %s", what, strerror(err));
    fail(buf);
}

static int finish(long rounds) {
    if (failure[0]) {
        printf("FAIL %s\n", failure);
        return 1;
    }
    printf("ok %ld\n", rounds);
    return 0;
}

static void ready(void) {
    printf("ready\n");
    fflush(stdout);
}

// A child that writes 8-byte sequence numbers to `fd` every millisecond until the stop file.
static pid_t start_writer(int fd) {
    pid_t pid = fork();
    if (pid == 0) {
        for (uint64_t seq = 1; !stopped(); ++seq) {
            if (write(fd, &seq, sizeof seq) != sizeof seq) _exit(1);
            struct timespec ms = {0, 1000000};
            while (nanosleep(&ms, &ms) != 0 && errno == EINTR) {
            }
        }
        _exit(0);
    }
    return pid;
}

static long mode_nanosleep(void) {
    ready();
    long rounds = 0;
    while (!stopped()) {
        struct timespec five = {0, 5000000};
        int64_t start = now_ns();
        if (nanosleep(&five, NULL) != 0) failf("nanosleep", errno);
        if (now_ns() - start < 5000000) fail("a 5 ms nanosleep ended early");
        ++rounds;
    }
    return rounds;
}

static long mode_pipe(int use_poll) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t writer = start_writer(fds[1]);
    close(fds[1]);
    ready();
    long rounds = 0;
    uint64_t expected = 1;
    for (;;) {
        if (use_poll) {
            struct pollfd p = {fds[0], POLLIN, 0};
            int64_t start = now_ns();
            int n = poll(&p, 1, 10);
            if (n < 0) {
                failf("poll", errno);
                break;
            }
            if (n == 0) {
                if (now_ns() - start < 10000000) fail("a 10 ms poll timed out early");
                ++rounds;
                continue;
            }
        }
        uint64_t seq;
        ssize_t n = read(fds[0], &seq, sizeof seq);
        if (n == 0) break;  // the writer saw the stop file
        if (n < 0) {
            failf("read", errno);
            break;
        }
        if (n != sizeof seq) fail("a short read");
        if (seq != expected) fail("a sequence number out of order");
        expected = seq + 1;
        ++rounds;
    }
    waitpid(writer, NULL, 0);
    return rounds;
}

static volatile sig_atomic_t last_seq, out_of_order, done;

static void on_signal(int sig, siginfo_t* info, void* context) {
    (void)context;
    if (sig == SIGRTMIN + 1) {
        done = 1;
        return;
    }
    if (info->si_value.sival_int != last_seq + 1) out_of_order = 1;
    last_seq = info->si_value.sival_int;
}

static long mode_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN, &sa, NULL);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN);
    sigaddset(&block, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&empty);
    pid_t parent = getpid();
    pid_t sender = fork();
    if (sender == 0) {
        int seq = 0;
        while (!stopped()) {
            union sigval v = {.sival_int = ++seq};
            while (sigqueue(parent, SIGRTMIN, v) != 0 && errno == EAGAIN) usleep(100);
            usleep(500);
        }
        union sigval v = {.sival_int = seq};
        sigqueue(parent, SIGRTMIN + 1, v);
        _exit(0);
    }
    ready();
    while (!done) {
        sigsuspend(&empty);  // returns -1 EINTR after each handler: that is its contract
    }
    waitpid(sender, NULL, 0);
    if (out_of_order) fail("a queued signal was lost or came out of order");
    if (last_seq == 0) fail("no signal arrived");
    return last_seq;
}

static long mode_spin(void) {
    ready();
    uint64_t ppid = (uint64_t)getppid();
    uint64_t acc = 0x9e3779b97f4a7c15ULL;
    long rounds = 0;
    for (;;) {
        for (int i = 0; i < 1000; ++i) {
            acc = acc * 6364136223846793005ULL + ((uint64_t)syscall(SYS_getppid) ^ (uint64_t)i);
        }
        ++rounds;
        if (stopped()) break;
    }
    uint64_t check = 0x9e3779b97f4a7c15ULL;
    for (long r = 0; r < rounds; ++r)
        for (int i = 0; i < 1000; ++i)
            check = check * 6364136223846793005ULL + (ppid ^ (uint64_t)i);
    if (check != acc) fail("the running checksum differs: a register changed under it");
    return rounds;
}

static long mode_seccomp(void) {
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {1, &allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        failf("seccomp", errno);
        return 0;
    }
    ready();
    long rounds = 0;
    while (!stopped()) {
        usleep(5000);
        ++rounds;
    }
    return rounds;
}

// No library call: nothing but the system call itself runs on the tiny stack.
static void pause_forever(void) {
    for (;;) {
        long nr = SYS_pause;
        __asm__ volatile("syscall" : "+a"(nr) : : "rcx", "r11", "memory");
    }
}

static long mode_tinystack(void) {
    long page = sysconf(_SC_PAGESIZE);
    char* area =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED || mprotect(area, (size_t)page, PROT_NONE) != 0) {
        failf("mmap", errno);
        return 0;
    }
    static ucontext_t main_context, small;
    getcontext(&small);
    small.uc_stack.ss_sp = area + page;
    small.uc_stack.ss_size = 192;
    small.uc_link = &main_context;
    makecontext(&small, pause_forever, 0);
    ready();
    swapcontext(&main_context, &small);
    return 0;
}

static int check(const char* path, const char* expect) {
    char buf[256] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 2;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return 2;
    while (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
    return strcmp(buf, expect) == 0 ? 0 : 1;
}

static void* idle_thread(void* arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static int mode_spawner(const char* self, const char* path, const char* expect, int count) {
    pthread_t thread;
    pthread_create(&thread, NULL, idle_thread, NULL);
    ready();
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    int misses = 0;
    for (int i = 0; i < count; ++i) {
        pid_t pid;
        if (i % 2 == 0) {
            pid = fork();
            if (pid == 0) _exit(check(path, expect));
        } else {
            char* argv[] = {(char*)self, "check", (char*)path, (char*)expect, NULL};
            if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0) pid = -1;
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            ++misses;
        usleep(2000);
    }
    printf("children %d misses %d\n", count, misses);
    fflush(stdout);
    execl("/bin/cat", "cat", path, (char*)NULL);
    return 127;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "check") == 0) return check(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "forker") == 0) {
        long count = atol(argv[2]);
        for (long i = 0; i < count; ++i) {
            pid_t pid = fork();
            if (pid == 0) _exit(0);
            if (pid < 0 || waitpid(pid, NULL, 0) != pid) return 1;
        }
        printf("forked %ld\n", count);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "spawner") == 0)
        return mode_spawner(argv[0], argv[2], argv[3], atoi(argv[4]));
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODE STOPFILE\n", argv[0]);
        return 2;
    }
    stop_file = argv[2];
    const char* mode = argv[1];
    long rounds;
    if (strcmp(mode, "nanosleep") == 0)
        rounds = mode_nanosleep();
    else if (strcmp(mode, "pipe") == 0)
        rounds = mode_pipe(0);
    else if (strcmp(mode, "poll") == 0)
        rounds = mode_pipe(1);
    else if (strcmp(mode, "signals") == 0)
        rounds = mode_signals();
    else if (strcmp(mode, "spin") == 0)
        rounds = mode_spin();
    else if (strcmp(mode, "seccomp") == 0)
        rounds = mode_seccomp();
    else if (strcmp(mode, "tinystack") == 0)
        rounds = mode_tinystack();
    else {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
        return 2;
    }
    return finish(rounds);
}
