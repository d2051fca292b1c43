// Policies name namespaces by identity (issue 11, case 2). Root set a policy for namespace
// `legacy` on a cgroup and later removed `legacy`; the attacker (kOtherUid) made a new `legacy`
// whose view shows a file of theirs at a path other programs read, and their library in
// /etc/ld.so.preload; a process of another user (kVictimUid) put in that cgroup joined the
// attacker's view and ran the library as the victim, before and after a pnsd restart. And a
// policy join never compared the process's uid with the namespace's owner.
//
// Each test: the victim's process sees the host's file, runs no library of the attacker's,
// and stays in the host's view (and, held at exec, is let go rather than killed); the control,
// a process of the attacker's own under a policy of the attacker's for their namespace, joins
// it and shows the payload (so the payload works, and the test cannot pass by nothing joining).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/attack/attack.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

class PolicyAttack : public PnsdTest {
  protected:
    void SetUp() override {
        if (auto missing = missing_host_prerequisite(); !missing.empty())
            GTEST_SKIP() << "this host lacks " << missing
                         << " (Host.HasWhatTheTrackerNeeds fails for it)";
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_EQ(ctl_json(pnsd(), {"status"})["tracker"]["state"], "active")
            << pnsd_->log_since_start();
        // Root's cgroup (where root's policy for `legacy` was), and one below it delegated to
        // the attacker (its directory theirs), for the attacker's own policy: the control.
        cgroup_name_ = "pns-test-" + std::filesystem::path(dir_.path()).filename().string();
        cgroup_ = cgroup2_root() + "/" + cgroup_name_;
        ASSERT_EQ(::mkdir(cgroup_.c_str(), 0755), 0) << cgroup_ << ": " << std::strerror(errno);
        attacker_cgroup_ = cgroup_ + "/attacker";
        ASSERT_EQ(::mkdir(attacker_cgroup_.c_str(), 0755), 0);
        ASSERT_EQ(::chown(attacker_cgroup_.c_str(), kOtherUid, kOtherGid), 0);
        target_ = make_file(dir_.path() + "/data/target", "host\n");
        // The attacker's payload, in a directory of theirs that everybody can read.
        const std::string own = make_dir(dir_.path() + "/attacker");
        hostname_ = make_file(own + "/hostname", "attacker\n");
        const std::string library = own + "/libpreload.so";
        std::filesystem::copy_file(PNS_PRELOAD_PATH, library);
        ::chmod(library.c_str(), 0755);
        preload_ = make_file(own + "/ld.so.preload", library + "\n");
        for (const auto& path : {own, hostname_, library, preload_})
            ASSERT_EQ(::chown(path.c_str(), kOtherUid, kOtherGid), 0) << path;
    }

    void TearDown() override {
        if (!cgroup_.empty() && exists(cgroup_)) {
            write_file(cgroup_ + "/cgroup.kill", "1");
            // Child cgroups first, deepest first (a failed test may leave any of them).
            std::vector<std::string> dirs;
            for (const auto& e : std::filesystem::recursive_directory_iterator(cgroup_))
                if (e.is_directory()) dirs.push_back(e.path());
            std::sort(dirs.rbegin(), dirs.rend());
            dirs.push_back(cgroup_);
            for (const auto& dir : dirs)
                for (int i = 0; i < 200 && ::rmdir(dir.c_str()) != 0; ++i) ::usleep(10000);
            EXPECT_FALSE(exists(cgroup_)) << "cgroup left behind";
        }
        PnsdTest::TearDown();
    }

    RunOptions attacker() const { return {.uid = kOtherUid, .gid = kOtherGid}; }

    // The attacker makes namespace `name`: their file at the path the victim reads, their
    // library in /etc/ld.so.preload.
    void attacker_makes(const std::string& name) {
        ok({"ns", "create", name}, attacker());
        ok({"bind", "--ns", name, hostname_, target_}, attacker());
        ok({"bind", "--ns", name, preload_, "/etc/ld.so.preload"}, attacker());
    }

