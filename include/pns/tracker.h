/* What the BPF tracker (bpf/tracker.bpf.c) and pnsd share: map values and ring-buffer events.
 * C, so that both the BPF program (with vmlinux.h) and C++ include it. */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

/* A namespace is named in the maps by the inode number of its primary view's mount
 * namespace: stable while the view is pinned, so across pnsd restarts too. */

#define PNS_MAX_MEMBERS 131072
#define PNS_MAX_POLICIES 4096
#define PNS_MAX_VIEWS 65536
#define PNS_MAX_CGROUP_DEPTH 16
#define PNS_EVENTS_BYTES (1 << 20)

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
};

struct pns_event {
    __u32 kind;
    __u32 tgid;
    __u32 ns;
    __u32 mnt; /* the mount namespace it is in now */
    __u64 cgroup;
    char comm[16];
};

enum pns_counter {
    PNS_COUNTER_HELD = 0,
    PNS_COUNTER_ENTERED = 1,
    PNS_COUNTER_LOST_EVENTS = 2,
    PNS_COUNTER_ESCAPES = 3,
    PNS_COUNTERS = 4,
};
