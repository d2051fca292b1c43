// Views: tables realized as live mount namespaces (issue 3). A real pnsd, real views, real
// processes inside them (joined with pns-test-enter until pnsd's joiner exists), an
// unprivileged uid in satellites.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* enter_path() {
    return PNS_ENTER_PATH;
}

// Mount points under `dir` in the mount table of process `pid` (pnsd's host: the harness
// runs pnsd in a namespace of its own).
std::vector<std::string> mounts_under(pid_t pid, const std::string& dir) {
    std::vector<std::string> found;
    std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        fields >> id >> parent >> dev >> root >> mount_point;
        if (mount_point == dir || mount_point.starts_with(dir + "/")) found.push_back(mount_point);
    }
    return found;
}

// How to get into a view: the pins, and for a satellite the member's uid.
struct Way {
    std::vector<std::string> argv;  // pns-test-enter ... --
};

// A process living inside a view that reads a path each time it is asked: a member that
// never restarts, to see edits arrive live.
class Member {
  public:
    Member(const Way& way) : proc_(with_reader(way)) {}
    pid_t pid() const { return proc_.pid(); }

    // The content of `path` as the member sees it now.
    std::string read(const std::string& path) {
        proc_.send(path);
        std::string got;
        auto deadline = Clock::now() + std::chrono::seconds(20);
        while (Clock::now() < deadline) {
            std::string line = proc_.line(std::chrono::seconds(20));
            if (line == "<<end>>") return got;
            got += line + "\n";
        }
        return "NO ANSWER";
    }

  private:
    static std::vector<std::string> with_reader(const Way& way) {
        std::vector<std::string> argv = way.argv;
        argv.insert(argv.end(), {"/bin/sh", "-c",
                                 "while read -r p; do cat \"$p\" 2>/dev/null || echo MISSING; "
                                 "echo '<<end>>'; done"});
        return argv;
    }
    Proc proc_;
};

class ViewsTest : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        data_ = dir_.path() + "/data";
        std::filesystem::create_directories(data_);
        chmod(data_.c_str(), 0755);
    }

    std::string data(const std::string& rel) const { return data_ + "/" + rel; }

    // A path in pnsd's own mount namespace, as the test reaches it.
    std::string in_pnsd_ns(const std::string& path) const {
        return "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/root" + path;
    }

    // Into the primary, as root.
    Way primary(const std::string& name) const {
        return Way{{enter_path(), "--mnt",
                    in_pnsd_ns(pnsd_->runtime_dir() + "/views/" + name + "/mnt"), "--"}};
    }

    // Runs a command in pnsd's own mount namespace (to mount there, as a user would).
    Output in_host(const std::vector<std::string>& cmd) {
        std::vector<std::string> argv = {
            enter_path(), "--mnt", "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt",
            "--"};
        argv.insert(argv.end(), cmd.begin(), cmd.end());
        return run(argv);
    }

    // Into the satellite of `uid` (made on demand by pnsd), as that uid.
    Way satellite(const std::string& name, uid_t uid) {
        RawClient client(pnsd_->socket());
        json r = client.call(request("ns.view", {{"name", name}, {"uid", uid}}));
        EXPECT_TRUE(r.value("ok", false)) << r.dump();
        if (!r.value("ok", false)) return Way{{"/bin/false", "--"}};
        const json& sat = r["result"]["satellite"];
        return Way{{enter_path(), "--uid", std::to_string(uid), "--user",
                    in_pnsd_ns(sat["user"].get<std::string>()), "--mnt",
                    in_pnsd_ns(sat["mnt"].get<std::string>()), "--"}};
    }

    Output in(const Way& way, const std::string& script) {
        std::vector<std::string> argv = way.argv;
        argv.insert(argv.end(), {"/bin/sh", "-c", script});
        return run(argv);
    }

    std::string data_;
};

