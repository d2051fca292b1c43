#include "agent/join/rules.hpp"

#include <cinttypes>
#include <cstdio>

#include "agent/namespaces/auth.hpp"
#include "common/text.hpp"

namespace pns::agent::join {

namespace {

std::string hex(std::uint64_t value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, value);
    return buf;
}

template <typename T, std::size_t N>
bool all_equal(const std::array<T, N>& ids, T value) {
    for (T id : ids)
        if (id != value) return false;
    return true;
}

Error gone(const JoinTarget& t) {
    return Error{ESRCH, "no process " + std::to_string(t.pid)};
}

// The namespace's rules for an attach or a run.
Result<JoinPlan> check_attach(const JoinTarget& t, const Namespace& ns, const JoinCaller& caller) {
    const bool root = runs_as_root(t.identity);
    if (!caller.is_root() && caller.uid != ns.owner)
        return Error{EACCES, "namespace " + quote(ns.name) + " belongs to uid " +
                                 std::to_string(ns.owner) +
                                 "; only its owner and root move processes into it"};
    if (root && ns.owner != 0)
        return Error{EPERM, t.label +
                                " runs as root; root processes join only namespaces owned "
                                "by root, and " +
                                quote(ns.name) + " belongs to uid " + std::to_string(ns.owner)};

    const uid_t view_uid = root ? 0 : t.identity.uids[1];
    // setns(2) into a user namespace requires CAP_SYS_ADMIN in it (kernel/user_namespace.c:
    // userns_install), which a process in a satellite's user namespace has in no namespace
    // but its own and those below it: it stays in that user namespace for good.
    if (t.pnsd_user_ns && t.identity.user_ns != *t.pnsd_user_ns) {
        if (!t.user_view) return Error{EPERM, t.label + " is in a user namespace pns did not make"};
        if (t.user_view->name != ns.name || t.user_view->uid != view_uid)
            return Error{EPERM, t.label + " is in " + describe(*t.user_view) +
                                    ", a user namespace of its own, which the kernel lets no "
                                    "process leave; start it anew with 'pnsctl run --ns " +
                                    ns.name + " -- ...'"};
    }
    if (t.view && t.view->name == ns.name && t.view->uid == view_uid)
        return JoinPlan{.kind = JoinPlan::Kind::kAlready, .uid = view_uid};
    const gid_t gid = t.identity.gids[1];
    if (!root && gid != t.primary_gid)
        return Error{EPERM, t.label + " runs with group " + std::to_string(gid) +
                                ", not its user's primary group " + std::to_string(t.primary_gid) +
                                ", the only group a view maps"};
    if (root) return JoinPlan{.kind = JoinPlan::Kind::kPrimary};
    return JoinPlan{.kind = JoinPlan::Kind::kSatellite, .uid = view_uid, .gid = gid};
}

// The namespace's rules for a policy join. Messages go to pnsd's log and `pnsctl events`,
// without the process's label (the log line names it).
Result<JoinPlan> check_policy(const JoinTarget& t, const Namespace& ns, const JoinCaller& caller) {
    const bool root = runs_as_root(t.identity);
    // The attach rules (DESIGN.md, decision 8): the namespace's owner must have been able to
    // move it there. A process that is not the owner's at all is left where it is; the
    // owner's own that cannot join as it is is refused (the policy's promise to its owner).
    auth::ProcessIds ids{t.identity.uids, t.identity.gids, t.identity.dumpable()};
    if (auto st = auth::may_join_by_policy(ns, ids, caller.owner_gid); !st) {
        if (st.error().code == EPERM)
            return JoinPlan{.kind = JoinPlan::Kind::kLeave, .why = st.error().message};
        return Error(std::move(st).error());
    }
    const uid_t view_uid = root ? 0 : t.identity.uids[1];
    // A policy join of it under way may have made it enter the view already, but not let it
    // go yet: that join finishes it, so this one does not count it a member.
    if (!t.policy_join_under_way && t.view && t.view->name == ns.name && t.view->uid == view_uid)
        return JoinPlan{.kind = JoinPlan::Kind::kAlready, .uid = view_uid};
    const gid_t gid = t.identity.gids[1];
    if (!root && gid != t.primary_gid)
        return Error{EPERM, "it does not run with its user's primary group"};
    if (root) return JoinPlan{.kind = JoinPlan::Kind::kPrimary};
    return JoinPlan{.kind = JoinPlan::Kind::kSatellite, .uid = view_uid, .gid = gid};
}

}  // namespace

