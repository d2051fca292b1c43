// What a join is authorized for (agent/proc.hpp, proc::Identity) and how a change of it is
// told: the comparison pnsd makes at the ptrace stop before it joins a process.
#include <gtest/gtest.h>

#include "agent/proc.hpp"

namespace pns::agent::proc {
namespace {

Identity user(uid_t uid) {
    Identity id;
    id.uids = {uid, uid, uid, uid};
    id.gids = {uid, uid, uid, uid};
    id.proc_uid = uid;
    id.proc_gid = uid;
    id.cap_bounding = 0x1ffffffffff;
    id.user_ns = 4026531837;
    id.exe_dev = 2049;
    id.exe_ino = 100;
    return id;
}

TEST(Identity, AnExecThatChangesNothingOfItIsTheSameIdentity) {
    Identity was = user(4242), now = user(4242);
    now.exe_ino = 200;  // another program
    EXPECT_TRUE(was == now);
    EXPECT_EQ(identity_change(was, now), "");
}

TEST(Identity, ASetUidRootExecIsToldByWhatChanged) {
    Identity was = user(4242), now = user(4242);
    now.uids = {4242, 0, 0, 0};
    now.cap_permitted = now.cap_effective = 0x1ffffffffff;
    now.proc_uid = 0;  // follows the euid: not a change of dumpability
    EXPECT_FALSE(was == now);
    EXPECT_EQ(identity_change(was, now),
              "euid 4242 -> 0, saved uid 4242 -> 0, fs uid 4242 -> 0, CapPrm 0 -> 1ffffffffff, "
              "CapEff 0 -> 1ffffffffff");
}

TEST(Identity, SetGidGroupsCapabilitiesDumpabilityAndUserNamespaceCount) {
    Identity was = user(4242);
    Identity sgid = was;
    sgid.gids[1] = sgid.gids[2] = sgid.gids[3] = 42;
    sgid.proc_gid = 42;
    EXPECT_EQ(identity_change(was, sgid),
              "egid 4242 -> 42, saved gid 4242 -> 42, fs gid 4242 -> 42");
    Identity groups = was;
    groups.groups = {27};
    EXPECT_EQ(identity_change(was, groups), "groups [] -> [27]");
    Identity ambient = was;
    ambient.cap_ambient = 0x400;
    EXPECT_EQ(identity_change(was, ambient), "CapAmb 0 -> 400");
    Identity hidden = was;  // exec of a program it may run but not read
    hidden.proc_uid = hidden.proc_gid = 0;
    EXPECT_EQ(identity_change(was, hidden), "no longer dumpable");
    Identity nested = was;
    nested.user_ns = 4026532200;
    EXPECT_EQ(identity_change(was, nested), "another user namespace");
}

}  // namespace
}  // namespace pns::agent::proc
