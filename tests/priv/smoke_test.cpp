#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {

class Smoke : public PrivTest {};

TEST_F(Smoke, CreateAndList) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    auto r = pnsd.ctl({"ns", "create", "dev"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = pnsd.ctl({"ns", "ls"}, {.uid = kOtherUid});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("dev"), std::string::npos);
}

// The host prerequisites of the tracker, in one place: where one is missing, this test fails
// with it and the tests that need it skip, saying so.
TEST(Host, HasWhatTheTrackerNeeds) {
    EXPECT_EQ(missing_host_prerequisite(), "");
}

}  // namespace pns::test
