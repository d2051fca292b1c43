// pns-bench-forks: the cost of fork in a multithreaded process, for pnsd's supervision.
//   pns-bench-forks COUNT GOFILE [exec]
// Starts a thread (so pnsd supervises rather than joins it), waits until GOFILE exists, then
// times COUNT rounds of fork + _exit (or fork + exec of /bin/true) + waitpid and prints the
// median and 99th percentile of one round in microseconds: "median_us p99_us".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void* idle(void* arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static int compare(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return (x > y) - (x < y);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s COUNT GOFILE [exec]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[1]);
    int do_exec = argc > 3 && strcmp(argv[3], "exec") == 0;
    pthread_t thread;
    pthread_create(&thread, NULL, idle, NULL);
    while (access(argv[2], F_OK) != 0) usleep(1000);
    int64_t* rounds = calloc((size_t)count, sizeof *rounds);
    for (int i = 0; i < count; ++i) {
        int64_t start = now_ns();
        pid_t pid = fork();
        if (pid == 0) {
            if (do_exec) execl("/bin/true", "true", (char*)NULL);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        rounds[i] = now_ns() - start;
    }
    qsort(rounds, (size_t)count, sizeof *rounds, compare);
    printf("%.1f %.1f\n", rounds[count / 2] / 1000.0, rounds[count * 99 / 100] / 1000.0);
    return 0;
}
