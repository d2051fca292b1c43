// The BPF tracker and cgroup-level policy (issue 5): a real pnsd with its tracker loaded on
// this kernel, real cgroups (cgroup2), processes racing into a policy cgroup right before they
// exec.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "agent/bpf/tracker.hpp"
#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

// The cgroup2 path of process `pid` ("0::" line of /proc/PID/cgroup).
std::string cgroup_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("0::")) return line.substr(3);
    return {};
}

class TrackerTest : public PnsdTest {
  protected:
    void SetUp() override {
        // One test (Host.HasWhatTheTrackerNeeds) fails for a host that lacks them; the others
        // say so rather than failing by the dozen for the same reason.
        if (auto missing = missing_host_prerequisite(); !missing.empty())
            GTEST_SKIP() << "this host lacks " << missing
                         << " (Host.HasWhatTheTrackerNeeds fails for it)";
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        root_ = cgroup2_root();
        name_ = "pns-test-" + std::filesystem::path(dir_.path()).filename().string();
        cgroup_ = root_ + "/" + name_;
        ASSERT_EQ(mkdir(cgroup_.c_str(), 0755), 0) << cgroup_ << ": " << strerror(errno);
        data_ = make_dir(dir_.path() + "/data");
        target_ = make_file(data_ + "/target", "host\n");
        make_file(data_ + "/alt", "view\n");
        checker_ = dir_.path() + "/victim";
        std::filesystem::copy_file(PNS_VICTIM_PATH, checker_);
        chmod(checker_.c_str(), 0755);
        ok({"ns", "create", "pol"});
        ok({"bind", "--ns", "pol", data_ + "/alt", target_});
    }
    void TearDown() override {
        if (!cgroup_.empty()) {
            write_file(cgroup_ + "/cgroup.kill", "1");
            // Child cgroups first (a test may have made one), then the test's own.
            std::vector<std::string> dirs;
            for (const auto& e : std::filesystem::recursive_directory_iterator(cgroup_))
                if (e.is_directory()) dirs.push_back(e.path());
            std::sort(dirs.rbegin(), dirs.rend());
            dirs.push_back(cgroup_);
            for (const auto& d : dirs)
                for (int i = 0; i < 200 && rmdir(d.c_str()) != 0; ++i) usleep(10000);
            EXPECT_FALSE(exists(cgroup_)) << "cgroup left behind";
        }
        PnsdTest::TearDown();
    }

    json tracker_status() { return ctl_json(pnsd(), {"status"})["tracker"]; }

    // The tracker's members map, read from its pins as pnsd leaves them.
    std::map<pid_t, pns_member> members() {
        std::map<pid_t, pns_member> all;
        auto tracker = agent::Tracker::open(pnsd_->bpf_dir());
        EXPECT_TRUE(tracker.ok());
        if (!tracker) return all;
        EXPECT_TRUE((*tracker)->reused());
        for (const auto& [tgid, m] : (*tracker)->members()) all[tgid] = m;
        return all;
    }

    std::uint32_t primary_inode() {
        struct stat st {};
        std::string pin = "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/root" +
                          pnsd_->runtime_dir() + "/views/pol/mnt";
        EXPECT_EQ(stat(pin.c_str(), &st), 0) << pin;
        return static_cast<std::uint32_t>(st.st_ino);
    }

    // A shell that puts itself into the policy cgroup, then execs `script`.
    std::vector<std::string> in_cgroup(const std::string& script) {
        return {"/bin/sh", "-c",
                "echo $$ > " + cgroup_ + "/cgroup.procs && exec /bin/sh -c '" + script + "'"};
    }

    std::string root_, name_, cgroup_, data_, target_, checker_;
};

TEST_F(TrackerTest, LoadsOnThisKernelAndIsPinned) {
    json t = tracker_status();
    EXPECT_EQ(t["state"], "active") << t.dump() << pnsd_->log();
    EXPECT_EQ(t["reused"], false);
    for (const char* pin :
         {"members", "policies", "views", "events", "counters", "build", "link_on_fork",
          "link_on_exec", "link_on_exit", "link_on_cgroup_attach"})
        EXPECT_TRUE(exists(pnsd_->bpf_dir() + "/" + pin)) << pin;
    // A restarted pnsd reuses it rather than loading a second copy.
    EXPECT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(tracker_status()["reused"], true);
}

