// The LSM guard (DESIGN.md, decision 3): BPF LSM programs that refuse members of views what
// their namespace forbids. Loaded by pnsd only where the kernel runs the BPF LSM; it shares
// the tracker's map of members (who is a member of which namespace) and its ring buffer
// (refusals are reported like every other event), and adds:
//   - locked namespaces: no mount, umount, move_mount, pivot_root or mount_setattr, no other
//     mount namespace (setns, unshare, clone): EPERM; nothing outside the view reached through
//     a way around the view's root: no file opened on a mount of another mount namespace (a
//     descriptor from before the join, /proc/PID/root), no such descriptor received (SCM_RIGHTS,
//     pidfd_getfd), no ptrace-mode access to a process outside the view: EACCES, EPERM;
//   - `deny PATH` entries: members get EACCES opening or executing the file, by inode, so
//     every path and hard link to it is denied alike, and by directory and name, so a file
//     renamed over it or made anew at its path is denied too;
//   - namespaces with entries a non-root user controls: no privilege gained by exec (set-uid,
//     set-gid, file capabilities): EPERM.
// It only ever answers "no": it never writes to user memory and never rewrites a path.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/abi.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define EACCES 13
#define CLONE_NEWNS 0x00020000
#define CAP_SYS_CHROOT 18
#define CAP_SYS_ADMIN 21
#define TS_COMPAT 0x0002

// System call numbers, x86-64 and i386 (a member may run 32-bit code).
#define NR_SETNS 308
#define NR_UNSHARE 272
#define NR_MOUNT_SETATTR 442
#define NR32_SETNS 346
#define NR32_UNSHARE 310
#define NR32_MOUNT_SETATTR 442

// The tracker's maps, reused by pnsd from the tracker's pins before this is loaded.
#include "shared_maps.h"

// namespace -> enum pns_guard_flags
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PNS_MAX_GUARDED);
    __type(key, __u32);
    __type(value, __u32);
} guarded SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PNS_MAX_DENIED);
    __type(key, struct pns_denied_file);
    __type(value, struct pns_denied_generation);
} denied SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PNS_MAX_DENIED);
    __type(key, struct pns_denied_name);
    __type(value, __u8);
} denied_names SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pns_guard_config);
} guard_config SEC(".maps");

// refusals so far
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} refusals SEC(".maps");

// The calling process's membership, or NULL when it is no member.
static __always_inline struct pns_member* current_member(void) {
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return bpf_map_lookup_elem(&members, &tgid);
}

static __always_inline __u32 flags_of(const struct pns_member* m) {
    __u32* flags = bpf_map_lookup_elem(&guarded, &m->ns);
    return flags ? *flags : 0;
}

static __always_inline int refuse(const struct pns_member* m, __u32 what, __u64 inode, int err) {
    __u32 zero = 0;
    __u64* n = bpf_map_lookup_elem(&refusals, &zero);
    if (n) __sync_fetch_and_add(n, 1);
    struct pns_event* e =
        room_for_optional_event() ? bpf_ringbuf_reserve(&events, sizeof *e, 0) : NULL;
    if (e) {
        struct task_struct* task = bpf_get_current_task_btf();
        e->kind = PNS_EVENT_REFUSED;
        e->tgid = task->tgid;
        e->ns = m->ns;
        e->refused = what;
        e->inode = inode;
        bpf_get_current_comm(&e->comm, sizeof e->comm);
        e->start_time = BPF_CORE_READ(task, group_leader, start_boottime);
        bpf_ringbuf_submit(e, 0);
    }
    return -err;
}

// A member of a locked namespace, or NULL.
static __always_inline struct pns_member* locked_member(void) {
    struct pns_member* m = current_member();
    return m && (flags_of(m) & PNS_GUARD_LOCKED) ? m : NULL;
}

SEC("lsm/sb_mount")
int BPF_PROG(guard_mount, const char* dev_name, const struct path* path, const char* type,
             unsigned long flags, void* data, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    return m ? refuse(m, PNS_REFUSED_MOUNT, 0, EPERM) : 0;
}

SEC("lsm/sb_umount")
int BPF_PROG(guard_umount, struct vfsmount* mnt, int flags, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    return m ? refuse(m, PNS_REFUSED_UMOUNT, 0, EPERM) : 0;
}

SEC("lsm/move_mount")
int BPF_PROG(guard_move_mount, const struct path* from, const struct path* to, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    return m ? refuse(m, PNS_REFUSED_MOVE_MOUNT, 0, EPERM) : 0;
}

SEC("lsm/sb_pivotroot")
int BPF_PROG(guard_pivot_root, const struct path* old_path, const struct path* new_path, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    return m ? refuse(m, PNS_REFUSED_PIVOT_ROOT, 0, EPERM) : 0;
}