    // A process of `uid` that reads the file the attacker's view replaces, once told to: its
    // exec of cat is then in whatever cgroup it was put in.
    std::unique_ptr<Proc> reader(std::optional<uid_t> uid) {
        auto proc = std::make_unique<Proc>(
            std::vector<std::string>{"/bin/sh", "-c", "read x; exec /bin/cat " + target_}, uid);
        // Running the shell as `uid` before it is put anywhere (not still the test's fork).
        EXPECT_TRUE(wait_for_exec(proc->pid(), "sh"));
        return proc;
    }

    static void move(pid_t pid, const std::string& cgroup) {
        write_file(cgroup + "/cgroup.procs", std::to_string(pid));
    }

    // The control: the attacker puts a process of theirs in their delegated cgroup under a
    // policy of theirs for `name`; it joins the view (waited for) and shows the payload, as
    // the attacker's library running as the attacker. Returns it, still waiting to be told.
    std::unique_ptr<Proc> control_joins(const std::string& name) {
        ok({"policy", "set", "--cgroup", cgroup_name_ + "/attacker", "--ns", name}, attacker());
        auto own = reader(kOtherUid);
        move(own->pid(), attacker_cgroup_);
        const std::string host = mount_ns(::getpid());
        EXPECT_TRUE(wait_until([&] {
            return mount_ns(own->pid()) != host && tracer_of(own->pid()) == 0;
        })) << "the attacker's own process did not join their namespace: "
            << pnsd_->log_since_start();
        return own;
    }

    void expect_payload(Proc& own) {
        own.send("x");
        EXPECT_EQ(own.line(), "PRELOADED uid=" + std::to_string(kOtherUid));
        EXPECT_EQ(own.line(), "attacker");
        EXPECT_EQ(own.wait(), 0) << pnsd_->log();
    }

    // The victim's process ran no library of the attacker's and read the host's file.
    void expect_untouched(Proc& victim, const std::string& who) {
        EXPECT_EQ(mount_ns(victim.pid()), mount_ns(::getpid()))
            << who << " was moved into a view: " << pnsd_->log_since_start();
        victim.send("x");
        EXPECT_EQ(victim.line(), "host") << who << " ran the attacker's library or saw their file";
        EXPECT_EQ(victim.wait(), 0) << who << " did not run to its end (killed?)";
    }

    // The cgroup policies root sees, as "cgroup=name".
    std::vector<std::string> policies() {
        std::vector<std::string> all;
        const json listed = ctl_json(pnsd(), {"policy", "ls"});  // (not a temporary's member)
        for (const auto& p : listed["policies"])
            all.push_back(p["cgroup"].get<std::string>() + "=" + p["name"].get<std::string>());
        return all;
    }

    std::string cgroup_name_, cgroup_, attacker_cgroup_, target_, hostname_, preload_;
};

// The attack as reported, without a restart: `ns rm` takes root's policy with it, so the
// attacker's new `legacy` gets nothing from it.
TEST_F(PolicyAttack, APolicyLeftBehindTakesNoOtherUsersProcess) {
    ok({"ns", "create", "legacy"});
    ok({"policy", "set", "--cgroup", cgroup_name_, "--ns", "legacy"});
    auto rm = ctl_json(pnsd(), {"ns", "rm", "legacy"});
    EXPECT_EQ(rm["policies_removed"], json::array({cgroup_name_})) << rm.dump();
    EXPECT_TRUE(policies().empty()) << "the policy outlived its namespace";
    attacker_makes("legacy");

    auto victim = reader(kVictimUid);
    move(victim->pid(), cgroup_);
    // The tracker's events come in order: once the attacker's own process, moved after the
    // victim's, has joined, whatever pnsd did with the victim's has been done.
    auto own = control_joins("legacy");
    EXPECT_TRUE(wait_until([&] { return tracer_of(victim->pid()) == 0; }));
    expect_untouched(*victim, "the victim's process");
    expect_payload(*own);
}

