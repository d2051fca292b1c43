// Deployment (issue 11, case 8): the directories pnsd is given and the files it makes in them.
// Whoever can write in the state, runtime or socket directory (or swap one on the path to it)
// can plant a symbolic link where root will open, chmod or mount, or a file root will trust.
// pnsd refuses such directories at start, with one line naming the fix, and opens nothing in
// its own directories through a link. Each test: the sabotaged layout is refused or the link
// is not followed (its target keeps its mode and content), and the same layout done properly
// starts and serves.
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/attack/attack.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

class Deployment : public PrivTest {
  protected:
    // The layout under test: the socket in a directory of its own, so that each directory can
    // be sabotaged alone.
    void SetUp() override {
        PrivTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        root_ = dir_.path();
        sock_dir_ = make_dir(root_ + "/sock");
        state_ = root_ + "/state";
        run_ = root_ + "/run";
        pnsd_.emplace(root_);
        pnsd_->set_paths(sock_dir_ + "/pnsd.sock", state_, run_);
    }

    // pnsd must refuse to start, saying `message` (and `fix`), and leave no socket behind.
    void expect_refused(const std::string& message, const std::string& fix) {
        EXPECT_EQ(pnsd_->start_refused(), 1);
        std::string log = pnsd_->log_since_start();
        EXPECT_NE(log.find(message), std::string::npos) << log;
        EXPECT_NE(log.find(fix), std::string::npos) << log;
        EXPECT_FALSE(exists(pnsd_->socket()));
    }

    // The control: pnsd starts on the layout as it is now and serves an ordinary user.
    void expect_serves() {
        ASSERT_TRUE(pnsd_->start());
        auto r = pnsd_->ctl({"ns", "create", "probe"}, {.uid = kOtherUid});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(pnsd_->ctl({"ns", "rm", "probe"}, {.uid = kOtherUid}).exit_code, 0);
        EXPECT_EQ(pnsd_->stop(), 0);
    }

    static mode_t mode_of(const std::string& path) {
        struct stat st {};
        return ::lstat(path.c_str(), &st) == 0 ? st.st_mode : 0;
    }

    TempDir dir_;
    std::string root_, sock_dir_, state_, run_;
    std::optional<Pnsd> pnsd_;
};

// pnsd starts; a directory given to it is then made writable by others or handed to a user:
// every one is refused, and the refusal happens before anything is made in it.
TEST_F(Deployment, DirectoriesOthersCanWriteAreRefused) {
    ASSERT_NO_FATAL_FAILURE(expect_serves());
    struct Case {
        std::string dir;
        std::string kind;
    };
    for (const Case& c : {Case{state_, "state directory"}, Case{run_, "runtime directory"},
                          Case{sock_dir_, "socket directory"}}) {
        SCOPED_TRACE(c.kind);
        const std::string named = c.kind + " '" + c.dir + "'";
        // Writable by everybody, and sticky does not make it better (fixed names in it).
        ASSERT_EQ(::chmod(c.dir.c_str(), 0777), 0);
        expect_refused(named + " is writable by group or others (mode 0777)",
                       "chmod go-w '" + c.dir + "'");
        ASSERT_EQ(::chmod(c.dir.c_str(), 01777), 0);
        expect_refused(named + " is writable by group or others (mode 1777)", "chmod go-w");
        // Owned by the attacker, even if closed to everybody else.
        ASSERT_EQ(::chmod(c.dir.c_str(), 0755), 0);
        ASSERT_EQ(::chown(c.dir.c_str(), kOtherUid, kOtherGid), 0);
        expect_refused(named + " is owned by uid " + std::to_string(kOtherUid) + ", not root",
                       "chown root '" + c.dir + "'");
        ASSERT_EQ(::chown(c.dir.c_str(), 0, 0), 0);
    }
    // Back to root's alone: it starts.
    ASSERT_NO_FATAL_FAILURE(expect_serves());
}

