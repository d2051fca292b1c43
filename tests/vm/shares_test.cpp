// The LSM guard's maps are shared by every namespace (issue 11, case 6): one user filling them
// switched off `deny` for everyone, and a failed apply left them full. Now each user has a
// share, root keeps a reserve, and a change the guard cannot take leaves the maps as they
// were. In the VM, where the guard loads; each refusal is checked with its control.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "agent/bpf/guard.hpp"
#include "tests/priv/harness.hpp"

namespace pns::test {
namespace {

using json = nlohmann::json;
using agent::Guard;

class GuardShares : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        auto guard = guard_status();
        ASSERT_EQ(guard["state"], "active") << "this test needs the LSM guard: " << guard.dump();
    }
    json guard_status() { return ctl_json(pnsd(), {"status"})["guard"]; }
    static RunOptions as_user() {
        RunOptions o;
        o.uid = kOtherUid;
        o.gid = kOtherGid;
        o.timeout = std::chrono::seconds(600);
        return o;
    }
};

TEST_F(GuardShares, OneUsersDenyEntriesAreBoundedAndAFailedApplyChangesNothing) {
    // Root's rule, which no user may switch off.
    std::string root_dir = make_dir(dir_.path() + "/rootdata");
    make_file(root_dir + "/secret", "secret\n");
    ok({"ns", "create", "roots"});
    ok({"deny", "--ns", "roots", root_dir + "/secret"});
    auto root_denied = [&] {
        auto r = ctl({"run", "--ns", "roots", "--", "/bin/cat", root_dir + "/secret"});
        return r.exit_code != 0 && r.err.find("Permission denied") != std::string::npos;
    };
    ASSERT_TRUE(root_denied());

    // The user's files: one more than its share.
    const std::size_t share = Guard::kMaxDeniedPerUser;
    std::string mine = make_dir(dir_.path() + "/mine");
    ASSERT_EQ(chown(mine.c_str(), kOtherUid, kOtherGid), 0);
    std::string all, few;
    for (std::size_t i = 0; i <= share; ++i) {
        std::string file = make_file(mine + "/f" + std::to_string(i), "x\n");
        ASSERT_EQ(chown(file.c_str(), kOtherUid, kOtherGid), 0);
        all += "deny " + file + "\n";
        if (i < 10) few += "deny " + file + "\n";
    }
    // Control: a few are taken.
    ok({"ns", "create", "theirs", "--from", "-"}, [&] {
        RunOptions o = as_user();
        o.stdin_data = few;
        return o;
    }());
    const auto before = guard_status()["denied_files"].get<std::size_t>();
    EXPECT_EQ(before, 11u);

    // The attack: more than the share, in one apply.
    RunOptions o = as_user();
    o.stdin_data = all;
    auto r = ctl({"apply", "--ns", "theirs", "-"}, o);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("at most " + std::to_string(share)), std::string::npos) << r.err;
    // Nothing of it is left in the maps, the table is as it was, root's rule holds.
    EXPECT_EQ(guard_status()["denied_files"].get<std::size_t>(), before);
    EXPECT_EQ(export_of(pnsd(), "theirs"), few);
    EXPECT_TRUE(root_denied());

    // Control: exactly the share is taken.
    o.stdin_data = all.substr(0, all.rfind("deny "));
    auto fits = ctl({"apply", "--ns", "theirs", "-"}, o);
    EXPECT_EQ(fits.exit_code, 0) << fits.err;
    EXPECT_EQ(guard_status()["denied_files"].get<std::size_t>(), 1 + share);
    EXPECT_TRUE(root_denied());
}

}  // namespace
}  // namespace pns::test