// Every pnsd of these tests runs where nothing is mounted at /sys/fs/bpf, /sys/kernel/tracing
// or /sys/kernel/security (Pnsd::isolate_mounts): as on a machine without systemd. pnsd mounts
// bpffs there for its pins, mounts no tracefs where anyone sees it, and its tracker works: a
// policy joins a process, and the racing tests below hold there too.
TEST_F(TrackerTest, OnAFreshMachinePnsdMountsBpffsAndNeedsNoTracefs) {
    json status = ctl_json(pnsd(), {"status"});
    EXPECT_EQ(status["mounted"], json::array({"bpffs at /sys/fs/bpf"})) << status.dump();
    EXPECT_EQ(status["tracker"]["state"], "active") << status.dump();
    auto log = pnsd_->log_since_start();
    EXPECT_NE(log.find("nothing was mounted at '/sys/fs/bpf'; mounted bpffs there"),
              std::string::npos)
        << log;
    std::map<std::string, int> seen;  // file system type -> mounts of it in pnsd's namespace
    std::string bpffs_at;
    std::ifstream mountinfo("/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/mountinfo");
    for (std::string line; std::getline(mountinfo, line);) {
        std::istringstream fields(line.substr(line.find(" - ") + 3));
        std::string type;
        fields >> type;
        ++seen[type];
        if (type == "bpf") {
            std::istringstream f(line);
            std::string id, parent, dev, root;
            f >> id >> parent >> dev >> root >> bpffs_at;
        }
    }
    EXPECT_EQ(seen["bpf"], 1);
    EXPECT_EQ(bpffs_at, "/sys/fs/bpf");
    EXPECT_EQ(seen["tracefs"] + seen["debugfs"] + seen["securityfs"], 0);

    Proc member(in_cgroup("read x; cat " + target_ + "; read y"));
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    std::string view = "mnt:[" + std::to_string(primary_inode()) + "]";
    ASSERT_TRUE(wait_until([&] { return mount_ns(member.pid()) == view; }))
        << "the process in the policy cgroup did not join: " << pnsd_->log_since_start();
    member.send("x");
    EXPECT_EQ(member.line(), "view");
    member.send("y");

    // A restarted pnsd finds bpffs and its pins there, and mounts nothing.
    ASSERT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    status = ctl_json(pnsd(), {"status"});
    EXPECT_EQ(status["mounted"], json::array()) << status.dump();
    EXPECT_EQ(status["tracker"]["reused"], true) << status.dump();
}

// A --bpf-dir that is not on bpffs cannot hold pins: pnsd does not start, and says how to fix it.
TEST_F(TrackerTest, ABpfDirNotOnBpffsIsAClearErrorAtStart) {
    auto start_with = [&](const std::string& bpf_dir) {
        return run({pnsd_path(), "--socket", dir_.path() + "/other.sock", "--state-dir",
                    dir_.path() + "/other-state", "--runtime-dir", dir_.path() + "/other-run",
                    "--bpf-dir", bpf_dir},
                   {.mount_ns_of = pnsd_->sandbox_pid()});
    };
    const std::string pins = make_dir(dir_.path() + "/pins");
    auto r = start_with(pins + "/pns");
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("error pnsd: --bpf-dir '" + pins + "/pns': '" + pins +
                         "' is not on bpffs; mount one there (mount -t bpf bpf " + pins +
                         ") or choose a directory under /sys/fs/bpf\n"),
              std::string::npos)
        << r.err;
    r = start_with(dir_.path() + "/missing/pns");
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("error pnsd: --bpf-dir '" + dir_.path() + "/missing/pns': statfs '" +
                         dir_.path() + "/missing': No such file or directory\n"),
              std::string::npos)
        << r.err;
    // The control: the same start with a directory on bpffs serves.
    EXPECT_EQ(ctl_json(pnsd(), {"status"})["tracker"]["state"], "active");
}

