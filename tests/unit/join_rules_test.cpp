// Join rules: whether a process may be moved and where it goes, from the facts pnsd gathered.
#include <gtest/gtest.h>

#include "agent/join/rules.hpp"
#include "test_util.hpp"

namespace pns::agent::join {
namespace {

using test::Contains;
using test::FailsWith;
using test::Succeeds;
using Kind = JoinPlan::Kind;
using Purpose = JoinCaller::Purpose;

constexpr uid_t kAlice = 1000;
constexpr uid_t kBob = 1001;
constexpr gid_t kUsers = 100;  // Alice's and Bob's primary group
constexpr pid_t kPnsd = 500;
constexpr ino_t kHostUserNs = 4026531837;
constexpr ino_t kHostPidNs = 4026531836;
constexpr ino_t kSatelliteUserNs = 4026532900;

// A process of `uid` as a join finds it at its best: single-threaded, untraced, in pnsd's pid
// and user namespaces, not chrooted, dumpable, without capabilities, in its primary group.
JoinTarget process_of(uid_t uid, gid_t gid = kUsers, pid_t pid = 4242) {
    JoinTarget t;
    t.pid = pid;
    t.kernel_thread = false;
    t.label = std::to_string(pid) + " (sh)";
    t.identity.uids.fill(uid);
    t.identity.gids.fill(gid);
    t.identity.proc_uid = uid;  // dumpable
    t.identity.proc_gid = gid;
    t.identity.user_ns = kHostUserNs;
    if (uid == 0) t.identity.cap_permitted = t.identity.cap_effective = ~0ull >> 23;
    t.state = 'S';
    t.tgid = pid;
    t.ppid = 1;
    t.pid_ns = kHostPidNs;
    t.root = "/";
    t.mnt = 4026531841;
    t.alive = true;
    t.pnsd_pid = kPnsd;
    t.pnsd_pid_ns = kHostPidNs;
    t.pnsd_user_ns = kHostUserNs;
    t.primary_gid = uid == 0 ? 0 : kUsers;
    return t;
}

JoinCaller client(uid_t uid, gid_t gid = kUsers, Purpose purpose = Purpose::kAttach) {
    return JoinCaller{.purpose = purpose, .uid = uid, .gid = uid == 0 ? 0 : gid};
}

JoinCaller policy_for(const Namespace& ns) {
    return JoinCaller{.purpose = Purpose::kPolicy, .owner_gid = ns.owner == 0 ? 0 : kUsers};
}

Namespace owned_by(uid_t owner, std::string name = "dev") {
    Namespace ns;
    ns.name = std::move(name);
    ns.owner = owner;
    ns.generation = 1;
    return ns;
}

// --- the process itself (attach, run, detach and policies alike) ---

TEST(CheckProcess, AnOrdinaryProcessMayBeMovedByItsUserAndRoot) {
    for (Purpose p : {Purpose::kAttach, Purpose::kDetach}) {
        EXPECT_TRUE(Succeeds(check_process(process_of(kAlice), client(kAlice, kUsers, p))));
        EXPECT_TRUE(Succeeds(check_process(process_of(kAlice), client(0, 0, p))));
        EXPECT_TRUE(Succeeds(check_process(process_of(0), client(0, 0, p))));
    }
    EXPECT_TRUE(Succeeds(check_process(process_of(kBob), JoinCaller{.purpose = Purpose::kPolicy})));
}

TEST(CheckProcess, Pid1IsNeverMoved) {
    EXPECT_TRUE(FailsWith(check_process(process_of(0, 0, 1), client(0)), EPERM,
                          "PID 1 (init) is never moved"));
}

TEST(CheckProcess, Pid1IsRefusedEvenIfNothingOfItCouldBeRead) {
    JoinTarget t;
    t.pid = 1;
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EPERM, "PID 1 (init) is never moved"));
    t.pid = 0;
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EINVAL, "no process 0"));
}

TEST(CheckProcess, KernelThreads) {
    JoinTarget t = process_of(0, 0, 2);
    t.kernel_thread = true;
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EPERM, "2 is a kernel thread"));
    // A kernel thread runs no program: its identity cannot be read, and it is named all the same.
    t.unreadable = Error{ESRCH, "no process 2"};
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM, "2 is a kernel thread"));
}