std::string describe(const ViewPlace& view) {
    return view.uid == 0
               ? "the view of " + quote(view.name)
               : "the view of " + quote(view.name) + " for uid " + std::to_string(view.uid);
}

bool runs_as_root(const proc::Identity& identity) {
    for (uid_t uid : identity.uids)
        if (uid == 0) return true;
    return false;
}

Status check_process(const JoinTarget& t, const JoinCaller& caller) {
    if (t.pid <= 0) return Error::invalid("no process " + std::to_string(t.pid));
    if (t.pid == 1) return Error{EPERM, "PID 1 (init) is never moved"};
    if (!t.kernel_thread) return t.unreadable.value_or(gone(t));
    if (*t.kernel_thread) return Error{EPERM, std::to_string(t.pid) + " is a kernel thread"};
    if (t.unreadable) return *t.unreadable;
    if (t.tgid != t.pid)
        return Error::invalid(t.label + " is a thread of process " + std::to_string(t.tgid) +
                              "; name the process");
    if (t.state == 'Z' || t.state == 'X') return Error{ESRCH, t.label + " has exited (a zombie)"};
    if (t.pid == t.pnsd_pid) return Error{EPERM, t.label + " is pnsd itself"};
    if (t.ppid == t.pnsd_pid) return Error{EPERM, t.label + " is one of pnsd's helpers"};

    const proc::Identity& id = t.identity;
    if (!caller.is_root()) {
        // What ptrace would require of this user (kernel/ptrace.c: __ptrace_may_access): every
        // uid and gid of the process its own.
        if (!all_equal(id.uids, caller.uid) || !all_equal(id.gids, caller.gid))
            return Error{EACCES, t.label + " belongs to uid " + std::to_string(id.uids[1]) +
                                     "; you may move only your own processes"};
        // A process that changed its privileges is not dumpable: /proc/PID is then root's,
        // and the kernel would not let this user ptrace it either.
        if (!id.dumpable())
            return Error{EACCES, t.label +
                                     " is not dumpable (it changed its privileges); only root "
                                     "may move it"};
    }
    // A process has one tracer (PTRACE_SEIZE fails with EPERM on a traced one).
    if (t.tracer != 0 && !t.traced_by_pnsd)
        return Error{EBUSY, t.label + " is traced by " + std::to_string(t.tracer) +
                                (t.tracer_name ? " (" + *t.tracer_name + ")" : std::string()) +
                                "; pns cannot move it while it is"};
    if (t.seccomp == 2)
        return Error{EPERM, t.label +
                                " runs under a seccomp filter: a system call pnsd made it run "
                                "could be refused or kill it, so pns leaves it alone"};
    if (!t.pid_ns) return gone(t);
    if (!t.pnsd_pid_ns || *t.pnsd_pid_ns != *t.pid_ns)
        return Error{EPERM, t.label + " is in another pid namespace (a container?)"};
    if (!t.root) return gone(t);
    if (*t.root != "/") return Error{EPERM, t.label + " is chrooted (to " + quote(*t.root) + ")"};

    if (!runs_as_root(id)) {
        if (!all_equal(id.uids, id.uids[1]))
            return Error{EPERM, t.label +
                                    " has several user ids; pns moves only processes "
                                    "whose user ids are all the same"};
        // setns(2) into a user namespace gives the full set there and none outside: a process
        // holding capabilities would lose them (kernel/user_namespace.c: userns_install).
        if (id.cap_permitted != 0 || id.cap_ambient != 0)
            return Error{EPERM, t.label + " holds capabilities (CapPrm " + hex(id.cap_permitted) +
                                    "), which the user namespace of a view would take away"};
    }
    if (!t.mnt) return gone(t);
    // All of the above was read while `pid` named the process of the pidfd.
    if (!t.alive) return gone(t);

    if (caller.purpose == JoinCaller::Purpose::kAttach &&
        (t.traced_by_pnsd || (t.record && *t.record != "member")))
        return Error{EBUSY, t.label + " is being joined already (" +
                                (t.record ? *t.record : std::string("traced by pnsd")) +
                                "); 'pnsctl detach' lets it go"};
    return {};
}

Result<JoinPlan> check_join(const JoinTarget& t, const Namespace& ns, const JoinCaller& caller) {
    if (auto st = check_process(t, caller); !st) return Error(std::move(st).error());
    if (caller.purpose == JoinCaller::Purpose::kPolicy) return check_policy(t, ns, caller);
    return check_attach(t, ns, caller);
}

}  // namespace pns::agent::join