class Racing : public TrackerTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(Racing, NoProgramExecdInAPolicyCgroupStartsOutsideTheView) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    auto before = tracker_status()["held_at_exec"].get<std::uint64_t>();
    auto members_before = members().size();
    const std::string rounds = std::to_string(scaled(2000));
    auto r = run({PNS_RACER_PATH, GetParam(), rounds, cgroup_, checker_, target_, "view"},
                 RunOptions{.timeout = std::chrono::seconds(300)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "rounds " + rounds + " misses 0 stops 0\n") << r.err;
    auto held = tracker_status()["held_at_exec"].get<std::uint64_t>() - before;
    std::cout << "[ figures  ] " << GetParam() << ": held at exec in " << held << " of " << rounds
              << " rounds\n";
    RecordProperty("held_at_exec", static_cast<int>(held));
    // Every child has exited: none is left in the members map (no entry made after an exit).
    EXPECT_EQ(members().size(), members_before);
    EXPECT_EQ(read_file(target_), "host\n");
}

INSTANTIATE_TEST_SUITE_P(Ways, Racing, ::testing::Values("moved", "self", "clone3"));

TEST_F(TrackerTest, ChildrenAndGrandchildrenAreTrackedAndExitsCleanTheMap) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    Proc tree(
        in_cgroup("sleep 30 & (sleep 30 & echo $!; wait) & echo $!; cat " + target_ + "; wait"));
    std::string child = tree.line(), output = tree.line(), grandchild = tree.line();
    // (The two pids and the file, in whichever order the shells print them.)
    std::vector<std::string> lines = {child, output, grandchild};
    ASSERT_NE(std::find(lines.begin(), lines.end(), "view"), lines.end());
    std::erase(lines, "view");
    ASSERT_EQ(lines.size(), 2u);
    auto map = members();
    std::uint32_t ns = primary_inode();
    for (const auto& pid : lines) {
        ASSERT_TRUE(map.contains(pid_from(pid))) << pid;
        EXPECT_EQ(map[pid_from(pid)].ns, ns);
        EXPECT_EQ(map[pid_from(pid)].state, PNS_STATE_MEMBER);
    }
    EXPECT_TRUE(map.contains(tree.pid()));
    write_file(cgroup_ + "/cgroup.kill", "1");
    tree.wait();
    for (int i = 0; i < 100; ++i) {
        map = members();
        if (!map.contains(pid_from(lines[0])) && !map.contains(pid_from(lines[1]))) break;
        usleep(10000);
    }
    EXPECT_FALSE(map.contains(pid_from(lines[0])));
    EXPECT_FALSE(map.contains(pid_from(lines[1])));
    EXPECT_FALSE(map.contains(tree.pid()));
}

TEST_F(TrackerTest, TheMapDoesNotGrowAfter100000ShortLivedProcesses) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    auto before = members().size();
    const std::string count = std::to_string(scaled(100000));
    auto r = run(in_cgroup(checker_ + " forker " + count),
                 RunOptions{.timeout = std::chrono::seconds(300)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "forked " + count + "\n");
    EXPECT_EQ(members().size(), before);
}

TEST_F(TrackerTest, ProcessesAlreadyInTheCgroupJoinWhenThePolicyIsSetAndWhenPnsdStarts) {
    Proc early({"/bin/sh", "-c", "echo $$ > " + cgroup_ + "/cgroup.procs && exec sleep 30"});
    ASSERT_TRUE(wait_for_exec(early.pid(), "sleep"));
    std::string outside = mount_ns(early.pid());
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    std::string view;
    wait_until([&] { return (view = mount_ns(early.pid())) != outside; });
    EXPECT_NE(view, outside);
    // Entered while pnsd was down: joined when it is back.
    pnsd_->kill9();
    Proc late({"/bin/sh", "-c", "echo $$ > " + cgroup_ + "/cgroup.procs && read x"});
    ASSERT_TRUE(wait_until([&] { return cgroup_of(late.pid()) == "/" + name_; }));
    std::string before = mount_ns(late.pid());
    ASSERT_TRUE(pnsd_->start());
    std::string after;
    wait_until([&] { return (after = mount_ns(late.pid())) != before; });
    EXPECT_EQ(after, view);
}