// Whether pnsd is joining the calling process right now: stopped for ptrace by pnsd, which
// made it call setns (agent/join/tracer.cpp).
static __always_inline bool joined_by_pnsd(struct task_struct* task) {
    __u32 zero = 0;
    struct pns_guard_config* config = bpf_map_lookup_elem(&guard_config, &zero);
    if (!config || !config->pnsd_tgid || !task->ptrace) return false;
    return BPF_CORE_READ(task, parent, tgid) == config->pnsd_tgid;
}

// mount_setattr, setns and unshare have no hook of their own; each asks for a capability
// first (fs/namespace.c: may_mount, mntns_install; kernel/nsproxy.c), which is refused here
// while that system call is the one running. Only setns into a mount namespace asks for
// CAP_SYS_CHROOT, so joining other kinds of namespaces stays allowed.
SEC("lsm/capable")
int BPF_PROG(guard_capable, const struct cred* cred, struct user_namespace* ns, int cap,
             unsigned int opts, int ret) {
    if (ret) return ret;
    if (cap != CAP_SYS_ADMIN && cap != CAP_SYS_CHROOT) return 0;
    struct pns_member* m = locked_member();
    if (!m) return 0;
    struct task_struct* task = bpf_get_current_task_btf();
    struct pt_regs* regs = (struct pt_regs*)bpf_task_pt_regs(task);
    bool compat = BPF_CORE_READ(task, thread_info.status) & TS_COMPAT;
    long nr = BPF_CORE_READ(regs, orig_ax);
    unsigned long arg0 = compat ? BPF_CORE_READ(regs, bx) : BPF_CORE_READ(regs, di);
    if (cap == CAP_SYS_ADMIN && nr == (compat ? NR32_MOUNT_SETATTR : NR_MOUNT_SETATTR))
        return refuse(m, PNS_REFUSED_MOUNT_SETATTR, 0, EPERM);
    if (cap == CAP_SYS_CHROOT && nr == (compat ? NR32_SETNS : NR_SETNS) && !joined_by_pnsd(task))
        return refuse(m, PNS_REFUSED_SETNS, 0, EPERM);
    if (cap == CAP_SYS_ADMIN && nr == (compat ? NR32_UNSHARE : NR_UNSHARE) && (arg0 & CLONE_NEWNS))
        return refuse(m, PNS_REFUSED_UNSHARE, 0, EPERM);
    return 0;
}

SEC("lsm/task_alloc")
int BPF_PROG(guard_clone, struct task_struct* task, unsigned long clone_flags, int ret) {
    if (ret || !(clone_flags & CLONE_NEWNS)) return ret;
    struct pns_member* m = locked_member();
    return m ? refuse(m, PNS_REFUSED_CLONE, 0, EPERM) : 0;
}

// Whether `vfsmnt` belongs to a mount namespace other than the calling task's: a file on it is
// outside the view. Kernel-internal mounts (pipes, sockets, nsfs, anonymous inodes: their
// mnt_ns is MNT_NS_INTERNAL, an error pointer; fs/mount.h) and mounts already unmounted
// (mnt_ns NULL: a lazily detached mount the member still holds) belong to no view.
static __always_inline bool outside_view(struct vfsmount* vfsmnt) {
    struct mount* mnt = (void*)vfsmnt - bpf_core_field_offset(struct mount, mnt);
    unsigned long ns = (unsigned long)BPF_CORE_READ(mnt, mnt_ns);
    if (ns == 0 || ns >= (unsigned long)-4095) return false;
    struct task_struct* task = bpf_get_current_task_btf();
    return ns != (unsigned long)BPF_CORE_READ(task, nsproxy, mnt_ns);
}

// Whether the file's name in its directory is a denied one (struct pns_denied_name).
static __always_inline bool denied_by_name(const struct pns_member* m, struct file* file,
                                           __u32 dev) {
    unsigned char name[PNS_NAME_MAX + 1];
    struct dentry* dentry = file->f_path.dentry;
    long n = bpf_probe_read_kernel_str(name, sizeof name, BPF_CORE_READ(dentry, d_name.name));
    if (n <= 1) return false;
    struct pns_denied_name key = {
        .ns = m->ns,
        .dev = dev,
        .dir = BPF_CORE_READ(dentry, d_parent, d_inode, i_ino),
        .name = pns_name_hash(name, (__u32)(n - 1)),
    };
    return bpf_map_lookup_elem(&denied_names, &key) != NULL;
}

