// Attacks on a locked view with the LSM guard (bpf/guard.bpf.c), run in the VM: ways around the
// view's root that a descriptor or /proc offers. Each attack runs against a locked namespace
// and, as its control, the same steps against an unlocked one with the same table, where they
// do reach the hidden file: so a test cannot pass by everything failing.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/priv/harness.hpp"

namespace pns::test {
namespace {

using json = nlohmann::json;

class LockedAttack : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        auto guard = ctl_json(pnsd(), {"status"})["guard"];
        ASSERT_EQ(guard["state"], "active") << "this test needs the LSM guard: " << guard.dump();
        hidden_ = make_dir(dir_.path() + "/hidden");
        make_file(hidden_ + "/secret", "secret\n");
        probe_ = dir_.path() + "/probe";
        std::filesystem::copy_file(PNS_LOCKED_PROBE_PATH, probe_);
        chmod(probe_.c_str(), 0755);
        // Where the attacker's processes, inside and out, meet.
        meet_ = make_dir(dir_.path() + "/meet");
        ASSERT_EQ(chown(meet_.c_str(), kOtherUid, kOtherGid), 0);
    }

    // `name`, owned by `uid`, hiding the directory with the secret.
    void make_ns(const std::string& name, bool locked, uid_t uid) {
        std::vector<std::string> create = {"ns", "create", name};
        if (locked) create.push_back("--locked");
        RunOptions as;
        if (uid != 0) as.uid = uid;
        ok(create, as);
        ok({"hide", "--ns", name, hidden_}, as);
        // The table does what it says: inside, the secret is not there.
        auto r = ctl({"run", "--ns", name, "--", probe_, "read", hidden_ + "/secret"}, as);
        ASSERT_EQ(r.out, "errno 2 (ENOENT) open\n") << r.err;
    }

    int refusals() { return ctl_json(pnsd(), {"status"})["guard"]["refusals"].get<int>(); }

    std::string hidden_, probe_, meet_;
};

// A process of the same user outside the view hands a member an O_PATH descriptor of the
// hidden directory over a Unix socket.
TEST_F(LockedAttack, ADescriptorPassedInFromOutsideIsNotReceived) {
    make_ns("lk", true, kOtherUid);
    make_ns("open", false, kOtherUid);
    for (const std::string ns : {"lk", "open"}) {
        const std::string socket = meet_ + "/" + ns + ".sock";
        Proc sender({probe_, "send-fd", socket, hidden_}, kOtherUid);
        ASSERT_EQ(sender.line(), "ready");
        int before = refusals();
        auto r = ctl({"run", "--ns", ns, "--", probe_, "recv-fd", socket, "secret"},
                     {.uid = kOtherUid});
        EXPECT_EQ(sender.line(), "sent");
        if (ns == "lk") {
            EXPECT_EQ(r.out, "no descriptor (MSG_CTRUNC)\n") << r.err;
            EXPECT_GT(refusals(), before);
        } else {
            EXPECT_EQ(r.out, "secret\n") << "control: " << r.err;
        }
    }
}

// A process that held a descriptor of the hidden directory before it was moved into the view.
TEST_F(LockedAttack, ADescriptorHeldFromBeforeTheJoinOpensNothingOutside) {
    make_ns("lk", true, kOtherUid);
    make_ns("open", false, kOtherUid);
    for (const std::string ns : {"lk", "open"}) {
        Proc holder({probe_, "hold", hidden_, "secret"}, kOtherUid);
        ASSERT_EQ(holder.line(), "ready");
        ok({"attach", "--ns", ns, std::to_string(holder.pid())}, {.uid = kOtherUid});
        holder.send("go");
        EXPECT_EQ(holder.line(), ns == "lk" ? "errno 13 (EACCES) open" : "secret") << ns;
        EXPECT_EQ(holder.wait(), 0);
    }
}

// A root member reads the hidden file through /proc/PID/root of a process outside the view.
TEST_F(LockedAttack, ARootMemberCannotReachOutsideThroughProc) {
    make_ns("lk", true, 0);
    make_ns("open", false, 0);
    Proc outside({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(outside.pid(), "sleep"));
    const std::string through = "/proc/" + std::to_string(outside.pid()) + "/root" + hidden_;
    auto locked = ctl({"run", "--ns", "lk", "--", probe_, "read", through + "/secret"});
    EXPECT_EQ(locked.out, "errno 13 (EACCES) open\n") << locked.err;
    auto control = ctl({"run", "--ns", "open", "--", probe_, "read", through + "/secret"});
    EXPECT_EQ(control.out, "secret\n") << control.err;
    // Nor a namespace of a process outside (to setns into: that is refused as well).
    auto ns = ctl({"run", "--ns", "lk", "--", probe_, "read",
                   "/proc/" + std::to_string(outside.pid()) + "/ns/mnt"});
    EXPECT_EQ(ns.out, "errno 13 (EACCES) open\n") << ns.err;
    // Its own processes it still reaches (the view is its root).
    auto self = ctl({"run", "--ns", "lk", "--", probe_, "read", "/proc/self/root/etc/hostname"});
    EXPECT_EQ(self.out.find("errno"), std::string::npos) << self.out;
}

}  // namespace
}  // namespace pns::test
