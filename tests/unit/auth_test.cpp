// Authorization rules, from the caller's credentials and the namespace alone.
#include <gtest/gtest.h>

#include "agent/namespaces/auth.hpp"
#include "test_util.hpp"

namespace pns::agent::auth {
namespace {

using test::Contains;
using test::FailsWith;
using test::Succeeds;

constexpr uid_t kAlice = 1000;
constexpr uid_t kBob = 1001;

Caller as(uid_t uid, gid_t gid = 100) {
    return Caller{uid, gid, 4242, nullptr};
}

Namespace owned_by(uid_t owner, std::string name = "dev") {
    Namespace ns;
    ns.name = std::move(name);
    ns.owner = owner;
    ns.generation = 1;
    return ns;
}

TEST(MayCreate, RootForAnyone) {
    for (uid_t owner : {uid_t{0}, kAlice, kBob, uid_t{65534}, uid_t{4294967294u}}) {
        EXPECT_TRUE(Succeeds(may_create(as(0), owner, 0))) << owner;
        // Root has no quota, neither for itself nor for whom it creates.
        EXPECT_TRUE(Succeeds(may_create(as(0), owner, kMaxNamespacesPerUser))) << owner;
        EXPECT_TRUE(Succeeds(may_create(as(0), owner, 1'000'000))) << owner;
    }
}

TEST(MayCreate, UserForSelf) {
    EXPECT_TRUE(Succeeds(may_create(as(kAlice), kAlice, 0)));
    EXPECT_TRUE(Succeeds(may_create(as(kAlice), kAlice, kMaxNamespacesPerUser - 1)));
}

TEST(MayCreate, UserForOtherIsDenied) {
    auto st = may_create(as(kAlice), kBob, 0);
    EXPECT_TRUE(FailsWith(st, EACCES, "only root"));
    EXPECT_TRUE(Contains(st.error().message, "uid 1000"));
    EXPECT_TRUE(Contains(st.error().message, "uid 1001"));
    EXPECT_TRUE(FailsWith(may_create(as(kAlice), 0, 0), EACCES));
    // The gid is not an identity: a user in root's group is still not root.
    EXPECT_TRUE(FailsWith(may_create(as(kAlice, 0), kBob, 0), EACCES));
    // Denial comes before the quota.
    EXPECT_TRUE(FailsWith(may_create(as(kAlice), kBob, kMaxNamespacesPerUser), EACCES));
}

TEST(MayCreate, Quota) {
    auto st = may_create(as(kAlice), kAlice, kMaxNamespacesPerUser);
    EXPECT_TRUE(FailsWith(st, EDQUOT, "already owns 256 namespaces"));
    EXPECT_TRUE(FailsWith(may_create(as(kAlice), kAlice, kMaxNamespacesPerUser + 1), EDQUOT));
    EXPECT_TRUE(FailsWith(may_create(as(kBob), kBob, 100000), EDQUOT));
}

TEST(MayEdit, OwnerAndRootOnly) {
    Namespace ns = owned_by(kAlice);
    EXPECT_TRUE(Succeeds(may_edit(as(kAlice), ns)));
    EXPECT_TRUE(Succeeds(may_edit(as(0), ns)));
    auto st = may_edit(as(kBob), ns);
    EXPECT_TRUE(FailsWith(st, EACCES, "namespace 'dev' is owned by uid 1000"));
    EXPECT_TRUE(FailsWith(may_edit(as(kBob, 0), ns), EACCES));
    EXPECT_TRUE(FailsWith(may_edit(as(65534), ns), EACCES));

    Namespace root_ns = owned_by(0, "sys");
    EXPECT_TRUE(Succeeds(may_edit(as(0), root_ns)));
    EXPECT_TRUE(FailsWith(may_edit(as(kAlice), root_ns), EACCES, "'sys'"));
    // Locking restricts the members, not the owner.
    ns.locked = true;
    EXPECT_TRUE(Succeeds(may_edit(as(kAlice), ns)));
    EXPECT_TRUE(FailsWith(may_edit(as(kBob), ns), EACCES));
}

TEST(MaySeeEntries, OwnerAndRootOnly) {
    Namespace ns = owned_by(kAlice);
    EXPECT_TRUE(may_see_entries(as(kAlice), ns));
    EXPECT_TRUE(may_see_entries(as(0), ns));
    EXPECT_FALSE(may_see_entries(as(kBob), ns));
    EXPECT_FALSE(may_see_entries(as(kBob, 0), ns));
    EXPECT_FALSE(may_see_entries(as(kAlice), owned_by(0)));
}

TEST(MayReadTable, FollowsMaySeeEntries) {
    for (uid_t owner : {uid_t{0}, kAlice, kBob}) {
        Namespace ns = owned_by(owner, "ns-" + std::to_string(owner));
        for (uid_t caller : {uid_t{0}, kAlice, kBob, uid_t{65534}}) {
            auto st = may_read_table(as(caller), ns);
            EXPECT_EQ(st.ok(), may_see_entries(as(caller), ns)) << caller << " on " << owner;
            EXPECT_EQ(st.ok(), caller == 0 || caller == owner);
            if (!st) {
                EXPECT_EQ(st.error().code, EACCES);
                EXPECT_TRUE(Contains(st.error().message, "read its entries"));
                EXPECT_TRUE(Contains(st.error().message, "'" + ns.name + "'"));
            }
        }
    }
}

ProcessIds process(uid_t uid, gid_t gid, bool dumpable = true) {
    ProcessIds p;
    p.uids.fill(uid);
    p.gids.fill(gid);
    p.dumpable = dumpable;
    return p;
}

TEST(MayJoinByPolicy, RootsNamespacesTakeAnyone) {
    for (const auto& p : {process(0, 0), process(kAlice, 100), process(kBob, 7, false)})
        EXPECT_TRUE(Succeeds(may_join_by_policy(owned_by(0), p, 0)));
    ProcessIds mixed = process(kAlice, 100);
    mixed.uids[1] = 0;  // set-uid root
    EXPECT_TRUE(Succeeds(may_join_by_policy(owned_by(0), mixed, 0)));
}

TEST(MayJoinByPolicy, AUsersNamespaceTakesOnlyWhatItsOwnerCouldAttach) {
    const Namespace alices = owned_by(kAlice, "legacy");
    EXPECT_TRUE(Succeeds(may_join_by_policy(alices, process(kAlice, 100), 100)));
    // Another user's process: the case of a policy left behind for a name someone reused.
    EXPECT_TRUE(FailsWith(may_join_by_policy(alices, process(kBob, 100), 100), EPERM,
                          "it belongs to uid 1001; namespace 'legacy' belongs to uid 1000"));
    EXPECT_TRUE(FailsWith(may_join_by_policy(alices, process(0, 0), 100), EPERM, "runs as root"));
    // One id not the owner's is enough: set-uid (euid), a saved id, the file-system id.
    for (std::size_t i = 0; i < 4; ++i) {
        ProcessIds p = process(kAlice, 100);
        p.uids[i] = kBob;
        EXPECT_TRUE(FailsWith(may_join_by_policy(alices, p, 100), EPERM, "uid 1001")) << i;
        p.uids[i] = 0;
        EXPECT_TRUE(FailsWith(may_join_by_policy(alices, p, 100), EPERM, "runs as root")) << i;
        // The owner's own process, not as a join needs it: EACCES (a join that cannot be made),
        // not EPERM (not the owner's at all).
        p = process(kAlice, 100);
        p.gids[i] = 5;
        EXPECT_TRUE(FailsWith(may_join_by_policy(alices, p, 100), EACCES, "group 5, not 100")) << i;
    }
    EXPECT_TRUE(FailsWith(may_join_by_policy(alices, process(kAlice, 100, false), 100), EACCES,
                          "not dumpable"));
    // Another user's process is not the owner's, whatever its group.
    EXPECT_TRUE(FailsWith(may_join_by_policy(alices, process(kBob, 5, false), 100), EPERM));
}

TEST(Quotas, HoldingsCountEntriesAndTmpfs) {
    Table t;
    t.entries.push_back(Entry{EntryKind::kTmpfs, UnionMode::kReplace, false, "", "/a"});
    t.entries.push_back(Entry{EntryKind::kHide, UnionMode::kReplace, false, "", "/b"});
    t.entries.push_back(Entry{EntryKind::kTmpfs, UnionMode::kReplace, false, "", "/c"});
    Holdings h = holdings_of(t);
    EXPECT_EQ(h.entries, 3u);
    EXPECT_EQ(h.tmpfs, 2u);
    EXPECT_EQ(h.mounts, 0u);
}

TEST(Quotas, OverAllOfAUsersNamespaces) {
    Quotas q;
    Holdings others{q.entries - 10, q.tmpfs - 1, q.mounts - 100};
    EXPECT_TRUE(Succeeds(within_quota(as(kAlice), kAlice, others, {10, 1, 100}, q)));
    EXPECT_TRUE(FailsWith(within_quota(as(kAlice), kAlice, others, {11, 0, 0}, q), EDQUOT,
                          "at most 65536 are allowed"));
    EXPECT_TRUE(
        FailsWith(within_quota(as(kAlice), kAlice, others, {0, 2, 0}, q), EDQUOT, "tmpfs entries"));
    EXPECT_TRUE(
        FailsWith(within_quota(as(kAlice), kAlice, others, {0, 0, 101}, q), EDQUOT, "mounts"));
    // The quotas are pnsd's options.
    Quotas small{10, 1, 10};
    EXPECT_TRUE(FailsWith(within_quota(as(kAlice), kAlice, {}, {11, 0, 0}, small), EDQUOT,
                          "at most 10 are allowed"));
}

TEST(Quotas, RootsChangesAreNotBounded) {
    Quotas q;
    Holdings huge{10 * q.entries, 10 * q.tmpfs, 10 * q.mounts};
    EXPECT_TRUE(Succeeds(within_quota(as(0), kAlice, huge, huge, q)));
    EXPECT_TRUE(Succeeds(within_quota(as(0), 0, huge, huge, q)));
}

}  // namespace
}  // namespace pns::agent::auth
