// The lookup workload of the views bench: stat + open + close of the regular files below DIR,
// round after round, COUNT times in all. Prints the elapsed milliseconds.
//
//   pns-bench-lookup DIR COUNT
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char** files;
static size_t nfiles, cap;

static int collect(const char* path, const struct stat* st, int type, struct FTW* ftw) {
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode) || nfiles == 4096) return 0;
    if (nfiles == cap) {
        cap = cap ? 2 * cap : 256;
        files = realloc(files, cap * sizeof *files);
    }
    files[nfiles++] = strdup(path);
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pns-bench-lookup DIR COUNT\n");
        return 2;
    }
    long count = atol(argv[2]);
    if (nftw(argv[1], collect, 32, FTW_PHYS) != 0 || nfiles == 0) {
        fprintf(stderr, "pns-bench-lookup: no files below %s\n", argv[1]);
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < count; i++) {
        const char* f = files[i % nfiles];
        struct stat st;
        if (stat(f, &st) != 0) return 1;
        int fd = open(f, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 1;
        close(fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.3f\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return 0;
}
