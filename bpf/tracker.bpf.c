// The tracker: follows members of views through fork, exec and exit, matches processes
// against cgroup-level policies, and holds a process that execs in a policy cgroup outside
// its view until pnsd has joined it (DESIGN.md, decisions 2 and 6). Tracepoints only: this
// machine's kernel (lockdown=integrity) refuses fentry and LSM programs. It never writes to
// user memory and never rewrites a path: the redirect is the kernel's VFS, in the views.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/abi.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGSTOP 19
#define CLONE_NEWNS 0x00020000

#include "shared_maps.h"

// cgroup id (the cgroup2 directory's inode) -> namespace
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PNS_MAX_POLICIES);
    __type(key, __u64);
    __type(value, __u32);
} policies SEC(".maps");

// mount namespace inode of every view (primary and satellites) -> namespace
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PNS_MAX_VIEWS);
    __type(key, __u32);
    __type(value, __u32);
} views SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, PNS_COUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which) {
    __u64* c = bpf_map_lookup_elem(&counters, &which);
    if (c) __sync_fetch_and_add(c, 1);
}

static __always_inline __u32 mnt_of(struct task_struct* task) {
    return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

static __always_inline void emit(__u32 kind, struct task_struct* task, __u32 ns, __u64 cgroup) {
    if (kind == PNS_EVENT_EXIT && !room_for_optional_event()) {
        count(PNS_COUNTER_LOST_EVENTS);
        return;
    }
    struct pns_event* e = bpf_ringbuf_reserve(&events, sizeof *e, 0);
    if (!e) {
        count(PNS_COUNTER_LOST_EVENTS);
        return;
    }
    e->kind = kind;
    e->tgid = BPF_CORE_READ(task, tgid);
    e->ns = ns;
    e->mnt = mnt_of(task);
    e->cgroup = cgroup;
    BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
    // The leader's: after an exec by another thread, de_thread() gives the new leader the old
    // one's start times, which is what /proc/TGID/stat shows.
    e->start_time = BPF_CORE_READ(task, group_leader, start_boottime);
    bpf_ringbuf_submit(e, 0);
}

// The policy of cgroup `cgrp` or its nearest ancestor that has one; 0 when none.
static __always_inline __u32 policy_of(struct cgroup* cgrp, __u64* matched) {
    int level = BPF_CORE_READ(cgrp, level);
    for (int i = 0; i < PNS_MAX_CGROUP_DEPTH; ++i) {
        int at = level - i;
        if (at < 0) break;
        struct cgroup* ancestor = NULL;
        bpf_core_read(&ancestor, sizeof ancestor, &cgrp->ancestors[at & 0xff]);
        if (!ancestor) continue;
        __u64 id = BPF_CORE_READ(ancestor, kn, id);
        __u32* ns = bpf_map_lookup_elem(&policies, &id);
        if (ns) {
            *matched = id;
            return *ns;
        }
    }
    return 0;
}

static __always_inline struct cgroup* cgroup_of(struct task_struct* task) {
    return BPF_CORE_READ(task, cgroups, dfl_cgrp);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct* parent, struct task_struct* child) {
    if (child->pid != child->tgid) return 0;  // a thread: its process is tracked already
    __u32 parent_tgid = parent->tgid;
    struct pns_member* m = bpf_map_lookup_elem(&members, &parent_tgid);
    if (!m) return 0;
    struct pns_member copy = *m;
    __u32 child_tgid = child->tgid;
    __u32* in = bpf_map_lookup_elem(&views, &(__u32){mnt_of(child)});
    if (in && *in == copy.ns) {
        // In the view (its parent may have been joined a moment ago, before pnsd said so).
        copy.state = PNS_STATE_MEMBER;
    } else if (copy.state == PNS_STATE_MEMBER) {
        // Made in a new mount namespace (clone with CLONE_NEWNS): it has left the view.
        copy.state = PNS_STATE_ESCAPED;
        count(PNS_COUNTER_ESCAPES);
        emit(PNS_EVENT_ESCAPE, child, copy.ns, copy.cgroup);
    }
    // The map is as large as the number of processes the kernel allows (pnsd sizes it at
    // load), so this fails only if pid_max or threads-max were raised since: then the child
    // goes untracked, and `pnsctl status` counts it.
    if (bpf_map_update_elem(&members, &child_tgid, &copy, BPF_ANY) != 0)
        count(PNS_COUNTER_UNTRACKED);
    return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct* task, pid_t old_pid, struct linux_binprm* bprm) {
    __u64 cgroup = 0;
    __u32 ns = policy_of(cgroup_of(task), &cgroup);
    if (!ns) return 0;
    __u32 tgid = task->tgid;
    __u32* in = bpf_map_lookup_elem(&views, &(__u32){mnt_of(task)});
    struct pns_member m = {.ns = ns, .cgroup = cgroup};
    if (in && *in == ns) {
        m.state = PNS_STATE_MEMBER;
        bpf_map_update_elem(&members, &tgid, &m, BPF_ANY);
        return 0;
    }
    // pnsd has not joined it yet: the new program must not run outside the view. SIGSTOP
    // stops it before its first instruction; pnsd joins it and sends SIGCONT.
    m.state = PNS_STATE_HELD;
    bpf_map_update_elem(&members, &tgid, &m, BPF_ANY);
    bpf_send_signal(SIGSTOP);
    count(PNS_COUNTER_HELD);
    emit(PNS_EVENT_HELD, task, ns, cgroup);
    return 0;
}

// The tracepoint has a second argument, group_dead, only since Linux 6.13; the count of live
// threads it comes from (kernel/exit.c: do_exit decrements it before the tracepoint) is read
// instead, so the tracker loads on 6.12 too.
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct* task) {
    if (BPF_CORE_READ(task, signal, live.counter) != 0) return 0;  // other threads live on
    __u32 tgid = task->tgid;
    if (bpf_map_delete_elem(&members, &tgid) == 0) emit(PNS_EVENT_EXIT, task, 0, 0);
    return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(on_cgroup_attach, struct cgroup* dst, const char* path, struct task_struct* task,
             bool threadgroup) {
    __u64 cgroup = 0;
    __u32 ns = policy_of(dst, &cgroup);
    if (!ns) return 0;
    __u32 tgid = task->tgid;
    __u32* in = bpf_map_lookup_elem(&views, &(__u32){mnt_of(task)});
    struct pns_member m = {.ns = ns, .cgroup = cgroup};
    m.state = in && *in == ns ? PNS_STATE_MEMBER : PNS_STATE_PENDING;
    bpf_map_update_elem(&members, &tgid, &m, BPF_ANY);
    if (m.state == PNS_STATE_PENDING) {
        count(PNS_COUNTER_ENTERED);
        emit(PNS_EVENT_ENTERED, task, ns, cgroup);
    }
    return 0;
}

// A member that changed its own mount namespace (setns, unshare) has left its view.
static __always_inline int check_escape(long ret) {
    if (ret != 0) return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct pns_member* m = bpf_map_lookup_elem(&members, &tgid);
    if (!m || m->state != PNS_STATE_MEMBER) return 0;
    struct task_struct* task = (struct task_struct*)bpf_get_current_task_btf();
    __u32* in = bpf_map_lookup_elem(&views, &(__u32){mnt_of(task)});
    if (in && *in == m->ns) return 0;
    m->state = PNS_STATE_ESCAPED;
    count(PNS_COUNTER_ESCAPES);
    emit(PNS_EVENT_ESCAPE, task, m->ns, m->cgroup);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_setns")
int on_setns(struct trace_event_raw_sys_exit* ctx) {
    return check_escape(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_unshare")
int on_unshare(struct trace_event_raw_sys_exit* ctx) {
    return check_escape(ctx->ret);
}