TEST_F(TrackerTest, TrackingGoesOnWhilePnsdIsDown) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    Proc member(in_cgroup("read x; sleep 30 & echo $!; read y"));
    std::string view = "mnt:[" + std::to_string(primary_inode()) + "]";
    // Joined and let go: a pnsd killed in the middle of an injection would leave the process
    // with pnsd's registers (a limit the README states), which is not what this test is about.
    // Joined and let go: the member was held at its exec into the cgroup's shell until pnsd
    // joined it, and a pnsd killed before it sent SIGCONT leaves it stopped until the next
    // pnsd lets it go (finish_holds). So the test waits until it runs again as a member.
    ASSERT_TRUE(wait_until([&] {
        auto map = members();
        auto it = map.find(member.pid());
        return mount_ns(member.pid()) == view && tracer_of(member.pid()) == 0 &&
               state_of(member.pid()) != 'T' && it != map.end() &&
               it->second.state == PNS_STATE_MEMBER;
    })) << "the member was not joined and let go: " << pnsd_->log_since_start();
    pnsd_->kill9();
    member.send("x");
    pid_t child = pid_from(member.line());
    ASSERT_GT(child, 0) << "no pid from the member's shell";
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(tracker_status()["reused"], true);
    auto map = members();
    ASSERT_TRUE(map.contains(child)) << "forked while pnsd was down, not tracked";
    EXPECT_EQ(map[child].ns, primary_inode());
    auto ps = ctl_json(pnsd(), {"ps", "--ns", "pol"});
    bool listed = false;
    for (const auto& row : ps["processes"])
        if (row["pid"] == child) {
            listed = true;
            EXPECT_EQ(row["cgroup"], "/" + name_);
            EXPECT_EQ(row["state"], "member");
        }
    EXPECT_TRUE(listed) << ps.dump();
    member.send("y");
}

// A pnsd of another build (an upgrade) finds this build's tracker pinned: it replaces the
// programs and keeps the maps, so what was tracked stays tracked.
TEST_F(TrackerTest, APnsdOfAnotherBuildReplacesTheProgramsAndKeepsTheMaps) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    Proc member(in_cgroup("read x; sleep 30 & echo $!; read y"));
    std::string view = "mnt:[" + std::to_string(primary_inode()) + "]";
    ASSERT_TRUE(
        wait_until([&] { return mount_ns(member.pid()) == view && tracer_of(member.pid()) == 0; }));
    const std::string link = pnsd_->bpf_dir() + "/link_on_fork";
    const std::uint32_t old_fork = program_of_link(link);
    ASSERT_EQ(pnsd_->stop(), 0);
    forge_other_build(pnsd_->bpf_dir() + "/build");
    if (HasFatalFailure()) return;
    ASSERT_TRUE(pnsd_->start());
    json t = tracker_status();
    EXPECT_EQ(t["reused"], true) << t.dump();
    EXPECT_EQ(t["upgraded"], true) << t.dump();
    EXPECT_NE(program_of_link(link), old_fork);
    // The replaced program is detached and gone once its pin is.
    EXPECT_TRUE(wait_until([&] { return program_gone(old_fork); }))
        << "the old build's on_fork is still loaded";
    // The member is still in the kept map, and the new programs track its new child.
    member.send("x");
    pid_t child = pid_from(member.line());
    ASSERT_GT(child, 0) << "no pid from the member's shell";
    auto map = members();
    EXPECT_TRUE(map.contains(member.pid()));
    ASSERT_TRUE(map.contains(child)) << "forked after the upgrade, not tracked";
    EXPECT_EQ(map[child].ns, primary_inode());
    // A start of the same build after that reuses it as it is.
    ASSERT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(tracker_status()["upgraded"], false);
    member.send("y");
}