TEST(CheckProcess, ThreadsAreRefusedNamingTheProcess) {
    JoinTarget t = process_of(kAlice);
    t.tgid = 4200;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EINVAL,
                          "4242 (sh) is a thread of process 4200; name the process"));
}

TEST(CheckProcess, Zombies) {
    for (char state : {'Z', 'X'}) {
        JoinTarget t = process_of(kAlice);
        t.state = state;
        // A zombie has no mount namespace or root any more: it is named a zombie all the same.
        t.mnt.reset();
        t.root.reset();
        EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), ESRCH, "has exited (a zombie)"));
    }
}

TEST(CheckProcess, PnsdAndItsHolders) {
    EXPECT_TRUE(
        FailsWith(check_process(process_of(0, 0, kPnsd), client(0)), EPERM, "is pnsd itself"));
    JoinTarget holder = process_of(kAlice);
    holder.ppid = kPnsd;
    EXPECT_TRUE(FailsWith(check_process(holder, client(0)), EPERM, "one of pnsd's helpers"));
}

TEST(CheckProcess, AUserMovesOnlyProcessesWhoseEveryIdIsTheirs) {
    EXPECT_TRUE(FailsWith(check_process(process_of(kBob), client(kAlice)), EACCES,
                          "4242 (sh) belongs to uid 1001; you may move only your own processes"));
    EXPECT_TRUE(FailsWith(check_process(process_of(0), client(kAlice)), EACCES, "uid 0"));
    for (std::size_t i = 0; i < 4; ++i) {
        JoinTarget t = process_of(kAlice);
        t.identity.uids[i] = kBob;
        EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EACCES, "only your own")) << i;
        t = process_of(kAlice);
        t.identity.gids[i] = 5;
        EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EACCES, "only your own")) << i;
    }
    // The caller's gid counts too: the same uid running with another group may not.
    EXPECT_TRUE(FailsWith(check_process(process_of(kAlice), client(kAlice, 5)), EACCES));
    // Detach follows the same rule.
    EXPECT_TRUE(FailsWith(check_process(process_of(kBob), client(kAlice, kUsers, Purpose::kDetach)),
                          EACCES));
}

TEST(CheckProcess, NotDumpableOnlyByRoot) {
    JoinTarget t = process_of(kAlice);
    t.identity.proc_uid = 0;  // /proc/PID is root's once it is not dumpable
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EACCES,
                          "is not dumpable (it changed its privileges); only root may move it"));
    EXPECT_TRUE(Succeeds(check_process(t, client(0))));
}

TEST(CheckProcess, TracedByAnotherTracerIsNamed) {
    JoinTarget t = process_of(kAlice);
    t.tracer = 777;
    t.tracer_name = "gdb";
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EBUSY,
                          "4242 (sh) is traced by 777 (gdb); pns cannot move it while it is"));
    t.tracer_name.reset();
    auto st = check_process(t, client(0));
    EXPECT_TRUE(FailsWith(st, EBUSY, "is traced by 777; pns cannot"));
    // pnsd's own tracing (a supervision) is not another tracer's: detach lets it go.
    t.traced_by_pnsd = true;
    EXPECT_TRUE(Succeeds(check_process(t, client(kAlice, kUsers, Purpose::kDetach))));
}

TEST(CheckProcess, SeccompFilter) {
    JoinTarget t = process_of(kAlice);
    t.seccomp = 2;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM, "runs under a seccomp filter"));
}

TEST(CheckProcess, AnotherPidNamespace) {
    JoinTarget t = process_of(kAlice);
    t.pid_ns = kHostPidNs + 1;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM,
                          "is in another pid namespace (a container?)"));
    // pnsd's own could not be read: not the same.
    t = process_of(kAlice);
    t.pnsd_pid_ns.reset();
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM, "another pid namespace"));
}

TEST(CheckProcess, Chrooted) {
    JoinTarget t = process_of(kAlice);
    t.root = "/srv/jail";
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM, "is chrooted (to '/srv/jail')"));
}

