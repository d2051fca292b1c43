// The LSM guard (bpf/guard.bpf.c), on a kernel that runs BPF LSM programs: vmtest/ runs this
// in its VM (the development machines' kernel refuses LSM programs). A real pnsd, real views,
// real members; every refusal is checked against a control run that shows the same operation
// works for a process that is no member.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/priv/harness.hpp"

namespace pns::test {
namespace {

using json = nlohmann::json;

class GuardTest : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        auto guard = ctl_json(pnsd(), {"status"})["guard"];
        ASSERT_EQ(guard["state"], "active") << "this test needs the LSM guard: " << guard.dump();
        data_ = make_dir(dir_.path() + "/data");
        make_file(data_ + "/src/file", "view\n");
        view_dir_ = make_dir(dir_.path() + "/shown");
        ops_ = dir_.path() + "/mount_ops";
        std::filesystem::copy_file(PNS_MOUNT_OPS_PATH, ops_);
        chmod(ops_.c_str(), 0755);
    }

    // A namespace with one bind, so its view has a mount of its own at view_dir_.
    void make_ns(const std::string& name, bool locked) {
        std::vector<std::string> create = {"ns", "create", name};
        if (locked) create.push_back("--locked");
        ok(create);
        ok({"bind", "--ns", name, data_ + "/src", view_dir_});
    }

    // mount_ops OP [DIR] run as a member of `ns` (root), and as a control outside any view.
    std::string member(const std::string& ns, const std::vector<std::string>& op,
                       const RunOptions& options = {}) {
        std::vector<std::string> argv = {"run", "--ns", ns, "--", ops_};
        argv.insert(argv.end(), op.begin(), op.end());
        auto r = ctl(argv, options);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.out;
    }
    std::string control(const std::vector<std::string>& op) {
        std::vector<std::string> argv = {ops_, "--private"};
        argv.insert(argv.end(), op.begin(), op.end());
        auto r = run(argv);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.out;
    }

    json guard_status() { return ctl_json(pnsd(), {"status"})["guard"]; }

    std::string data_, view_dir_, ops_;
};