// Every open goes through here, exec's included (fs/exec.c: do_open_execat), but not O_PATH
// ones (fs/open.c: do_dentry_open returns before security_file_open): a descriptor that only
// names a file gives nothing to read, list or run until it is opened again, which lands here.
SEC("lsm/file_open")
int BPF_PROG(guard_open, struct file* file, int ret) {
    if (ret) return ret;
    struct pns_member* m = current_member();
    if (!m) return 0;
    __u32 flags = flags_of(m);
    // A locked member reaches nothing but its view: a file on a mount of another namespace
    // came through a descriptor from outside (held from before it joined, or a directory
    // passed in before the guard refused that) or /proc/PID/root of a process outside.
    if ((flags & PNS_GUARD_LOCKED) && outside_view(file->f_path.mnt))
        return refuse(m, PNS_REFUSED_OUTSIDE, BPF_CORE_READ(file, f_inode, i_ino), EACCES);
    if (!(flags & PNS_GUARD_DENIES)) return 0;
    struct inode* inode = file->f_inode;
    struct pns_denied_file key = {
        .ns = m->ns,
        .dev = BPF_CORE_READ(inode, i_sb, s_dev),
        .ino = BPF_CORE_READ(inode, i_ino),
    };
    struct pns_denied_generation* by_inode = bpf_map_lookup_elem(&denied, &key);
    if (by_inode && by_inode->known && by_inode->generation != BPF_CORE_READ(inode, i_generation))
        by_inode = NULL;  // the inode number of a denied file that is gone, given to a new one
    if (!by_inode && !denied_by_name(m, file, key.dev)) return 0;
    return refuse(m, PNS_REFUSED_OPEN, key.ino, EACCES);
}

// A descriptor arriving over a Unix socket (SCM_RIGHTS) or taken with pidfd_getfd
// (fs/file.c: receive_fd calls security_file_receive before installing it): a locked member
// takes none of a file outside its view, so a same-uid process outside cannot hand it a way
// out. recvmsg then reports MSG_CTRUNC and the descriptor is dropped (net/core/scm.c).
SEC("lsm/file_receive")
int BPF_PROG(guard_receive, struct file* file, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    if (!m || !outside_view(file->f_path.mnt)) return 0;
    return refuse(m, PNS_REFUSED_RECEIVE, BPF_CORE_READ(file, f_inode, i_ino), EPERM);
}

// ptrace-mode access (kernel/ptrace.c: __ptrace_may_access): PTRACE_ATTACH, process_vm_readv,
// pidfd_getfd, and the /proc/PID links root, cwd, exe and fd/ that lead into another mount
// namespace. A locked member has it only to processes in its own view, or members of its
// namespace in another of its views (root's primary and users' satellites).
SEC("lsm/ptrace_access_check")
int BPF_PROG(guard_ptrace, struct task_struct* child, unsigned int mode, int ret) {
    if (ret) return ret;
    struct pns_member* m = locked_member();
    if (!m) return 0;
    struct task_struct* task = bpf_get_current_task_btf();
    // pnsd joining it: its injected setns(pidfd of pnsd's holder) asks for this access to the
    // holder, which waits in the view it is about to enter (kernel/nsproxy.c: validate_nsset).
    if (joined_by_pnsd(task)) return 0;
    if (BPF_CORE_READ(child, nsproxy, mnt_ns) == BPF_CORE_READ(task, nsproxy, mnt_ns)) return 0;
    __u32 tgid = BPF_CORE_READ(child, tgid);
    struct pns_member* other = bpf_map_lookup_elem(&members, &tgid);
    if (other && other->ns == m->ns) return 0;
    return refuse(m, PNS_REFUSED_PTRACE, 0, EPERM);
}

// Runs once the new credentials are computed (fs/exec.c: begin_new_exec, before the point of
// no return), so the exec fails cleanly and the process goes on with its old program.
SEC("lsm/bprm_creds_from_file")
int BPF_PROG(guard_exec, struct linux_binprm* bprm, const struct file* file, int ret) {
    if (ret) return ret;
    struct pns_member* m = current_member();
    if (!m || !(flags_of(m) & PNS_GUARD_NO_PRIVILEGE)) return 0;
    struct task_struct* task = bpf_get_current_task_btf();
    const struct cred* now = task->cred;
    const struct cred* next = bprm->cred;
    __u64 caps_now = BPF_CORE_READ(now, cap_permitted.val);
    __u64 caps_next = BPF_CORE_READ(next, cap_permitted.val);
    // A gain: capabilities it did not have (root regaining them after dropping them, file
    // capabilities), or a non-root process taking another uid or gid (set-uid, set-gid).
    // Root taking a set-uid program's uid gives something up, and is let be.
    bool was_root = BPF_CORE_READ(now, euid.val) == 0;
    bool gains = (caps_next & ~caps_now) != 0 ||
                 (!was_root && (BPF_CORE_READ(next, euid.val) != BPF_CORE_READ(now, euid.val) ||
                                BPF_CORE_READ(next, egid.val) != BPF_CORE_READ(now, egid.val)));
    if (!gains) return 0;
    return refuse(m, PNS_REFUSED_PRIVILEGE, BPF_CORE_READ(file, f_inode, i_ino), EPERM);
}
