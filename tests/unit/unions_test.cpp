// Whose rights a writable union copies files up with (agent/views/unions.hpp, writable_mounter), and
// the gid_map of the user namespace it is made in.
#include <gtest/gtest.h>

#include "agent/views/unions.hpp"

namespace pns::agent::unions {
namespace {

struct stat directory(uid_t owner, mode_t mode) {
    struct stat st {};
    st.st_uid = owner;
    st.st_gid = owner;
    st.st_mode = S_IFDIR | mode;
    return st;
}

// The user database, as the test wants it: uid 4343's primary group is 100.
Credentials user(uid_t uid) {
    return Credentials{uid, uid == 4343 ? 100u : uid, {uid == 4343 ? 100u : uid, 27}};
}

const Credentials kAlice{4242, 4242, {4242, 24}};
const Credentials kRoot{0, 0, {}};

TEST(WritableMounter, AnOrdinaryUsersUnionIsTheirsWhereverSrcIs) {
    for (const auto& src :
         {directory(4242, 0755), directory(0, 0755), directory(0, 01777), directory(4343, 0777)}) {
        auto m = writable_mounter(kAlice, src, user);
        ASSERT_TRUE(m) << m.error().message;
        EXPECT_EQ(m->uid, 4242u);
        EXPECT_EQ(m->gid, 4242u);
        EXPECT_EQ(m->groups, kAlice.groups);
    }
}

TEST(WritableMounter, RootsUnionIntoADirectoryOnlyRootWritesIsRoots) {
    for (const auto& src :
         {directory(0, 0755), directory(0, 0700), directory(0, 01777), directory(0, 01775)}) {
        auto m = writable_mounter(kRoot, src, user);
        ASSERT_TRUE(m) << m.error().message;
        EXPECT_TRUE(m->is_root());
    }
}

TEST(WritableMounter, RootsUnionIntoAUsersDirectoryIsMadeAsThatUser) {
    auto m = writable_mounter(kRoot, directory(4343, 0700), user);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->uid, 4343u);
    EXPECT_EQ(m->gid, 100u);
    EXPECT_EQ(m->groups, (std::vector<gid_t>{100, 27}));
}

TEST(WritableMounter, RootsUnionIntoARootDirectoryOthersMayWriteIsRefused) {
    for (const auto& src : {directory(0, 0775), directory(0, 0757), directory(0, 0777)}) {
        auto m = writable_mounter(kRoot, src, user);
        ASSERT_FALSE(m);
        EXPECT_EQ(m.error().code, EPERM);
        EXPECT_NE(m.error().message.find("others may write"), std::string::npos);
    }
}

TEST(GidMap, EachGroupMappedToItselfInRuns) {
    EXPECT_EQ(gid_map(4242, {}), "4242 4242 1\n");
    EXPECT_EQ(gid_map(4242, {4242}), "4242 4242 1\n");
    EXPECT_EQ(gid_map(100, {27, 24, 25, 26, 100, 1000}),
              "100 100 1\n"
              "24 24 4\n"
              "1000 1000 1\n");
}

TEST(GidMap, NoMoreThanTheKernelTakes) {
    std::vector<gid_t> many;
    for (gid_t g = 1000000; g < 1000000 + 2000; g += 2) many.push_back(g);  // no runs
    std::string map = gid_map(4242, many);
    EXPECT_LT(map.size(), 4096u);
    EXPECT_LE(std::count(map.begin(), map.end(), '\n'), 340);
    EXPECT_EQ(map.substr(0, 12), "4242 4242 1\n");
    // The primary group is mapped whatever else is: the mounter takes it inside.
    map = gid_map(2000000, many);
    EXPECT_EQ(map.substr(0, 18), "2000000 2000000 1\n");
    EXPECT_LT(map.size(), 4096u);
    EXPECT_EQ(gid_map(101, {100, 101, 102, 5}), "100 100 3\n5 5 1\n");
}

}  // namespace
}  // namespace pns::agent::unions
