// Whether a process may be moved, and where it goes: the rules of members.hpp as pure
// functions of facts pnsd gathered before (from /proc, its pidfd, the index of views, the user
// database), so every rule is unit-tested (tests/unit/join_rules_test.cpp). Attach and run
// (Members::join), detach, and policy joins (Members::join_for_policy) all decide here.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "agent/namespaces/namespace.hpp"
#include "agent/proc.hpp"
#include "common/result.hpp"

namespace pns::agent::join {

// A view: the one of namespace `name` for `uid` (0: the primary, else the uid's satellite).
struct ViewPlace {
    std::string name;
    uid_t uid = 0;
};

// "the view of 'dev'" or "the view of 'dev' for uid 1000", for messages.
std::string describe(const ViewPlace& view);

// What pnsd found out about a process it is asked to move, all read while its pid named the
// process of the pidfd pnsd holds. A fact of the process left empty could not be read (it
// exited meanwhile, most likely): the rule that needs it refuses with ESRCH, "no process PID".
struct JoinTarget {
    pid_t pid = 0;
    // Why what follows could not be read (the first failure), if it could not: the rules
    // refuse with it where they first need what is missing. `kernel_thread` is empty when not
    // even /proc/PID/stat could be read; everything after it is read only if all before was.
    std::optional<Error> unreadable;
    std::optional<bool> kernel_thread;  // PF_KTHREAD
    std::string label;                  // "PID (comm)" for messages
    proc::Identity identity;
    char state = '?';  // /proc/PID/status: R, S, D, T, Z, X, ...
    pid_t tgid = 0;
    pid_t ppid = 0;
    pid_t tracer = 0;                        // TracerPid, as read last
    std::optional<std::string> tracer_name;  // the tracer's comm, if readable
    bool traced_by_pnsd = false;             // a thread of pnsd traces it (supervised)
    int seccomp = 0;                         // 0 none, 1 strict, 2 filter
    std::optional<ino_t> pid_ns;             // its pid namespace
    std::optional<std::string> root;         // /proc/PID/root
    std::optional<ino_t> mnt;                // its mount namespace
    bool alive = false;  // its pidfd still names a running process after all of this was read
    // pnsd itself, to compare with. Its pid namespace unread: the process counts as in
    // another; its user namespace unread: nothing to compare, the tracer's setns decides.
    pid_t pnsd_pid = 0;
    std::optional<ino_t> pnsd_pid_ns;
    std::optional<ino_t> pnsd_user_ns;

    // Where it is, from the index of views: the view its mount namespace is, and the
    // satellite its user namespace is (if any).
    std::optional<ViewPlace> view;
    std::optional<ViewPlace> user_view;
    // What pnsd has on record about it: "member", "pending", "held", "supervised".
    std::optional<std::string> record;
    // A policy join of it is under way (it entered a policy cgroup, then exec'd).
    bool policy_join_under_way = false;
    gid_t primary_gid = 0;  // its user's primary group, the only group a satellite maps
};

// Who moves the process, and why.
struct JoinCaller {
    enum class Purpose {
        kAttach,  // pnsctl attach, pnsctl run: a client asks for a join
        kDetach,  // pnsctl detach: a client asks for a process to leave its view
        kPolicy,  // a cgroup policy: pnsd itself, for the namespace's owner
    };
    Purpose purpose = Purpose::kAttach;
    uid_t uid = 0;  // the client's (SO_PEERCRED); 0 for a policy
    gid_t gid = 0;
    gid_t owner_gid = 0;  // a policy: the primary group of the namespace's owner

    bool is_root() const { return uid == 0; }
};

// Whether the process runs as root: uid 0 among its real, effective, saved and fs ids. Such
// a process joins a primary; any other joins the satellite of its uid.
bool runs_as_root(const proc::Identity& identity);

// What a join is to do.
struct JoinPlan {
    enum class Kind {
        kPrimary,    // join the namespace's primary view (a root process)
        kSatellite,  // join the satellite of `uid`/`gid`, made if missing
        kAlready,    // it is in that view already: nothing to do
        kLeave,      // a policy join of a process not the owner's: left where it is (`why`)
    };
    Kind kind = Kind::kPrimary;
    uid_t uid = 0;  // whose view: 0 for the primary
    gid_t gid = 0;
    std::string why;
};

// The rules about the process itself and the caller's right to it, in the order a user sees
// the refusals; for an attach, also that it is not being joined already. Detach uses these
// alone. EPERM, EACCES, EBUSY, EINVAL or ESRCH, with a one-line reason.
Status check_process(const JoinTarget& target, const JoinCaller& caller);

// Whether `target` may join `ns`, and how: check_process, then the namespace's rules. For an
// attach or run: the caller owns `ns` or is root; a root process joins only root's namespaces;
// a process in a satellite's user namespace stays in that namespace and uid (the kernel lets
// none leave a user namespace) and one in another user namespace is refused; then it is a
// member already, or it must run with its user's primary group. For a policy: the namespace's
// owner could have attached it (auth::may_join_by_policy); one not the owner's at all is
// left where it is (kLeave); then already a member (unless a policy join of it is under way),
// or the primary group.
Result<JoinPlan> check_join(const JoinTarget& target, const Namespace& ns,
                            const JoinCaller& caller);

}  // namespace pns::agent::join