TEST_F(ViewsTest, BindShowsTheFileInTheViewOnly) {
    write_file(data("app.conf"), "orig\n");
    write_file(data("alt.conf"), "alt\n");
    ok({"ns", "create", "dev"});
    ok({"bind", "--ns", "dev", data("alt.conf"), data("app.conf")});
    auto r = in(primary("dev"), "cat " + data("app.conf"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "alt\n");
    EXPECT_EQ(read_file(data("app.conf")), "orig\n");
}

TEST_F(ViewsTest, LiveEditsReachARunningMemberAndNobodyElse) {
    write_file(data("app.conf"), "orig\n");
    write_file(data("alt.conf"), "alt\n");
    ok({"ns", "create", "dev"});
    Member member(primary("dev"));
    EXPECT_EQ(member.read(data("app.conf")), "orig\n");
    for (int round = 0; round < 3; ++round) {
        ok({"bind", "--ns", "dev", data("alt.conf"), data("app.conf")});
        EXPECT_EQ(member.read(data("app.conf")), "alt\n");
        EXPECT_EQ(read_file(data("app.conf")), "orig\n");
        ok({"unbind", "--ns", "dev", data("app.conf")});
        EXPECT_EQ(member.read(data("app.conf")), "orig\n");
    }
}

TEST_F(ViewsTest, SatelliteFollowsEditsAndCannotUndoThem) {
    std::string home = data("home");
    std::filesystem::create_directories(home);
    chown(home.c_str(), kOtherUid, kOtherGid);
    write_file(home + "/mine.conf", "mine\n");
    write_file(data("app.conf"), "orig\n");
    write_file(data("other.conf"), "other\n");
    RunOptions as_user{.uid = kOtherUid, .gid = kOtherGid};
    ok({"ns", "create", "u"}, as_user);
    ok({"bind", "--ns", "u", home + "/mine.conf", data("app.conf")}, as_user);

    Way way = satellite("u", kOtherUid);
    Member member(way);
    EXPECT_EQ(member.read(data("app.conf")), "mine\n");
    auto id = in(way, "id -u");
    EXPECT_EQ(id.out, std::to_string(kOtherUid) + "\n") << id.err;

    // An edit made once in the primary propagates to the satellite.
    ok({"bind", "--ns", "u", data("other.conf"), data("other.conf")}, as_user);
    ok({"unbind", "--ns", "u", data("app.conf")}, as_user);
    ok({"bind", "--ns", "u", data("other.conf"), data("app.conf")}, as_user);
    EXPECT_EQ(member.read(data("app.conf")), "other\n");

    // The entry's mount is locked: the member cannot take it off to see what is beneath.
    std::string tool = dir_.path() + "/reader";
    std::filesystem::copy_file(PNS_STATIC_READER_PATH, tool);
    chmod(tool.c_str(), 0755);
    auto umount = in(way, tool + " umount " + data("app.conf"));
    EXPECT_NE(umount.exit_code, 0);
    EXPECT_EQ(member.read(data("app.conf")), "other\n");
}

TEST_F(ViewsTest, SetUidRootDoesNotElevateInASatellite) {
    std::string id = dir_.path() + "/suid-id";
    std::filesystem::copy_file("/usr/bin/id", id);
    chmod(id.c_str(), 04755);
    // Control: outside any view the copy does elevate, so the check below means something.
    auto outside = run({id}, {.uid = kOtherUid, .gid = kOtherGid});
    ASSERT_NE(outside.out.find("euid=0"), std::string::npos) << outside.out;

    ok({"ns", "create", "u"}, {.uid = kOtherUid, .gid = kOtherGid});
    auto inside = in(satellite("u", kOtherUid), id);
    EXPECT_EQ(inside.exit_code, 0) << inside.err;
    EXPECT_EQ(inside.out.find("euid=0"), std::string::npos) << inside.out;
    EXPECT_NE(inside.out.find("uid=" + std::to_string(kOtherUid)), std::string::npos);
}

TEST_F(ViewsTest, UnionsSearchInOrderAndCreateInSource) {
    std::filesystem::create_directories(data("low"));
    std::filesystem::create_directories(data("src"));
    std::filesystem::create_directories(data("new"));
    write_file(data("low/both"), "low\n");
    write_file(data("low/l"), "l\n");
    write_file(data("src/both"), "src\n");
    write_file(data("src/s"), "s\n");
    ok({"ns", "create", "un"});

    ok({"bind", "-b", "--ns", "un", data("src"), data("low")});
    auto r = in(primary("un"), "cat " + data("low/both") + "; ls " + data("low"));
    EXPECT_EQ(r.out, "src\nboth\nl\ns\n") << r.err;
    r = in(primary("un"), "touch " + data("low/x"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Read-only"), std::string::npos) << r.err;

    ok({"unbind", "--ns", "un", data("low")});
    ok({"bind", "-a", "--ns", "un", data("src"), data("low")});
    r = in(primary("un"), "cat " + data("low/both"));
    EXPECT_EQ(r.out, "low\n") << r.err;

    ok({"unbind", "--ns", "un", data("low")});
    ok({"bind", "-bc", "--ns", "un", data("new"), data("low")});
    r = in(primary("un"), "echo made > " + data("low/created") + " && cat " + data("low/l"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "l\n");
    EXPECT_EQ(read_file(data("new/created")), "made\n");
    EXPECT_FALSE(exists(data("low/created")));

    auto refused = ctl({"bind", "-ac", "--ns", "un", data("src"), data("l2")});
    EXPECT_NE(refused.exit_code, 0);
}

// An ordinary user's unions are made as that user (agent/views/unions.hpp) and work for the user's
// processes in their satellite: the read-only union searches its layers, the writable one
// creates, renames and changes the user's files in SRC; root's files can be read through it
// but not copied up into SRC (EOVERFLOW).
TEST_F(ViewsTest, AUsersUnionsWorkInTheirSatellite) {
    const RunOptions as_user{.uid = kOtherUid, .gid = kOtherGid};
    for (const char* d : {"low", "src", "home", "home/new"}) {
        std::filesystem::create_directories(data(d));
        ASSERT_EQ(::chown(data(d).c_str(), kOtherUid, kOtherGid), 0);
    }
    write_file(data("low/mine"), "mine\n");
    ASSERT_EQ(::chown(data("low/mine").c_str(), kOtherUid, kOtherGid), 0);
    write_file(data("low/roots"), "root's\n");
    write_file(data("src/s"), "s\n");
    ok({"ns", "create", "u"}, as_user);
    ok({"bind", "-b", "--ns", "u", data("src"), data("low")}, as_user);
    Way way = satellite("u", kOtherUid);
    auto r = in(way, "cat " + data("low/s") + " " + data("low/roots") + "; ls " + data("low"));
    EXPECT_EQ(r.out, "s\nroot's\nmine\nroots\ns\n") << r.err;

    ok({"unbind", "--ns", "u", data("low")}, as_user);
    ok({"bind", "-bc", "--ns", "u", data("home/new"), data("low")}, as_user);
    r = in(way, "echo made > " + data("low/made") + " && mv " + data("low/mine") + " " +
                    data("low/moved") + " && echo more >> " + data("low/moved") + " && cat " +
                    data("low/roots"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "root's\n");
    EXPECT_EQ(read_file(data("home/new/made")), "made\n");
    EXPECT_EQ(read_file(data("home/new/moved")), "mine\nmore\n");
    EXPECT_EQ(read_file(data("low/mine")), "mine\n");
    r = in(way, "mv " + data("low/roots") + " " + data("low/taken"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Value too large"), std::string::npos) << r.err;
    EXPECT_FALSE(exists(data("home/new/taken")));
}

TEST_F(ViewsTest, HideReadOnlyAndTmpfs) {
    std::filesystem::create_directories(data("secret"));
    write_file(data("secret/key"), "key\n");
    write_file(data("file"), "content\n");
    std::filesystem::create_directories(data("rodir"));
    std::filesystem::create_directories(data("scratch"));
    write_file(data("scratch/old"), "old\n");
    ok({"ns", "create", "h"});
    ok({"hide", "--ns", "h", data("secret")});
    ok({"hide", "--ns", "h", data("file")});
    ok({"ro", "--ns", "h", data("rodir")});
    ok({"tmpfs", "--ns", "h", data("scratch")});

    Way view = primary("h");
    EXPECT_EQ(in(view, "ls -A " + data("secret")).out, "");
    auto cat = in(view, "cat " + data("file"));
    EXPECT_EQ(cat.exit_code, 0);
    EXPECT_EQ(cat.out, "");
    auto write = in(view, "touch " + data("rodir/x"));
    EXPECT_NE(write.exit_code, 0);
    EXPECT_NE(write.err.find("Read-only file system"), std::string::npos) << write.err;
    auto scratch = in(view, "ls -A " + data("scratch") + "; echo new > " + data("scratch/n") +
                                " && cat " + data("scratch/n"));
    EXPECT_EQ(scratch.out, "new\n") << scratch.err;
    // The host keeps its files, and sees none of the view's.
    EXPECT_EQ(read_file(data("secret/key")), "key\n");
    EXPECT_FALSE(exists(data("scratch/n")));
    EXPECT_TRUE(exists(data("scratch/old")));
    EXPECT_FALSE(exists(data("rodir/x")));
}

TEST_F(ViewsTest, MissingTargetIsMadeInTheViewOnly) {
    write_file(data("alt.conf"), "alt\n");
    std::filesystem::create_directories(data("tree/sub"));
    write_file(data("sibling"), "sibling\n");
    ok({"ns", "create", "m"});
    ok({"bind", "--ns", "m", data("alt.conf"), data("nowhere/deep/app.conf")});
    ok({"bind", "--ns", "m", data("tree"), data("newdir")});
    Way view = primary("m");
    EXPECT_EQ(in(view, "cat " + data("nowhere/deep/app.conf")).out, "alt\n");
    EXPECT_EQ(in(view, "ls " + data("newdir")).out, "sub\n");
    // The parent still lists, and leads to, what it held.
    EXPECT_EQ(in(view, "cat " + data("sibling")).out, "sibling\n");
    EXPECT_FALSE(exists(data("nowhere")));
    EXPECT_FALSE(exists(data("newdir")));
}

TEST_F(ViewsTest, UserMountBoundIntoAView) {
    std::string mnt = dir_.path() + "/usermnt";
    std::filesystem::create_directories(mnt);
    auto mounted = in_host({"/bin/mount", "-t", "tmpfs", "-o", "size=1m", "pns-test", mnt});
    ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
    auto wrote = in_host({"/bin/sh", "-c", "echo remote > " + mnt + "/remote"});
    ASSERT_EQ(wrote.exit_code, 0) << wrote.err;
    std::filesystem::create_directories(data("target"));
    ok({"ns", "create", "f"});
    ok({"bind", "--ns", "f", mnt, data("target")});
    EXPECT_EQ(in(primary("f"), "cat " + data("target/remote")).out, "remote\n");
    // Taking the entry off leaves the user's own mount where it was.
    ok({"ns", "rm", "f"});
    EXPECT_EQ(in_host({"/bin/cat", mnt + "/remote"}).out, "remote\n");
    EXPECT_EQ(in_host({"/bin/umount", mnt}).exit_code, 0);
}

TEST_F(ViewsTest, TakingABindOffNeverUnmountsItsSourceOrTheHost) {
    // A source with a mount below it, and '/' itself (with /proc, /sys, /dev below).
    std::filesystem::create_directories(data("src/sub"));
    std::filesystem::create_directories(data("dst"));
    std::filesystem::create_directories(data("root"));
    ASSERT_EQ(in_host({"/bin/mount", "-t", "tmpfs", "pns-sub", data("src/sub")}).exit_code, 0);
    ASSERT_EQ(in_host({"/bin/sh", "-c", "echo sub > " + data("src/sub/f")}).exit_code, 0);
    RunOptions as_user{.uid = kOtherUid, .gid = kOtherGid};
    ok({"ns", "create", "p"}, as_user);
    ok({"bind", "--ns", "p", data("src"), data("dst")}, as_user);
    ok({"bind", "--ns", "p", "/", data("root")}, as_user);
    EXPECT_EQ(in(primary("p"), "cat " + data("dst/sub/f")).out, "sub\n");
    ok({"unbind", "--ns", "p", data("dst")}, as_user);
    ok({"unbind", "--ns", "p", data("root")}, as_user);
    EXPECT_EQ(in_host({"/bin/cat", data("src/sub/f")}).out, "sub\n");
    auto proc =
        in_host({"/bin/sh", "-c", "test -e /proc/self/mountinfo && test -e /dev/null && echo ok"});
    EXPECT_EQ(proc.out, "ok\n");
    EXPECT_EQ(in_host({"/bin/umount", data("src/sub")}).exit_code, 0);
}

TEST_F(ViewsTest, PrivateDevHoldsOnlyChosenDevices) {
    ok({"ns", "create", "d"});
    ok({"hide", "--ns", "d", "/dev"});
    for (const char* dev : {"/dev/null", "/dev/zero", "/dev/urandom"})
        ok({"bind", "--ns", "d", dev, dev});
    Way view = primary("d");
    EXPECT_EQ(in(view, "ls /dev").out, "null\nurandom\nzero\n");
    auto use = in(view,
                  "head -c 16 /dev/zero | wc -c; head -c 16 /dev/urandom | wc -c; "
                  "echo gone > /dev/null && echo ok");
    EXPECT_EQ(use.out, "16\n16\nok\n") << use.err;
    EXPECT_GT(std::distance(std::filesystem::directory_iterator("/dev"), {}), 3);
}

TEST_F(ViewsTest, StaticBinaryWithRawSyscallsSeesTheView) {
    write_file(data("app.conf"), "orig\n");
    write_file(data("alt.conf"), "alt\n");
    ok({"ns", "create", "s"});
    ok({"bind", "--ns", "s", data("alt.conf"), data("app.conf")});
    std::vector<std::string> argv = primary("s").argv;
    argv.insert(argv.end(), {PNS_STATIC_READER_PATH, "cat", data("app.conf")});
    auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "alt\n");
}

TEST_F(ViewsTest, MembersKeepTheirViewWhenPnsdIsKilledAndEditsWorkAfter) {
    write_file(data("app.conf"), "orig\n");
    write_file(data("alt.conf"), "alt\n");
    ok({"ns", "create", "k"});
    ok({"bind", "--ns", "k", data("alt.conf"), data("app.conf")});
    Member member(primary("k"));
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
    pnsd_->kill9();
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
    ok({"unbind", "--ns", "k", data("app.conf")});
    EXPECT_EQ(member.read(data("app.conf")), "orig\n");
    ok({"bind", "--ns", "k", data("alt.conf"), data("app.conf")});
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
}

TEST_F(ViewsTest, SourcesAreLookedUpWithTheCallersCredentials) {
    std::string secret = data("rootonly");
    std::filesystem::create_directories(secret + "/inner");
    chmod(secret.c_str(), 0700);
    std::filesystem::create_directories(data("target"));
    RunOptions as_user{.uid = kOtherUid, .gid = kOtherGid};
    ok({"ns", "create", "c"}, as_user);
    auto denied = ctl({"bind", "--ns", "c", secret + "/inner", data("target")}, as_user);
    EXPECT_NE(denied.exit_code, 0);
    EXPECT_NE(denied.err.find("Permission denied"), std::string::npos) << denied.err;
    EXPECT_EQ(export_of(*pnsd_, "c"), "");
    // Root may bind it into the same namespace: the lookup is the requester's.
    ok({"bind", "--ns", "c", secret + "/inner", data("target")});
}

TEST_F(ViewsTest, RemovingANamespaceWithMembersIsRefused) {
    ok({"ns", "create", "r"});
    Member member(primary("r"));
    EXPECT_EQ(member.read("/etc/hostname").empty(), false);
    auto refused = ctl({"ns", "rm", "r"});
    EXPECT_NE(refused.exit_code, 0);
    EXPECT_NE(refused.err.find(std::to_string(member.pid())), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
    auto forced = ctl({"ns", "rm", "--force", "r"});
    EXPECT_EQ(forced.exit_code, 0) << forced.err;
    EXPECT_NE(forced.out.find(std::to_string(member.pid())), std::string::npos) << forced.out;
    EXPECT_NE(forced.out.find("keep the view"), std::string::npos) << forced.out;
    EXPECT_NE(member.read("/etc/hostname"), "NO ANSWER");
    // Only root may force it.
    ok({"ns", "create", "r2"}, {.uid = kOtherUid, .gid = kOtherGid});
    Member other(satellite("r2", kOtherUid));
    EXPECT_EQ(other.read("/etc/hostname").empty(), false);
    auto denied = ctl({"ns", "rm", "--force", "r2"}, {.uid = kOtherUid, .gid = kOtherGid});
    EXPECT_NE(denied.exit_code, 0);
    EXPECT_NE(denied.err.find("only root"), std::string::npos) << denied.err;
}

TEST_F(ViewsTest, AFailedEditLeavesViewAndTableAsTheyWere) {
    write_file(data("app.conf"), "orig\n");
    write_file(data("alt.conf"), "alt\n");
    ok({"ns", "create", "e"});
    ok({"bind", "--ns", "e", data("alt.conf"), data("app.conf")});
    ok({"tmpfs", "--ns", "e", data_});
    Member member(primary("e"));
    EXPECT_EQ(in(primary("e"), "echo kept > " + data("kept")).exit_code, 0);
    std::string before = export_of(*pnsd_, "e");
    auto generation = generation_of(*pnsd_, "e");
    // The second entry fails inside the view, after the first has been taken off and put
    // back in another order: everything must return to where it was.
    std::string table = "tmpfs " + data_ + "\nbind " + data("alt.conf") + " /etc/hostname/x\n";
    auto r = ctl({"apply", "--ns", "e", "-"}, {.stdin_data = table});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("/etc/hostname/x"), std::string::npos) << r.err;
    EXPECT_EQ(export_of(*pnsd_, "e"), before);
    EXPECT_EQ(generation_of(*pnsd_, "e"), generation);
    // The same tmpfs (its file kept) is on top again, the bind below it.
    EXPECT_EQ(member.read(data("kept")), "kept\n");
    EXPECT_EQ(member.read(data("app.conf")), "MISSING\n");
    ok({"unbind", "--ns", "e", data_});
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
    // A source that cannot be found fails before the view is touched.
    r = ctl({"bind", "--ns", "e", "/nonexistent/source", data("x")});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("/nonexistent/source"), std::string::npos) << r.err;
    EXPECT_EQ(member.read(data("app.conf")), "alt\n");
}

TEST_F(ViewsTest, ExplainNamesTheServingEntry) {
    ok({"ns", "create", "x"});
    ok({"bind", "--ns", "x", "/usr/share", data("share")});
    auto r = ctl({"--json", "explain", "--ns", "x", data("share/doc/x")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json j = parse_json(r.out);
    EXPECT_EQ(j.value("resolves_to", ""), "/usr/share/doc/x");
    EXPECT_EQ(j.value("entry", 0), 1);
    r = ctl({"--json", "explain", "--ns", "x", "/etc"});
    j = parse_json(r.out);
    EXPECT_TRUE(j["entry"].is_null());
}

TEST_F(ViewsTest, NothingIsLeftMountedOnTheHost) {
    write_file(data("alt.conf"), "alt\n");
    write_file(data("app.conf"), "orig\n");
    ok({"ns", "create", "l"});
    ok({"bind", "--ns", "l", data("alt.conf"), data("app.conf")});
    ok({"tmpfs", "--ns", "l", data_});
    ok({"ns", "create", "u"}, {.uid = kOtherUid, .gid = kOtherGid});
    (void)satellite("u", kOtherUid);
    // Only pnsd's own pins live on its host: the views directory and one pin per view.
    auto mounts = mounts_under(pnsd_->sandbox_pid(), dir_.path());
    for (const auto& m : mounts) EXPECT_TRUE(m.starts_with(pnsd_->runtime_dir() + "/views")) << m;
    ok({"ns", "rm", "l"});
    ok({"ns", "rm", "u"});
    EXPECT_EQ(mounts_under(pnsd_->sandbox_pid(), dir_.path()),
              std::vector<std::string>{pnsd_->runtime_dir() + "/views"});
}

}  // namespace
}  // namespace pns::test

namespace pns::test {
namespace {

// `deny` is the LSM guard's: where the guard is unavailable (this machine kind's kernel
// refuses LSM programs) the entry is refused with the reason and the table stays as it was;
// where it is active (the VM), it is taken. Both ways are checked against pnsctl status.
class DenyTest : public PnsdTest {};

TEST_F(DenyTest, DenyEntriesAreRefusedWithoutTheGuard) {
    std::string file = make_file(dir_.path() + "/secret", "x");
    ok({"ns", "create", "dn"});
    std::string before = export_of(pnsd(), "dn");
    auto guard = ctl_json(pnsd(), {"status"})["guard"];
    auto r = ctl({"deny", "--ns", "dn", file});
    if (guard["state"] == "active") {
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(export_of(pnsd(), "dn"), "deny " + file + "\n");
        return;
    }
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(is_one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("deny entries need the LSM guard, which is unavailable: " +
                         guard["reason"].get<std::string>()),
              std::string::npos)
        << r.err;
    EXPECT_EQ(export_of(pnsd(), "dn"), before);
    auto status = ctl({"status"});
    EXPECT_NE(status.out.find("lsm guard:   unavailable ("), std::string::npos) << status.out;
}

}  // namespace
}  // namespace pns::test