// The same across a restart: nothing on disk names the attacker's `legacy` for root's cgroup.
TEST_F(PolicyAttack, APolicyLeftBehindTakesNoOtherUsersProcessAfterARestart) {
    ok({"ns", "create", "legacy"});
    ok({"policy", "set", "--cgroup", cgroup_name_, "--ns", "legacy"});
    ok({"ns", "rm", "legacy"});
    attacker_makes("legacy");
    ASSERT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_TRUE(policies().empty()) << "the policy came back with the restart";

    auto victim = reader(kVictimUid);
    move(victim->pid(), cgroup_);
    auto own = control_joins("legacy");
    EXPECT_TRUE(wait_until([&] { return tracer_of(victim->pid()) == 0; }));
    expect_untouched(*victim, "the victim's process");
    expect_payload(*own);
}

// policies.json as a pnsd from before identities wrote it (by name), found after the attack
// already took place: it is bound to the namespace of that name only if that namespace's owner
// could have set it (root's policy on root's cgroup for the attacker's `legacy`: no), and a
// policy whose namespace is gone is dropped. Control: root's own namespace keeps its policy.
TEST_F(PolicyAttack, APolicyStoredByNameIsNotBoundToAnotherUsersNamespace) {
    attacker_makes("legacy");
    ok({"ns", "create", "sys"});
    const std::string sys_cgroup = cgroup_name_ + "/sys";
    ASSERT_EQ(::mkdir((cgroup_ + "/sys").c_str(), 0755), 0);
    ASSERT_EQ(pnsd_->stop(), 0);
    const json old_format = {{"policies",
                              {{{"cgroup", cgroup_name_}, {"ns", "legacy"}},
                               {{"cgroup", sys_cgroup}, {"ns", "sys"}},
                               {{"cgroup", cgroup_name_ + "/attacker"},
                                {"ns_id", "0123456789abcdef0123456789abcdef"}}}}};
    write_file(pnsd_->state_dir() + "/policies.json", old_format.dump(2));
    ASSERT_TRUE(pnsd_->start());
    auto log = pnsd_->log_since_start();
    EXPECT_NE(log.find("policy for '" + cgroup_name_ +
                       "' was stored by name, and namespace 'legacy' (uid " +
                       std::to_string(kOtherUid) + ") could not have set it"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("its namespace is gone; dropped"), std::string::npos) << log;
    EXPECT_EQ(policies(), std::vector<std::string>{sys_cgroup + "=sys"});
    // Rewritten by identity: the next start finds the same.
    auto stored = parse_json(read_file(pnsd_->state_dir() + "/policies.json"));
    ASSERT_EQ(stored["policies"].size(), 1u) << stored.dump();
    EXPECT_TRUE(stored["policies"][0].contains("ns_id")) << stored.dump();

    auto victim = reader(kVictimUid);
    move(victim->pid(), cgroup_);
    auto own = control_joins("legacy");
    EXPECT_TRUE(wait_until([&] { return tracer_of(victim->pid()) == 0; }));
    expect_untouched(*victim, "the victim's process");
    expect_payload(*own);
}

// A user's namespace takes only that user's processes: another user's process (and a root
// process) put in the attacker's policy cgroup is left where it is; held at its exec there, it
// is let go, not killed (it is not the policy owner's to hold or kill).
TEST_F(PolicyAttack, AUsersPolicyTakesNoOtherUsersProcess) {
    attacker_makes("mine");
    auto own = control_joins("mine");
    const auto held_before =
        ctl_json(pnsd(), {"status"})["tracker"]["held_at_exec"].get<std::uint64_t>();
    for (std::optional<uid_t> uid : {std::optional<uid_t>(kVictimUid), std::optional<uid_t>()}) {
        const std::string who = uid ? "the victim's process" : "a root process";
        SCOPED_TRACE(who);
        auto other = reader(uid);
        move(other->pid(), attacker_cgroup_);
        const std::string refused =
            "policy: " + std::to_string(other->pid()) + " left where it is, not joined to 'mine'";
        ASSERT_TRUE(wait_until([&] {
            return pnsd_->log_since_start().find(refused) != std::string::npos;
        })) << pnsd_->log_since_start();
        // Now it execs in the policy cgroup, outside the view: held, refused, let go.
        expect_untouched(*other, who);
    }
    EXPECT_GE(ctl_json(pnsd(), {"status"})["tracker"]["held_at_exec"].get<std::uint64_t>(),
              held_before + 2);
    expect_payload(*own);
}

// A user cannot replace a policy of a namespace they do not own, even on a cgroup delegated to
// them (policy.rm refuses them that already). Control: on a cgroup of theirs with no policy.
TEST_F(PolicyAttack, AUserCannotReplaceAnothersPolicy) {
    attacker_makes("mine");
    ok({"ns", "create", "sys"});
    ok({"policy", "set", "--cgroup", cgroup_name_ + "/attacker", "--ns", "sys"});
    auto r = pnsd_->ctl({"policy", "set", "--cgroup", cgroup_name_ + "/attacker", "--ns", "mine"},
                        attacker());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("has a policy for namespace 'sys' of uid 0"), std::string::npos) << r.err;
    EXPECT_EQ(
        pnsd_->ctl({"policy", "rm", "--cgroup", cgroup_name_ + "/attacker"}, attacker()).exit_code,
        1);
    EXPECT_EQ(policies(), std::vector<std::string>{cgroup_name_ + "/attacker=sys"});

    const std::string sub = attacker_cgroup_ + "/sub";
    ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
    ASSERT_EQ(::chown(sub.c_str(), kOtherUid, kOtherGid), 0);
    ok({"policy", "set", "--cgroup", cgroup_name_ + "/attacker/sub", "--ns", "mine"}, attacker());
    ok({"policy", "rm", "--cgroup", cgroup_name_ + "/attacker/sub"}, attacker());
}

