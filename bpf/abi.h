/* What the BPF tracker (bpf/tracker.bpf.c), the LSM guard (bpf/guard.bpf.c) and pnsd share:
 * map keys and values, ring-buffer events. C, so that both the BPF programs (with vmlinux.h)
 * and C++ include it. */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

/* A namespace is named in the maps by the inode number of its primary view's mount
 * namespace: stable while the view is pinned, so across pnsd restarts too. */

/* The members map holds at least this many processes; pnsd makes it as large as the number of
 * processes the kernel allows at load time (pid_max, threads-max), so forks, which pnsd cannot
 * refuse, cannot fill it. Entries are allocated as they come (BPF_F_NO_PREALLOC). */
#define PNS_MAX_MEMBERS 131072
#define PNS_MAX_POLICIES 4096
#define PNS_MAX_VIEWS 65536
#define PNS_MAX_CGROUP_DEPTH 16
#define PNS_EVENTS_BYTES (1 << 20)
/* Events pnsd can do without (exits, the guard's refusals) are sent only while the ring
 * buffer is less than this full: the rest is kept for the ones a process waits on (held,
 * entered) or a lock depends on (escape), so a user making many exits or refusals cannot
 * crowd out another's. */
#define PNS_EVENTS_OPTIONAL_BYTES (PNS_EVENTS_BYTES / 2)

enum pns_member_state {
    PNS_STATE_MEMBER = 1,  /* in its namespace's view */
    PNS_STATE_PENDING = 2, /* entered a policy cgroup; pnsd is joining it */
    PNS_STATE_HELD = 3,    /* exec'd in a policy cgroup outside the view: stopped until joined */
    PNS_STATE_ESCAPED = 4, /* left its view by itself (setns, unshare, clone) */
};

/* members: tgid -> where it belongs. Copied to a child at fork, deleted at exit. */
struct pns_member {
    __u32 ns;
    __u32 state;
    __u64 cgroup; /* the policy cgroup that made it a member, 0 if joined otherwise */
};

enum pns_event_kind {
    PNS_EVENT_ENTERED = 1, /* a process entered a policy cgroup (cgroup.procs write) */
    PNS_EVENT_HELD = 2,    /* a process exec'd in a policy cgroup outside the view: held */
    PNS_EVENT_EXIT = 3,    /* a member exited */
    PNS_EVENT_ESCAPE = 4,  /* a member left its view by itself */
    PNS_EVENT_REFUSED = 5, /* the guard refused a member something (enum pns_refusal) */
};

struct pns_event {
    __u32 kind;
    __u32 tgid;
    __u32 ns;
    union {
        __u32 mnt;     /* the mount namespace it is in now */
        __u32 refused; /* PNS_EVENT_REFUSED: what (enum pns_refusal) */
    };
    union {
        __u64 cgroup;
        __u64 inode; /* PNS_EVENT_REFUSED of an open or exec: the denied file's inode */
    };
    char comm[16];
    /* When the process started (its leader's task_struct.start_boottime, nanoseconds after
     * boot): with the tgid, it names one process for good, so pnsd acts on the process the
     * event is about and never on one that took its pid since. */
    __u64 start_time;
};

enum pns_counter {
    PNS_COUNTER_HELD = 0,
    PNS_COUNTER_ENTERED = 1,
    PNS_COUNTER_LOST_EVENTS = 2,
    PNS_COUNTER_ESCAPES = 3,
    PNS_COUNTER_UNTRACKED = 4, /* a member's child the members map had no room for */
    PNS_COUNTERS = 5,
};

/* The LSM guard. Namespaces it guards: ns -> flags. */
#define PNS_MAX_GUARDED 16384
#define PNS_MAX_DENIED 65536

enum pns_guard_flags {
    PNS_GUARD_LOCKED = 1,       /* no mount changes, no other mount namespace */
    PNS_GUARD_NO_PRIVILEGE = 2, /* no set-uid, set-gid or file capabilities at exec */
    PNS_GUARD_DENIES = 4,       /* has deny entries: opens are checked */
};

/* A file members of `ns` may not open or execute, by inode: `dev` is the kernel's dev_t of
 * its file system ((major << 20) | minor), as the LSM hooks see it. */
struct pns_denied_file {
    __u32 ns;
    __u32 dev;
    __u64 ino;
};

/* What the denied map holds for a file: its inode's generation (i_generation), so that a new
 * file that gets the inode number of a deleted denied one is not denied for it. `known` is 0
 * where the file system does not tell the generation (FS_IOC_GETVERSION): then the inode
 * number alone decides. */
struct pns_denied_generation {
    __u32 generation;
    __u32 known;
};

/* The same path, by the directory that holds it and the name it has there (not by inode): a
 * file renamed over a denied one, or made anew at its path, is denied too. `dir` is the
 * directory's inode on `dev`; `name` is pns_name_hash of the last component. */
struct pns_denied_name {
    __u32 ns;
    __u32 dev;
    __u64 dir;
    __u64 name;
};

#define PNS_NAME_MAX 255

/* FNV-1a, 64 bits, of a file name's bytes (at most PNS_NAME_MAX): the same in BPF and in pnsd. */
static inline __u64 pns_name_hash(const unsigned char* name, __u32 len) {
    __u64 h = 0xcbf29ce484222325ULL;
    for (__u32 i = 0; i < PNS_NAME_MAX && i < len; i++) {
        h ^= name[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

enum pns_refusal {
    PNS_REFUSED_MOUNT = 1,
    PNS_REFUSED_UMOUNT = 2,
    PNS_REFUSED_MOVE_MOUNT = 3,
    PNS_REFUSED_PIVOT_ROOT = 4,
    PNS_REFUSED_MOUNT_SETATTR = 5,
    PNS_REFUSED_SETNS = 6,      /* into another mount namespace */
    PNS_REFUSED_UNSHARE = 7,    /* a new mount namespace */
    PNS_REFUSED_CLONE = 8,      /* a child in a new mount namespace */
    PNS_REFUSED_OPEN = 9,       /* a denied file, opened or executed */
    PNS_REFUSED_PRIVILEGE = 10, /* an exec that would gain privilege */
    PNS_REFUSED_OUTSIDE = 11,   /* a locked member opening a file outside its view */
    PNS_REFUSED_RECEIVE = 12,   /* a locked member receiving a descriptor of a file outside */
    PNS_REFUSED_PTRACE = 13,    /* a locked member reaching a process outside its view */
};

/* guard_config[0]: pnsd's own tgid; a member it is joining (ptrace-stopped, pnsd its tracer)
 * may setns. */
struct pns_guard_config {
    __u32 pnsd_tgid;
    __u32 unused;
};
