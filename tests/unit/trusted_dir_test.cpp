// Which directories pnsd trusts with root's files (agent/trusted_dir.hpp): the rule on its own,
// and the walk from '/' on real directories made by the test's own uid.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "agent/trusted_dir.hpp"
#include "test_util.hpp"

namespace pns::agent {
namespace {

namespace fs = std::filesystem;
using test::Contains;
using test::FailsWith;
using test::Succeeds;

struct stat dir_stat(uid_t uid, mode_t mode) {
    struct stat st {};
    st.st_uid = uid;
    st.st_mode = S_IFDIR | mode;
    return st;
}

Status own(uid_t uid, mode_t mode) {
    return check_trusted(dir_stat(uid, mode), 0, DirRole::kOwn, "state directory '/s'", "/s");
}
Status on_path(uid_t uid, mode_t mode) {
    return check_trusted(dir_stat(uid, mode), 0, DirRole::kOnPath, "'/p'", "/p");
}

TEST(TrustedDir, ItsOwnDirectoryIsRootsAlone) {
    EXPECT_TRUE(Succeeds(own(0, 0700)));
    EXPECT_TRUE(Succeeds(own(0, 0755)));
    EXPECT_TRUE(FailsWith(own(4242, 0700), EPERM, "owned by uid 4242, not root"));
    EXPECT_TRUE(Contains(own(4242, 0700).error().message, "chown root '/s'"));
    EXPECT_TRUE(FailsWith(own(0, 0775), EPERM, "writable by group or others (mode 0775)"));
    EXPECT_TRUE(FailsWith(own(0, 0757), EPERM, "chmod go-w '/s'"));
    // Sticky does not help: pnsd makes fixed names there, which anybody could make first.
    EXPECT_TRUE(FailsWith(own(0, 01777), EPERM, "mode 1777"));
}

TEST(TrustedDir, OnThePathStickyIsEnough) {
    EXPECT_TRUE(Succeeds(on_path(0, 0755)));
    EXPECT_TRUE(Succeeds(on_path(0, 01777)));  // /tmp, bpffs' root
    EXPECT_TRUE(FailsWith(on_path(0, 0777), EPERM, "not sticky (mode 0777)"));
    EXPECT_TRUE(FailsWith(on_path(0, 0775), EPERM, "chmod go-w '/p'"));
    EXPECT_TRUE(FailsWith(on_path(1000, 0755), EPERM, "owned by uid 1000"));
    EXPECT_TRUE(FailsWith(on_path(1000, 01777), EPERM, "owned by uid 1000"));
}

TEST(TrustedDir, PnsdsOwnUidCountsAsRoot) {
    // Only for tests run unprivileged: pnsd itself runs as root.
    EXPECT_TRUE(Succeeds(check_trusted(dir_stat(4242, 0700), 4242, DirRole::kOwn, "d", "/d")));
    EXPECT_TRUE(
        FailsWith(check_trusted(dir_stat(4343, 0700), 4242, DirRole::kOwn, "d", "/d"), EPERM));
}

class TempDir {
  public:
    TempDir() {
        std::string tmpl = "/tmp/pns-unit-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

TEST(TrustedDir, WalksFromTheRootAndMakesOnlyTheLast) {
    TempDir tmp;
    const std::string dir = tmp.path() + "/state";
    auto made = open_trusted_dir(dir, {.what = "state directory", .create = 0700});
    ASSERT_TRUE(Succeeds(made));
    struct stat st {};
    ASSERT_EQ(::fstat(made->get(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_TRUE(FailsWith(open_trusted_dir(tmp.path() + "/missing/state",
                                           {.what = "state directory", .create = 0700}),
                          ENOENT));
    EXPECT_TRUE(FailsWith(open_trusted_dir(tmp.path() + "/absent", {.what = "socket directory"}),
                          ENOENT, "socket directory"));
}

TEST(TrustedDir, RefusesWritableByOthersOnTheOpenedDirectory) {
    TempDir tmp;
    const std::string dir = tmp.path() + "/run";
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
    EXPECT_TRUE(FailsWith(open_trusted_dir(dir, {.what = "runtime directory"}), EPERM,
                          "runtime directory '" + dir + "' is writable by group or others"));
    // Below it, nothing is trusted either: it could be swapped.
    ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0700), 0);
    EXPECT_TRUE(FailsWith(open_trusted_dir(dir + "/sub", {.what = "state directory"}), EPERM,
                          "'" + dir + "', on the path to the state directory"));
    ASSERT_EQ(::chmod(dir.c_str(), 01777), 0);  // sticky: fine on the path, not as its own
    EXPECT_TRUE(Succeeds(open_trusted_dir(dir + "/sub", {.what = "state directory"})));
    EXPECT_TRUE(FailsWith(open_trusted_dir(dir, {.what = "runtime directory"}), EPERM));
    EXPECT_TRUE(Succeeds(open_trusted_dir(dir, {.what = "parent", .sticky_ok = true})));
}

TEST(TrustedDir, FollowsOnlyItsOwnersLinksAndHandlesDotDot) {
    TempDir tmp;
    ASSERT_EQ(::mkdir((tmp.path() + "/real").c_str(), 0755), 0);
    ASSERT_EQ(::symlink("real", (tmp.path() + "/link").c_str()), 0);
    auto via_link = open_trusted_dir(tmp.path() + "/link", {.what = "state directory"});
    ASSERT_TRUE(Succeeds(via_link));
    struct stat a {
    }, b{};
    ASSERT_EQ(::fstat(via_link->get(), &a), 0);
    ASSERT_EQ(::stat((tmp.path() + "/real").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_TRUE(Succeeds(open_trusted_dir(tmp.path() + "/real/../real", {.what = "d"})));
    // A link to something else than a directory.
    ASSERT_EQ(::symlink("/dev/null", (tmp.path() + "/null").c_str()), 0);
    EXPECT_TRUE(FailsWith(open_trusted_dir(tmp.path() + "/null", {.what = "d"}), ENOTDIR));
    // A loop ends.
    ASSERT_EQ(::symlink("loop", (tmp.path() + "/loop").c_str()), 0);
    EXPECT_TRUE(FailsWith(open_trusted_dir(tmp.path() + "/loop", {.what = "d"}), ELOOP));
}

TEST(TrustedDir, SubdirectoryIsNeverALink) {
    TempDir tmp;
    auto parent = open_trusted_dir(tmp.path(), {.what = "state directory"});
    ASSERT_TRUE(Succeeds(parent));
    ASSERT_EQ(::mkdir((tmp.path() + "/elsewhere").c_str(), 0700), 0);
    ASSERT_EQ(::symlink("elsewhere", (tmp.path() + "/namespaces").c_str()), 0);
    EXPECT_TRUE(FailsWith(open_trusted_subdir(parent->get(), tmp.path(), "namespaces", 0700), ELOOP,
                          "is a symbolic link"));
    EXPECT_TRUE(Succeeds(open_trusted_subdir(parent->get(), tmp.path(), "made", 0700)));
    ASSERT_EQ(::chmod((tmp.path() + "/made").c_str(), 0770), 0);
    EXPECT_TRUE(FailsWith(open_trusted_subdir(parent->get(), tmp.path(), "made", 0700), EPERM));
}

}  // namespace
}  // namespace pns::agent
