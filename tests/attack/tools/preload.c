// What an attacker wants other users' programs to run: a library named in /etc/ld.so.preload
// of a view the attacker controls. It only says, on standard output, that it ran and as whom,
// before the program's first line of output.
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void announce(void) {
    dprintf(STDOUT_FILENO, "PRELOADED uid=%d\n", (int)getuid());
}
