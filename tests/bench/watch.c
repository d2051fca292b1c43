// The edit-to-visible probe of the views bench: waits until PATH exists (or, with -g, is
// gone), spinning on stat(2), then prints CLOCK_MONOTONIC in nanoseconds.
//
//   pns-bench-watch [-g] PATH
//   pns-bench-watch               (just print the time now)
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int main(int argc, char** argv) {
    if (argc > 1) {
        int gone = argc == 3 && strcmp(argv[1], "-g") == 0;
        const char* path = argv[argc - 1];
        struct stat st;
        while ((stat(path, &st) == 0) == gone) {
        }
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return 0;
}