TEST(CheckProcess, SeveralUserIdsOnlyForRoot) {
    JoinTarget t = process_of(kAlice);
    t.identity.uids[2] = kBob;
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EPERM, "has several user ids"));
    // uid 0 among them: a root process, joined to root's namespaces only.
    t.identity.uids[2] = 0;
    EXPECT_TRUE(Succeeds(check_process(t, client(0))));
}

TEST(CheckProcess, NonRootHoldingCapabilities) {
    JoinTarget t = process_of(kAlice);
    t.identity.cap_permitted = 1ull << 10;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM,
                          "holds capabilities (CapPrm 0000000000000400)"));
    t = process_of(kAlice);
    t.identity.cap_ambient = 1ull << 10;
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EPERM, "holds capabilities"));
    // Root's are root's: it keeps them in a primary view.
    EXPECT_TRUE(Succeeds(check_process(process_of(0), client(0))));
}

TEST(CheckProcess, WhatCouldNotBeReadIsRefusedWithWhy) {
    JoinTarget t;
    t.pid = 4242;
    t.unreadable = Error{EIO, "read /proc/4242/stat: garbled"};
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), EIO, "garbled"));
    t.unreadable.reset();  // nothing read, nothing said: gone
    EXPECT_TRUE(FailsWith(check_process(t, client(0)), ESRCH, "no process 4242"));
    t = process_of(kAlice);
    t.unreadable = Error{ESRCH, "no process 4242"};  // /proc/PID/status or the identity
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), ESRCH, "no process 4242"));
}

TEST(CheckProcess, WhatCouldNotBeReadIsAProcessThatIsGone) {
    auto gone = [](void (*spoil)(JoinTarget&)) {
        JoinTarget t = process_of(kAlice);
        spoil(t);
        return check_process(t, client(kAlice));
    };
    EXPECT_TRUE(FailsWith(gone([](JoinTarget& t) { t.pid_ns.reset(); }), ESRCH, "no process 4242"));
    EXPECT_TRUE(FailsWith(gone([](JoinTarget& t) { t.root.reset(); }), ESRCH, "no process 4242"));
    EXPECT_TRUE(FailsWith(gone([](JoinTarget& t) { t.mnt.reset(); }), ESRCH, "no process 4242"));
    EXPECT_TRUE(FailsWith(gone([](JoinTarget& t) { t.alive = false; }), ESRCH, "no process 4242"));
}

TEST(CheckProcess, RefusalsComeInTheirOrder) {
    // Not the caller's and chrooted: the caller's right is decided first.
    JoinTarget t = process_of(kBob);
    t.root = "/jail";
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EACCES));
    // A refusal is given even if the process exited meanwhile.
    t = process_of(kAlice);
    t.seccomp = 2;
    t.alive = false;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EPERM, "seccomp"));
}

TEST(CheckProcess, AnAttachOfAProcessBeingJoinedIsBusy) {
    for (const char* state : {"pending", "held", "supervised"}) {
        JoinTarget t = process_of(kAlice);
        t.record = state;
        EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EBUSY,
                              "4242 (sh) is being joined already (" + std::string(state) +
                                  "); 'pnsctl detach' lets it go"));
        // Detach is how it is let go; a policy merges its join with the one under way.
        EXPECT_TRUE(Succeeds(check_process(t, client(kAlice, kUsers, Purpose::kDetach))));
        EXPECT_TRUE(Succeeds(check_process(t, JoinCaller{.purpose = Purpose::kPolicy})));
    }
    JoinTarget t = process_of(kAlice);
    t.traced_by_pnsd = true;
    EXPECT_TRUE(FailsWith(check_process(t, client(kAlice)), EBUSY, "(traced by pnsd)"));
    t = process_of(kAlice);
    t.record = "member";
    EXPECT_TRUE(Succeeds(check_process(t, client(kAlice))));
}

// --- attach and run ---

TEST(CheckJoin, RootProcessToThePrimary) {
    auto plan = check_join(process_of(0), owned_by(0, "sys"), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kPrimary);
    EXPECT_EQ(plan->uid, 0u);
    // A process with uid 0 among its ids is a root process (set-uid root).
    JoinTarget setuid = process_of(kAlice);
    setuid.identity.uids[1] = 0;
    plan = check_join(setuid, owned_by(0, "sys"), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kPrimary);
}

