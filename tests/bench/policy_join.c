// pns-bench-policy-join: how long a process waits, after it writes itself into a policy
// cgroup, until it is in the view (pnsd joined it after the tracker's event).
//   pns-bench-policy-join ROUNDS CGROUP_DIR VIEW_MNT_INODE
// Prints the median and 99th percentile in microseconds: "median_us p99_us".
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int compare(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return (x > y) - (x < y);
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ROUNDS CGROUP_DIR VIEW_MNT_INODE\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]);
    char procs[4096];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[2]);
    unsigned long long view = strtoull(argv[3], NULL, 10);
    int64_t* samples = calloc((size_t)rounds, sizeof *samples);
    for (int i = 0; i < rounds; ++i) {
        int out[2];
        if (pipe(out) != 0) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(procs, O_WRONLY | O_CLOEXEC);
            int64_t start = now_ns();
            if (fd < 0 || write(fd, "0\n", 2) != 2) _exit(1);
            struct stat st;
            int64_t deadline = start + 5000000000LL;
            for (;;) {
                if (stat("/proc/self/ns/mnt", &st) == 0 && st.st_ino == view) break;
                if (now_ns() > deadline) _exit(3);
                sched_yield();
            }
            int64_t took = now_ns() - start;
            if (write(out[1], &took, sizeof took) != sizeof took) _exit(4);
            _exit(0);
        }
        close(out[1]);
        int64_t took = -1;
        if (read(out[0], &took, sizeof took) != sizeof took) took = -1;
        close(out[0]);
        int status;
        waitpid(pid, &status, 0);
        if (took < 0) {
            fprintf(stderr, "round %d: never joined\n", i);
            return 1;
        }
        samples[i] = took;
    }
    qsort(samples, (size_t)rounds, sizeof *samples, compare);
    printf("%.1f %.1f\n", samples[rounds / 2] / 1000.0, samples[rounds * 99 / 100] / 1000.0);
    return 0;
}