// A member that makes itself a mount namespace of its own has left its view: reported, and
// in a locked namespace killed. Where the LSM guard runs (the VM), it is refused beforehand.
TEST_F(TrackerTest, AMemberLeavingALockedViewIsKilled) {
    ok({"ns", "create", "--locked", "lk"});
    ok({"policy", "set", "--cgroup", name_, "--ns", "lk"});
    auto r = run(in_cgroup("exec /usr/bin/unshare -m /bin/sleep 5"));
    if (ctl_json(pnsd(), {"status"})["guard"]["state"] == "active") {
        EXPECT_EQ(r.exit_code, 1) << r.err;
        EXPECT_NE(r.err.find("Operation not permitted"), std::string::npos) << r.err;
        EXPECT_EQ(tracker_status()["escapes"], 0);
        EXPECT_GE(ctl_json(pnsd(), {"status"})["guard"]["refusals"].get<int>(), 1);
        return;
    }
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
    EXPECT_GE(tracker_status()["escapes"].get<int>(), 1);
    auto log = pnsd_->log_since_start();
    EXPECT_NE(log.find("left the view of locked namespace 'lk': killed"), std::string::npos) << log;
}

TEST_F(TrackerTest, AMemberLeavingAnUnlockedViewIsReported) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    auto before = tracker_status()["escapes"].get<int>();
    auto r = run(in_cgroup("exec /usr/bin/unshare -m /bin/cat " + target_));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(tracker_status()["escapes"].get<int>(), before + 1);
    EXPECT_NE(pnsd_->log_since_start().find("left the view of 'pol' by itself"), std::string::npos);
}

TEST_F(TrackerTest, EventsStreamJoinsHoldsAndExits) {
    ok({"policy", "set", "--cgroup", name_, "--ns", "pol"});
    Proc events(
        {"/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "events", "--json"});
    // Watching once pnsd counts its connection (and this status request's).
    ASSERT_TRUE(wait_until([&] {
        return tracker_status().is_object() && ctl_json(pnsd(), {"status"})["clients"] >= 2;
    }));
    auto r = run(in_cgroup("exec /bin/cat " + target_));
    EXPECT_EQ(r.out, "view\n");
    std::set<std::string> kinds;
    for (int i = 0; i < 20 && !kinds.contains("exit"); ++i) {
        std::string line = events.line(std::chrono::seconds(5));
        if (line.empty()) break;
        json e = parse_json(line);
        kinds.insert(e.value("event", std::string()));
        if (e["event"] != "exit") {
            EXPECT_EQ(e["namespace"], "pol") << line;
        }
    }
    EXPECT_TRUE(kinds.contains("joined") || kinds.contains("joined-held")) << kinds.size();
    EXPECT_TRUE(kinds.contains("exit"));
}

TEST_F(TrackerTest, PolicyRequestsAreAuthorizedAndChecked) {
    // Root's cgroup, root's namespace: not for another user.
    auto r = pnsd_->ctl({"policy", "set", "--cgroup", name_, "--ns", "pol"},
                        RunOptions{.uid = kOtherUid, .gid = kOtherGid});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("not yours"), std::string::npos) << r.err;
    auto dots = pnsd_->ctl({"policy", "set", "--cgroup", name_ + "/../x", "--ns", "pol"});
    EXPECT_EQ(dots.exit_code, 1);
    auto missing = pnsd_->ctl({"policy", "set", "--cgroup", name_ + "/nope", "--ns", "pol"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("no cgroup"), std::string::npos) << missing.err;
    auto outside = pnsd_->ctl({"policy", "set", "--cgroup", "/tmp", "--ns", "pol"});
    EXPECT_EQ(outside.exit_code, 1);
    // A cgroup delegated to the user (its directory is theirs), for the user's namespace.
    std::string delegated = cgroup_ + "/user";
    ASSERT_EQ(mkdir(delegated.c_str(), 0755), 0);
    ASSERT_EQ(chown(delegated.c_str(), kOtherUid, kOtherGid), 0);
    RunOptions user{.uid = kOtherUid, .gid = kOtherGid};
    ok({"ns", "create", "mine"}, user);
    ok({"policy", "set", "--cgroup", name_ + "/user", "--ns", "mine"}, user);
    auto ls = ctl_json(pnsd(), {"policy", "ls"}, user);
    ASSERT_EQ(ls["policies"].size(), 1u) << ls.dump();
    ok({"policy", "rm", "--cgroup", name_ + "/user"}, user);
    rmdir(delegated.c_str());
}

}  // namespace
}  // namespace pns::test
