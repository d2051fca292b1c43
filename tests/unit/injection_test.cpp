// The injection's steps (agent/join/injection.hpp): which run for root and for a satellite's
// member, with and without a working directory to go back to, with the scratch area on the
// stack or in a page of its own, and what runs after a failure.
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <string>
#include <vector>

#include "agent/join/injection.hpp"

namespace pns::agent::injection {
namespace {

constexpr std::uint64_t kStack = 0x7ffc0000;
constexpr std::uint64_t kPage = 0x7f0000000000;
constexpr long kPidfdInProcess = 5;

// Runs the steps as the tracer does, each call succeeding (a page at kPage, a pidfd 5)
// unless `fail_at` says otherwise; the names of the calls made, in order.
std::vector<std::string> run(State state, Step fail_at = Step::kDone, long error = -EPERM) {
    std::vector<std::string> made;
    while (next(state) != Step::kDone) {
        Call c = call(state);
        std::string label = name(state.step);
        if (state.step == Step::kBset) label += "(" + std::to_string(c.args[1]) + ")";
        made.push_back(label);
        long result = 0;
        if (state.step == fail_at) result = error;
        else if (state.step == Step::kMmap) result = static_cast<long>(kPage);
        else if (state.step == Step::kPidfd) result = kPidfdInProcess;
        on_result(state, result);
        if (made.size() > 100) break;  // a loop would be a bug
    }
    return made;
}

State root_member() {
    State s;
    s.holder = 4242;
    s.ns_flags = CLONE_NEWNS;
    s.scratch = kStack;
    s.scratch_on_stack = true;
    return s;
}

// A member of a satellite: setns into its user namespace grants every capability there, and
// they go back to what the process had (here: a bounding set without capabilities 1 and 3).
State satellite_member() {
    State s = root_member();
    s.ns_flags = CLONE_NEWNS | CLONE_NEWUSER;
    s.restore_caps = true;
    s.last_cap = 4;
    s.bounding = ~0ULL & ~(1ULL << 1) & ~(1ULL << 3);
    return s;
}

using Steps = std::vector<std::string>;

TEST(InjectionSteps, RootWithoutAWorkingDirectoryOnlyEntersTheView) {
    EXPECT_EQ(run(root_member()), (Steps{"pidfd_open", "setns", "close"}));
}

TEST(InjectionSteps, RootGoesBackToItsWorkingDirectory) {
    State s = root_member();
    s.cwd = "/home/ann/src";
    EXPECT_EQ(run(s), (Steps{"pidfd_open", "setns", "close", "chdir"}));
}

TEST(InjectionSteps, ASatelliteMemberDropsWhatItsBoundingSetLackedThenCapsetBeforeChdir) {
    State s = satellite_member();
    s.cwd = "/home/ann";
    EXPECT_EQ(run(s), (Steps{"pidfd_open", "setns", "close", "prctl(PR_CAPBSET_DROP)(1)",
                             "prctl(PR_CAPBSET_DROP)(3)", "capset", "chdir"}));
}

TEST(InjectionSteps, ASatelliteMemberWithAFullBoundingSetOnlyHasItsCapabilitiesSet) {
    State s = satellite_member();
    s.bounding = ~0ULL;
    EXPECT_EQ(run(s), (Steps{"pidfd_open", "setns", "close", "capset"}));
}

TEST(InjectionSteps, WithoutRoomOnTheStackAPageIsMappedFirstAndUnmappedLast) {
    State s = root_member();
    s.scratch = 0;
    s.scratch_on_stack = false;
    s.cwd = "/srv";
    EXPECT_EQ(run(s), (Steps{"mmap", "pidfd_open", "setns", "close", "chdir", "munmap"}));
}

TEST(InjectionSteps, AFailedSetnsStillClosesThePidfdAndUnmapsThePageButChangesNothingElse) {
    State s = satellite_member();
    s.scratch = 0;
    s.scratch_on_stack = false;
    s.cwd = "/srv";
    EXPECT_EQ(run(s, Step::kSetns), (Steps{"mmap", "pidfd_open", "setns", "close", "munmap"}));
}

TEST(InjectionSteps, AFailedPidfdOpenLeavesNothingToClose) {
    EXPECT_EQ(run(root_member(), Step::kPidfd, -ESRCH), (Steps{"pidfd_open"}));
}

TEST(InjectionSteps, AFailedMmapRunsNothing) {
    State s = root_member();
    s.scratch = 0;
    s.scratch_on_stack = false;
    EXPECT_EQ(run(s, Step::kMmap, -ENOMEM), (Steps{"mmap"}));
}

TEST(InjectionSteps, TheCallsTakeTheirArgumentsFromThePlanAndTheProgress) {
    State s = satellite_member();
    s.cwd = "/srv";
    ASSERT_EQ(next(s), Step::kPidfd);
    EXPECT_EQ(call(s).nr, SYS_pidfd_open);
    EXPECT_EQ(call(s).args[0], 4242u);
    on_result(s, kPidfdInProcess);
    ASSERT_EQ(next(s), Step::kSetns);
    EXPECT_EQ(call(s).nr, SYS_setns);
    EXPECT_EQ(call(s).args[0], static_cast<std::uint64_t>(kPidfdInProcess));
    EXPECT_EQ(call(s).args[1], static_cast<std::uint64_t>(CLONE_NEWNS | CLONE_NEWUSER));
    on_result(s, 0);
    ASSERT_EQ(next(s), Step::kClose);
    on_result(s, 0);
    EXPECT_EQ(s.pidfd, -1);
    ASSERT_EQ(next(s), Step::kBset);
    EXPECT_EQ(call(s).args[0], static_cast<std::uint64_t>(PR_CAPBSET_DROP));
    EXPECT_EQ(call(s).args[1], 1u);
    on_result(s, 0);
    ASSERT_EQ(next(s), Step::kBset);
    EXPECT_EQ(call(s).args[1], 3u);
    on_result(s, 0);
    ASSERT_EQ(next(s), Step::kCapset);
    EXPECT_EQ(call(s).args[0], kStack);
    EXPECT_EQ(call(s).args[1], kStack + 8);
    on_result(s, 0);
    ASSERT_EQ(next(s), Step::kChdir);
    EXPECT_EQ(call(s).args[0], kStack + kCwdOffset);
}

TEST(InjectionSteps, AMissingWorkingDirectoryIsAWarningNotAFailure) {
    State s = root_member();
    s.cwd = "/gone";
    s.step = Step::kChdir;
    ASSERT_EQ(next(s), Step::kChdir);
    Outcome out = on_result(s, -ENOENT);
    EXPECT_FALSE(out.error);
    EXPECT_FALSE(s.failed);
    EXPECT_NE(out.warning.find("'/gone' is not there in the view"), std::string::npos)
        << out.warning;
}

TEST(InjectionSteps, SetnsRefusedWithEinvalSaysWhy) {
    State s = root_member();
    s.pidfd = kPidfdInProcess;
    s.step = Step::kSetns;
    Outcome out = on_result(s, -EINVAL);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->code, EINVAL);
    EXPECT_NE(out.error->message.find("shares its file system context"), std::string::npos);
    EXPECT_TRUE(s.failed);
}

TEST(InjectionSteps, TheScratchAreaHoldsCapsetsArgumentsAndTheWorkingDirectory) {
    State s = satellite_member();
    s.cwd = "/home/ann";
    s.cap_inheritable = 0x0000000100000002ULL;
    auto bytes = scratch_bytes(s);
    ASSERT_GE(bytes.size(), kCwdOffset + s.cwd.size() + 1);
    EXPECT_EQ(bytes.size() % 16, 0u);
    EXPECT_EQ(std::string(bytes.data() + kCwdOffset), "/home/ann");
}

}  // namespace
}  // namespace pns::agent::injection