// A view pinned under a name whose table is gone (pnsd died between the two, or the table was
// lost) still holds root's process: a new namespace of that name gets a view of its own, so
// its owner's entries never reach that process. Control: the attacker's own process in the
// attacker's namespace sees the attacker's entries.
TEST_F(PolicyAttack, AViewLeftBehindIsNotTakenByANewNamespaceOfItsName) {
    ok({"ns", "create", "legacy"});
    Proc member({"/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "run", "--ns",
                 "legacy", "--", "/bin/sh", "-c", "read x; exec /bin/cat " + target_});
    ASSERT_TRUE(wait_for_exec(member.pid(), "sh"));
    const std::string old_view = mount_ns(member.pid());
    ASSERT_NE(old_view, mount_ns(::getpid()));
    ASSERT_EQ(pnsd_->stop(), 0);
    ASSERT_EQ(::unlink((pnsd_->state_dir() + "/namespaces/legacy.json").c_str()), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_NE(pnsd_->log_since_start().find(
                  "view 'legacy' has no table but 1 processes inside; keeping it"),
              std::string::npos)
        << pnsd_->log_since_start();

    attacker_makes("legacy");
    EXPECT_EQ(mount_ns(member.pid()), old_view);
    member.send("x");
    EXPECT_EQ(member.line(), "host") << "root's process got the new namespace's entries";
    EXPECT_EQ(member.wait(), 0);
    // Not listed as a member of the attacker's namespace either.
    auto ps = ctl_json(pnsd(), {"ps", "--ns", "legacy"}, attacker());
    for (const auto& row : ps["processes"]) EXPECT_NE(row["pid"], member.pid()) << ps.dump();

    auto own = pnsd_->ctl({"run", "--ns", "legacy", "--", "/bin/cat", target_}, attacker());
    EXPECT_EQ(own.exit_code, 0) << own.err;
    EXPECT_EQ(own.out, "PRELOADED uid=" + std::to_string(kOtherUid) + "\nattacker\n");
}

}  // namespace
}  // namespace pns::test