// A directory on the way there owned by the attacker: they could rename the real one away and
// put theirs in its place after pnsd looked.
TEST_F(Deployment, APathAUserCanChangeIsRefused) {
    const std::string home = make_dir(root_ + "/home");
    ASSERT_EQ(::chown(home.c_str(), kOtherUid, kOtherGid), 0);
    const std::string state = home + "/state";
    pnsd_->set_paths(sock_dir_ + "/pnsd.sock", state, run_);
    expect_refused("'" + home + "', on the path to the state directory '" + state +
                       "', is owned by uid " + std::to_string(kOtherUid),
                   "chown root '" + home + "'");
    EXPECT_FALSE(exists(state)) << "pnsd made its state directory in the attacker's";
    // A link on the path that the attacker owns is not followed either.
    const std::string real = make_dir(root_ + "/real");
    ASSERT_EQ(::symlink(real.c_str(), (root_ + "/link").c_str()), 0);
    ASSERT_EQ(::lchown((root_ + "/link").c_str(), kOtherUid, kOtherGid), 0);
    pnsd_->set_paths(sock_dir_ + "/pnsd.sock", root_ + "/link/state", run_);
    expect_refused("'" + root_ + "/link', on the path to the state directory",
                   "is a symbolic link owned by uid " + std::to_string(kOtherUid));
    EXPECT_FALSE(exists(real + "/state"));

    // Control: the same through root's link, and root's directory.
    ASSERT_EQ(::lchown((root_ + "/link").c_str(), 0, 0), 0);
    ASSERT_NO_FATAL_FAILURE(expect_serves());
    EXPECT_TRUE(exists(real + "/state/namespaces"));
}