TEST(CheckJoin, UserProcessToItsOwnSatellite) {
    for (uid_t caller : {kAlice, uid_t{0}}) {
        auto plan = check_join(process_of(kAlice), owned_by(kAlice), client(caller));
        ASSERT_TRUE(Succeeds(plan)) << caller;
        EXPECT_EQ(plan->kind, Kind::kSatellite);
        EXPECT_EQ(plan->uid, kAlice);
        EXPECT_EQ(plan->gid, kUsers);
    }
    // Root may move a user's process into root's namespace: the satellite of its uid.
    auto plan = check_join(process_of(kAlice), owned_by(0, "sys"), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kSatellite);
    EXPECT_EQ(plan->uid, kAlice);
}

TEST(CheckJoin, AlreadyAMember) {
    JoinTarget t = process_of(kAlice);
    t.view = ViewPlace{"dev", kAlice};
    t.identity.user_ns = kSatelliteUserNs;
    t.user_view = ViewPlace{"dev", kAlice};
    auto plan = check_join(t, owned_by(kAlice), client(kAlice));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kAlready);

    JoinTarget r = process_of(0);
    r.view = ViewPlace{"sys", 0};
    plan = check_join(r, owned_by(0, "sys"), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kAlready);
    // In the primary of another namespace: it moves.
    plan = check_join(r, owned_by(0, "other"), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kPrimary);
}

TEST(CheckJoin, OnlyTheOwnerAndRootMoveProcessesIntoANamespace) {
    EXPECT_TRUE(FailsWith(check_join(process_of(kAlice), owned_by(kBob), client(kAlice)), EACCES,
                          "namespace 'dev' belongs to uid 1001; only its owner and root move "
                          "processes into it"));
    EXPECT_TRUE(FailsWith(check_join(process_of(kAlice), owned_by(0), client(kAlice)), EACCES));
    // The process's refusals come first.
    EXPECT_TRUE(FailsWith(check_join(process_of(kBob), owned_by(kBob), client(kAlice)), EACCES,
                          "you may move only your own processes"));
}

TEST(CheckJoin, RootProcessesJoinOnlyRootsNamespaces) {
    EXPECT_TRUE(FailsWith(check_join(process_of(0), owned_by(kAlice), client(0)), EPERM,
                          "4242 (sh) runs as root; root processes join only namespaces owned by "
                          "root, and 'dev' belongs to uid 1000"));
    JoinTarget setuid = process_of(kAlice);
    setuid.identity.uids[3] = 0;
    EXPECT_TRUE(FailsWith(check_join(setuid, owned_by(kAlice), client(0)), EPERM, "runs as root"));
}

TEST(CheckJoin, AUserNamespacePnsDidNotMake) {
    JoinTarget t = process_of(kAlice);
    t.identity.user_ns = 4026533333;
    EXPECT_TRUE(FailsWith(check_join(t, owned_by(kAlice), client(kAlice)), EPERM,
                          "4242 (sh) is in a user namespace pns did not make"));
    // pnsd's own could not be read: nothing to compare with, the tracer decides at the stop.
    t.pnsd_user_ns.reset();
    EXPECT_TRUE(Succeeds(check_join(t, owned_by(kAlice), client(kAlice))));
}

TEST(CheckJoin, ASatelliteMemberStaysInItsNamespace) {
    JoinTarget t = process_of(kAlice);
    t.identity.user_ns = kSatelliteUserNs;
    t.user_view = ViewPlace{"dev", kAlice};
    t.view = ViewPlace{"dev", kAlice};
    EXPECT_TRUE(FailsWith(check_join(t, owned_by(kAlice, "other"), client(kAlice)), EPERM,
                          "4242 (sh) is in the view of 'dev' for uid 1000, a user namespace of "
                          "its own, which the kernel lets no process leave; start it anew with "
                          "'pnsctl run --ns other -- ...'"));
    // Back into its own satellite after it entered another mount namespace: allowed.
    t.view.reset();
    auto plan = check_join(t, owned_by(kAlice), client(kAlice));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kSatellite);
    // A satellite of the same name for another uid is another user namespace.
    t.user_view = ViewPlace{"dev", kBob};
    EXPECT_TRUE(FailsWith(check_join(t, owned_by(kAlice), client(0)), EPERM, "for uid 1001"));
}