TEST_F(GuardTest, StatusSaysItIsActive) {
    auto r = ctl({"status"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("lsm guard:   active"), std::string::npos) << r.out;
    EXPECT_EQ(guard_status()["reused"], false);
}

TEST_F(GuardTest, LockedMembersCannotChangeOrLeaveTheirView) {
    make_ns("lk", true);
    Proc events(
        {"/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "events", "--json"});
    ASSERT_TRUE(wait_until([&] { return ctl_json(pnsd(), {"status"})["clients"] >= 2; }));
    std::vector<std::pair<std::string, std::vector<std::string>>> ops = {
        {"mount", {"mount", view_dir_}},
        {"umount", {"umount", view_dir_}},
        {"move_mount", {"move_mount", view_dir_}},
        {"pivot_root", {"pivot_root"}},
        {"mount_setattr", {"mount_setattr", view_dir_}},
        {"setns", {"setns"}},
        {"unshare", {"unshare"}},
        {"clone", {"clone"}},
    };
    for (const auto& [name, op] : ops) {
        EXPECT_EQ(member("lk", op), "errno 1 (EPERM)\n") << name;
        EXPECT_NE(control(op), "errno 1 (EPERM)\n") << name << " is refused to everyone";
    }
    // The view is as it was, and every refusal was reported.
    auto r = ctl({"run", "--ns", "lk", "--", "/bin/cat", view_dir_ + "/file"});
    EXPECT_EQ(r.out, "view\n") << r.err;
    std::set<std::string> refused;
    while (refused.size() < ops.size()) {
        std::string line = events.line(std::chrono::seconds(10));
        if (line.empty()) break;
        auto e = parse_json(line);
        if (e["event"] == "refused" && e["namespace"] == "lk") refused.insert(e["detail"]);
    }
    for (const auto& [name, op] : ops) EXPECT_TRUE(refused.contains(name)) << name;
    EXPECT_GE(guard_status()["refusals"].get<int>(), static_cast<int>(ops.size()));
}

TEST_F(GuardTest, MembersOfUnlockedNamespacesAreNotRefused) {
    make_ns("open", false);
    for (const char* op : {"setns", "unshare", "clone"})
        EXPECT_EQ(member("open", {op}), "ok\n") << op;
    EXPECT_EQ(guard_status()["refusals"], 0);
}

TEST_F(GuardTest, TheGuardGoesOnWhilePnsdIsDownAndIsReused) {
    make_ns("lk", true);
    Proc waiting({"/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "run", "--ns",
                  "lk", "--", "/bin/sh", "-c", "read x; exec " + ops_ + " unshare"});
    ASSERT_TRUE(wait_until([&] { return comm_of(waiting.pid()) == "sh"; }));
    pnsd_->kill9();
    waiting.send("x");
    EXPECT_EQ(waiting.line(), "errno 1 (EPERM)");
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(guard_status()["reused"], true);
    EXPECT_EQ(member("lk", {"unshare"}), "errno 1 (EPERM)\n");
}

// A pnsd of another build (an upgrade) finds this build's guard pinned: it puts its own
// programs in their place, with the rules they enforced, and the old ones go.
TEST_F(GuardTest, APnsdOfAnotherBuildReplacesTheGuardAndKeepsItsRules) {
    make_ns("lk", true);
    make_file(data_ + "/src/secret", "secret\n");
    ok({"deny", "--ns", "lk", view_dir_ + "/secret"});
    const std::string link = pnsd_->bpf_dir() + "/guard_link_guard_open";
    const std::uint32_t old_open = program_of_link(link);
    ASSERT_EQ(pnsd_->stop(), 0);
    forge_other_build(pnsd_->bpf_dir() + "/guard_build");
    if (HasFatalFailure()) return;
    ASSERT_TRUE(pnsd_->start());
    json g = guard_status();
    EXPECT_EQ(g["reused"], true) << g.dump();
    EXPECT_EQ(g["upgraded"], true) << g.dump();
    EXPECT_EQ(g["denied_files"], 1) << g.dump();
    EXPECT_NE(program_of_link(link), old_open);
    EXPECT_TRUE(wait_until([&] { return program_gone(old_open); }))
        << "the old build's guard_open is still loaded";
    EXPECT_EQ(member("lk", {"unshare"}), "errno 1 (EPERM)\n");
    auto r = ctl({"run", "--ns", "lk", "--", "/bin/cat", view_dir_ + "/secret"});
    EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
}

TEST_F(GuardTest, DeniedFilesAreDeniedByInodeOnEveryPathAndHardLink) {
    make_file(data_ + "/src/secret", "secret\n");
    ASSERT_EQ(link((data_ + "/src/secret").c_str(), (data_ + "/elsewhere").c_str()), 0);
    std::filesystem::copy_file("/bin/true", data_ + "/src/tool");
    chmod((data_ + "/src/tool").c_str(), 0755);
    make_ns("dn", false);
    ok({"deny", "--ns", "dn", view_dir_ + "/secret"});
    ok({"deny", "--ns", "dn", view_dir_ + "/tool"});
    Proc events(
        {"/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "events", "--json"});
    ASSERT_TRUE(wait_until([&] { return ctl_json(pnsd(), {"status"})["clients"] >= 2; }));

    auto in_view = [&](const std::string& script) {
        return ctl({"run", "--ns", "dn", "--", "/bin/sh", "-c", script});
    };
    for (const auto& path : {view_dir_ + "/secret", data_ + "/src/secret", data_ + "/elsewhere"}) {
        auto r = in_view("cat " + path);
        EXPECT_NE(r.exit_code, 0) << path << " was readable: " << r.out;
        EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << path << ": " << r.err;
    }
    auto exec = in_view(view_dir_ + "/tool");
    EXPECT_EQ(exec.exit_code, 126) << exec.err;
    EXPECT_EQ(in_view("cat " + view_dir_ + "/file").out, "view\n");
    // Outside the view, the same files are as they always were.
    EXPECT_EQ(read_file(data_ + "/elsewhere"), "secret\n");
    EXPECT_EQ(run({data_ + "/src/tool"}).exit_code, 0);

    bool reported = false;
    for (int i = 0; i < 20 && !reported; ++i) {
        std::string line = events.line(std::chrono::seconds(10));
        if (line.empty()) break;
        auto e = parse_json(line);
        reported = e["event"] == "refused" && e["namespace"] == "dn" &&
                   e["detail"].get<std::string>().starts_with("open of inode ");
    }
    EXPECT_TRUE(reported);
    EXPECT_EQ(guard_status()["denied_files"], 2);

    // Taking the entries off gives the files back.
    std::string table = dir_.path() + "/table";
    write_file(table, "bind " + data_ + "/src " + view_dir_ + "\n");
    ok({"apply", "--ns", "dn", table});
    EXPECT_EQ(in_view("cat " + data_ + "/elsewhere").out, "secret\n");
    EXPECT_EQ(guard_status()["denied_files"], 0);
}

TEST_F(GuardTest, AFileReplacedAtADeniedPathIsDeniedToo) {
    make_file(data_ + "/src/secret", "old secret\n");
    make_file(data_ + "/src/neighbour", "neighbour\n");
    make_file(data_ + "/src/real", "behind a symlink\n");
    ASSERT_EQ(symlink("real", (data_ + "/src/link").c_str()), 0);
    make_ns("dn", false);
    ok({"deny", "--ns", "dn", view_dir_ + "/secret"});
    ok({"deny", "--ns", "dn", view_dir_ + "/link"});
    auto cat_in_view = [&](const std::string& path) {
        return ctl({"run", "--ns", "dn", "--", "/bin/cat", path});
    };
    auto denied = [&](const std::string& path) {
        auto r = cat_in_view(path);
        return r.exit_code != 0 && r.err.find("Permission denied") != std::string::npos;
    };
    ASSERT_TRUE(denied(view_dir_ + "/secret"));

    // What an editor or passwd does: a new file renamed over the old one.
    make_file(data_ + "/src/secret.new", "new secret\n");
    ASSERT_EQ(rename((data_ + "/src/secret.new").c_str(), (data_ + "/src/secret").c_str()), 0);
    EXPECT_TRUE(denied(view_dir_ + "/secret"));
    EXPECT_TRUE(denied(data_ + "/src/secret"));  // the same dentry, by its host path
    // Removed, then made anew.
    ASSERT_EQ(unlink((data_ + "/src/secret").c_str()), 0);
    make_file(data_ + "/src/secret", "newer secret\n");
    EXPECT_TRUE(denied(view_dir_ + "/secret"));
    // Control: the file beside it, and the new file once it has another name.
    EXPECT_EQ(cat_in_view(view_dir_ + "/neighbour").out, "neighbour\n");
    ASSERT_EQ(rename((data_ + "/src/secret").c_str(), (data_ + "/src/moved").c_str()), 0);
    EXPECT_EQ(cat_in_view(view_dir_ + "/moved").out, "newer secret\n");

    // A path ending in a symlink is denied by the inode it led to when the entry was made:
    // its target by inode, not the symlink's name.
    EXPECT_TRUE(denied(view_dir_ + "/link"));
    EXPECT_TRUE(denied(view_dir_ + "/real"));
    ASSERT_EQ(unlink((data_ + "/src/real").c_str()), 0);
    make_file(data_ + "/src/real", "replaced target\n");
    EXPECT_EQ(cat_in_view(view_dir_ + "/link").out, "replaced target\n");
}

TEST_F(GuardTest, SatelliteMembersAreDeniedToo) {
    make_file(data_ + "/mine/secret", "secret\n");
    chown((data_ + "/mine").c_str(), kOtherUid, kOtherGid);
    chown((data_ + "/mine/secret").c_str(), kOtherUid, kOtherGid);
    RunOptions user;
    user.uid = kOtherUid;
    ok({"ns", "create", "theirs"}, user);
    ok({"deny", "--ns", "theirs", data_ + "/mine/secret"}, user);
    auto r = ctl({"run", "--ns", "theirs", "--", "/bin/cat", data_ + "/mine/secret"}, user);
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
    EXPECT_EQ(run({"/bin/cat", data_ + "/mine/secret"}, user).out, "secret\n");
}

TEST_F(GuardTest, DenyNeedsAnExistingFileReachableByTheEditor) {
    make_ns("dn", false);
    std::string before = export_of(pnsd(), "dn");
    auto missing = ctl({"deny", "--ns", "dn", view_dir_ + "/nothing"});
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("No such file"), std::string::npos) << missing.err;
    auto directory = ctl({"deny", "--ns", "dn", view_dir_});
    EXPECT_NE(directory.exit_code, 0);
    EXPECT_NE(directory.err.find("a directory"), std::string::npos) << directory.err;
    // uid 4242 cannot reach a root-only file, so may not deny it (nor learn its inode).
    make_file(data_ + "/closed/f", "x");
    chmod((data_ + "/closed").c_str(), 0700);
    RunOptions user;
    user.uid = kOtherUid;
    ok({"ns", "create", "theirs"}, user);
    auto hidden = ctl({"deny", "--ns", "theirs", data_ + "/closed/f"}, user);
    EXPECT_NE(hidden.exit_code, 0);
    EXPECT_NE(hidden.err.find("Permission denied"), std::string::npos) << hidden.err;
    EXPECT_EQ(export_of(pnsd(), "dn"), before);
    EXPECT_EQ(guard_status()["denied_files"], 0);
}

// Root that gave up its capabilities gets them all back at exec (uid 0): a gain of privilege,
// refused where a non-root user controls what an entry shows, allowed elsewhere.
TEST_F(GuardTest, NoPrivilegeIsGainedByExecWhereAUserControlsAnEntry) {
    make_ns("roots", false);
    std::string theirs = make_file(dir_.path() + "/user/conf", "mine\n");
    chown(theirs.c_str(), kOtherUid, kOtherGid);
    ok({"ns", "create", "mixed"});
    ok({"bind", "--ns", "mixed", theirs, data_ + "/src/file"});
    std::vector<std::string> regain = {"dropcaps-exec", ops_, "caps"};
    std::string full = control({"caps"});
    ASSERT_TRUE(full.starts_with("CapEff:")) << full;
    EXPECT_EQ(member("roots", regain), full);
    EXPECT_EQ(member("mixed", regain), "exec: errno 1 (EPERM)\n");
}

}  // namespace
}  // namespace pns::test