// A symbolic link at the socket's name (to a file root keeps private): pnsd neither replaces
// nor chmods it; the socket it does make is born 0666 (no chmod by path at all).
TEST_F(Deployment, LinkAtTheSocketPathIsNotFollowed) {
    const std::string secret = make_file(root_ + "/secret", "secret\n");
    ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
    ASSERT_EQ(::symlink(secret.c_str(), pnsd_->socket().c_str()), 0);
    EXPECT_EQ(pnsd_->start_refused(), 1);
    EXPECT_NE(pnsd_->log_since_start().find("exists and is not a socket"), std::string::npos)
        << pnsd_->log_since_start();
    EXPECT_EQ(mode_of(secret) & 07777, 0600u);
    EXPECT_EQ(read_file(secret), "secret\n");
    EXPECT_TRUE(S_ISLNK(mode_of(pnsd_->socket()))) << "the link was replaced";

    // Control: without the link, the socket is there, 0666, and serves another uid.
    ASSERT_EQ(::unlink(pnsd_->socket().c_str()), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_TRUE(S_ISSOCK(mode_of(pnsd_->socket())));
    EXPECT_EQ(mode_of(pnsd_->socket()) & 07777, 0666u);
    EXPECT_EQ(pnsd_->ctl({"ns", "ls"}, {.uid = kOtherUid}).exit_code, 0);
    EXPECT_EQ(pnsd_->stop(), 0);
    EXPECT_FALSE(exists(pnsd_->socket()));
    EXPECT_EQ(mode_of(secret) & 07777, 0600u);
}

// A link at the lock's name: root would create its target (a file wherever the link points)
// or open it for writing and lock it.
TEST_F(Deployment, LinkAtTheLockIsNotFollowed) {
    ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
    const std::string nowhere = root_ + "/created-by-root";
    ASSERT_EQ(::symlink(nowhere.c_str(), (state_ + "/lock").c_str()), 0);
    expect_refused("'" + state_ + "/lock' is a symbolic link", "remove it");
    EXPECT_FALSE(exists(nowhere)) << "pnsd created the link's target";

    const std::string victim = make_file(root_ + "/victim", "data\n");
    ASSERT_EQ(::chmod(victim.c_str(), 0644), 0);
    ASSERT_EQ(::unlink((state_ + "/lock").c_str()), 0);
    ASSERT_EQ(::symlink(victim.c_str(), (state_ + "/lock").c_str()), 0);
    expect_refused("'" + state_ + "/lock' is a symbolic link", "remove it");
    EXPECT_EQ(read_file(victim), "data\n");
    EXPECT_EQ(mode_of(victim) & 07777, 0644u);

    // Control: no link, and the lock is a plain file of pnsd's.
    ASSERT_EQ(::unlink((state_ + "/lock").c_str()), 0);
    ASSERT_NO_FATAL_FAILURE(expect_serves());
    EXPECT_TRUE(S_ISREG(mode_of(state_ + "/lock")));
}

// Links where pnsd keeps its tables and writes them: the namespaces directory, and the
// temporary file a table is written through before its rename.
TEST_F(Deployment, LinksInTheStateDirectoryAreNotFollowed) {
    ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
    const std::string elsewhere = make_dir(root_ + "/elsewhere");
    ASSERT_EQ(::symlink(elsewhere.c_str(), (state_ + "/namespaces").c_str()), 0);
    expect_refused("'" + state_ + "/namespaces' is a symbolic link", "remove it");

    ASSERT_EQ(::unlink((state_ + "/namespaces").c_str()), 0);
    ASSERT_TRUE(pnsd_->start());
    ASSERT_EQ(pnsd_->ctl({"ns", "create", "dev"}).exit_code, 0);
    EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
    EXPECT_TRUE(exists(state_ + "/namespaces/dev.json"));

    // A link at the name the next save of "dev" is written through first.
    const std::string victim = make_file(root_ + "/victim", "keep\n");
    ASSERT_EQ(::chmod(victim.c_str(), 0644), 0);
    ASSERT_EQ(::symlink(victim.c_str(), (state_ + "/namespaces/.dev.tmp").c_str()), 0);
    const std::string x = make_dir(root_ + "/dst/x");
    auto r = pnsd_->ctl({"hide", "--ns", "dev", x});
    EXPECT_EQ(r.exit_code, 0) << r.err;  // the save goes through a file of its own
    EXPECT_EQ(read_file(victim), "keep\n");
    EXPECT_EQ(mode_of(victim) & 07777, 0644u);
    EXPECT_TRUE(S_ISREG(mode_of(state_ + "/namespaces/dev.json")));
    EXPECT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(export_of(*pnsd_, "dev"), "hide " + x + "\n");
    EXPECT_EQ(pnsd_->stop(), 0);
}

// A link at the views directory, where pnsd mounts and pins every view.
TEST_F(Deployment, LinksInTheRuntimeDirectoryAreNotFollowed) {
    ASSERT_EQ(::mkdir(run_.c_str(), 0755), 0);
    const std::string elsewhere = make_dir(root_ + "/elsewhere");
    ASSERT_EQ(::symlink(elsewhere.c_str(), (run_ + "/views").c_str()), 0);
    expect_refused("'" + run_ + "/views' is a symbolic link", "remove it");
    EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
    EXPECT_EQ(mount_id(elsewhere, pnsd_->sandbox_pid()), -1) << "something was mounted there";

    ASSERT_EQ(::unlink((run_ + "/views").c_str()), 0);
    ASSERT_NO_FATAL_FAILURE(expect_serves());
    EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
}

// The BPF pin directory: whoever could write there could pin maps of their own under the names
// pnsd reuses at its next start (its policies, its views). On a bpffs mounted without mode=
// (1777, sticky) anyone can make it before pnsd first does. One a user owns is refused; so is a
// parent writable by others that is not sticky. Control: the pnsd-made one, under a sticky or
// root-only parent.
TEST_F(Deployment, APinDirectoryAUserCanWriteIsRefused) {
    if (auto missing = missing_host_prerequisite(); !missing.empty())
        GTEST_SKIP() << "this host lacks " << missing;
    ASSERT_TRUE(pnsd_->start());  // mounts bpffs in its sandbox, and pins there
    ASSERT_EQ(ctl_json(*pnsd_, {"status"})["tracker"]["state"], "active");
    ASSERT_EQ(pnsd_->stop(), 0);
    const std::string pins = pnsd_->bpf_dir();  // as this process reaches it
    const std::string parent = std::filesystem::path(pins).parent_path();
    const std::string named = std::filesystem::path(pins).filename();

    ASSERT_EQ(::chown(pins.c_str(), kOtherUid, kOtherGid), 0);
    expect_refused("/" + named + "' is owned by uid " + std::to_string(kOtherUid), "chown root");
    ASSERT_EQ(::chown(pins.c_str(), 0, 0), 0);
    ASSERT_EQ(::chmod(pins.c_str(), 0733), 0);
    expect_refused("/" + named + "' is writable by group or others (mode 0733)", "chmod go-w");
    ASSERT_EQ(::chmod(pins.c_str(), 0700), 0);

    ASSERT_EQ(::chmod(parent.c_str(), 0777), 0);
    expect_refused(
        "parent of the BPF pin directory '/sys/fs/bpf' is writable by group or others "
        "and not sticky (mode 0777)",
        "chmod go-w '/sys/fs/bpf'");
    ASSERT_EQ(::chmod(parent.c_str(), 01777), 0);  // bpffs' default: fine
    ASSERT_NO_FATAL_FAILURE(expect_serves());
    ASSERT_EQ(::chmod(parent.c_str(), 0700), 0);
    ASSERT_NO_FATAL_FAILURE(expect_serves());
}

}  // namespace
}  // namespace pns::test