TEST(CheckJoin, ItsUsersPrimaryGroupOnly) {
    JoinTarget t = process_of(kAlice, 5);
    EXPECT_TRUE(FailsWith(check_join(t, owned_by(kAlice), client(kAlice, 5)), EPERM,
                          "4242 (sh) runs with group 5, not its user's primary group 100, the "
                          "only group a view maps"));
    // Root processes join a primary, which maps every group.
    auto plan = check_join(process_of(0, 5), owned_by(0), client(0));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kPrimary);
    // A member already is not refused for its group.
    t.view = ViewPlace{"dev", kAlice};
    plan = check_join(t, owned_by(kAlice), client(kAlice, 5));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kAlready);
}

// --- policy joins ---

TEST(CheckJoin, PolicyJoinByTheOwner) {
    const Namespace alices = owned_by(kAlice, "legacy");
    auto plan = check_join(process_of(kAlice), alices, policy_for(alices));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kSatellite);
    EXPECT_EQ(plan->uid, kAlice);
    EXPECT_EQ(plan->gid, kUsers);
    // Root's namespaces take anyone: root's processes to the primary, others to their satellite.
    const Namespace sys = owned_by(0, "sys");
    plan = check_join(process_of(0), sys, policy_for(sys));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kPrimary);
    plan = check_join(process_of(kBob), sys, policy_for(sys));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kSatellite);
    EXPECT_EQ(plan->uid, kBob);
}

TEST(CheckJoin, PolicyJoinOfAProcessNotTheOwnersLeavesItWhereItIs) {
    const Namespace alices = owned_by(kAlice, "legacy");
    for (uid_t other : {kBob, uid_t{0}}) {
        auto plan = check_join(process_of(other), alices, policy_for(alices));
        ASSERT_TRUE(Succeeds(plan)) << other;
        EXPECT_EQ(plan->kind, Kind::kLeave);
        EXPECT_TRUE(Contains(plan->why, "a policy joins only processes its owner could attach"));
    }
}

TEST(CheckJoin, PolicyJoinOfTheOwnersProcessThatCannotJoinIsRefused) {
    const Namespace alices = owned_by(kAlice, "legacy");
    // Not as a join needs it: refused (a held one is killed), not left alone.
    EXPECT_TRUE(FailsWith(check_join(process_of(kAlice, 5), alices, policy_for(alices)), EACCES,
                          "it runs with group 5, not 100"));
    JoinTarget t = process_of(kAlice);
    t.identity.proc_uid = 0;
    EXPECT_TRUE(FailsWith(check_join(t, alices, policy_for(alices)), EACCES, "not dumpable"));
    // In root's namespace, a user's process outside its primary group.
    const Namespace sys = owned_by(0, "sys");
    EXPECT_TRUE(FailsWith(check_join(process_of(kBob, 5), sys, policy_for(sys)), EPERM,
                          "it does not run with its user's primary group"));
    // The process's own refusals hold for policies too.
    t = process_of(kAlice);
    t.seccomp = 2;
    EXPECT_TRUE(FailsWith(check_join(t, alices, policy_for(alices)), EPERM, "seccomp"));
}

TEST(CheckJoin, PolicyJoinOfAMemberAlready) {
    const Namespace alices = owned_by(kAlice, "legacy");
    JoinTarget t = process_of(kAlice);
    t.view = ViewPlace{"legacy", kAlice};
    auto plan = check_join(t, alices, policy_for(alices));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kAlready);
    // A policy join of it under way has not let it go yet: this one joins it again, and the
    // tracer merges the two.
    t.policy_join_under_way = true;
    plan = check_join(t, alices, policy_for(alices));
    ASSERT_TRUE(Succeeds(plan));
    EXPECT_EQ(plan->kind, Kind::kSatellite);
}

TEST(Describe, NamesThePrimaryOrTheSatellite) {
    EXPECT_EQ(describe({"dev", 0}), "the view of 'dev'");
    EXPECT_EQ(describe({"dev", kAlice}), "the view of 'dev' for uid 1000");
}

}  // namespace
}  // namespace pns::agent::join
