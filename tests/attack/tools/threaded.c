// pns-attack-threaded: a multithreaded process (so pnsd supervises it rather than joining it
// at once) that starts children on demand. Prints "ready"; then for each line "fork" on stdin
// starts a child that waits in pause() and prints its pid; exits at end of input.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void* idle(void* unused) {
    (void)unused;
    for (;;) pause();
    return NULL;
}

int main(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, idle, NULL) != 0) return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strcmp(line, "fork\n") != 0) continue;
        pid_t child = fork();
        if (child == 0) {
            for (;;) pause();
        }
        printf("%d\n", (int)child);
    }
    return 0;
}
