// Attacks on how pnsd follows the paths users give it (issue 11, cases 3, 4 and 7): symbolic
// links in every position of SRC, DST and a union's layers, into another user's 0700
// directory; the skeleton of a missing DST; a link swapped between pnsd's lookups
// (RENAME_EXCHANGE); what error messages tell; what an unbind leaves behind; paths recorded
// for undo that a user re-points; what overlayfs copies up into a writable union's SRC, and
// with whose rights (set-uid programs, files the member cannot read, root-only xattrs, root
// members, what a mount covers). The attacker is kOtherUid, the victim kVictimUid. Every
// attack runs against a real pnsd, and every test also runs its control (the same steps
// aimed at the attacker's own files), which must succeed.
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/attack/attack.hpp"

namespace pns::test {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kSecret = "victim secret\n";
constexpr const char* kOwn = "attacker's own\n";

const RunOptions kAttacker{.uid = kOtherUid, .gid = kOtherGid};

void own(const std::string& path, uid_t uid, mode_t mode) {
    ASSERT_EQ(::lchown(path.c_str(), uid, uid), 0) << path;
    if (!fs::is_symlink(path)) {
        ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
    }
}

// What happened in the child of in_view(): its output, or why it could not run.
struct ViewRun {
    bool ran = false;
    std::string out;
};

class PathsAttack : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        base_ = dir_.path();
        // The victim's home: 0700, holding a readable Documents (only the home protects it)
        // and a world-writable directory.
        victim_ = base_ + "/victim";
        make_dir(victim_ + "/Documents");
        make_dir(victim_ + "/pub");
        write_file(victim_ + "/Documents/report", kSecret);
        write_file(victim_ + "/Documents/victim-only", "");
        own(victim_ + "/Documents/report", kVictimUid, 0644);
        own(victim_ + "/Documents/victim-only", kVictimUid, 0644);
        own(victim_ + "/Documents", kVictimUid, 0755);
        own(victim_ + "/pub", kVictimUid, 0777);
        own(victim_, kVictimUid, 0700);
        // The attacker's home, with a Documents of its own of the same shape.
        home_ = base_ + "/attacker";
        make_dir(home_ + "/Documents");
        make_dir(home_ + "/pub");
        make_dir(home_ + "/src");
        write_file(home_ + "/Documents/report", kOwn);
        write_file(home_ + "/Documents/mine-only", "");
        write_file(home_ + "/src/from-src", "src\n");
        for (const char* p : {"/Documents/report", "/Documents/mine-only", "/src/from-src"})
            own(home_ + p, kOtherUid, 0644);
        for (const char* p : {"/Documents", "/pub", "/src", ""}) own(home_ + p, kOtherUid, 0755);
        // A /tmp of its own: sticky and world-writable, where the attacker plants links.
        tmp_ = make_dir(base_ + "/tmp");
        ASSERT_EQ(::chmod(tmp_.c_str(), 01777), 0);
    }

    // A symbolic link the attacker owns.
    std::string link(const std::string& at, const std::string& target) {
        std::error_code ec;
        fs::remove(at, ec);
        fs::create_symlink(target, at);
        own(at, kOtherUid, 0);
        return at;
    }

    Output as_attacker(const std::vector<std::string>& args) { return ctl(args, kAttacker); }
    void attacker_ok(const std::vector<std::string>& args) { ok(args, kAttacker); }

    // The pin of a view's primary, as this test reaches it (pnsd runs in a namespace of its own).
    std::string pin(const std::string& name) const {
        return "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/root" + pnsd_->runtime_dir() +
               "/views/" + name + "/mnt";
    }

    // Runs `work` in a child that has entered the primary view of `name` and then become
    // `uid`: what a member of that uid sees (a satellite holds the same mounts).
    ViewRun in_view(const std::string& name, uid_t uid, const std::function<std::string()>& work) {
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) return {};
        std::string ns_pin = pin(name);
        pid_t child = ::fork();
        if (child == 0) {
            ::close(out[0]);
            int ns = ::open(ns_pin.c_str(), O_RDONLY | O_CLOEXEC);
            if (ns < 0 || ::setns(ns, CLONE_NEWNS) != 0) ::_exit(125);
            if (uid != 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
                             ::setresuid(uid, uid, uid) != 0))
                ::_exit(126);
            std::string text = work();
            if (::write(out[1], text.data(), text.size()) != static_cast<ssize_t>(text.size()))
                ::_exit(124);
            ::_exit(0);
        }
        ::close(out[1]);
        ViewRun result;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(out[0], buf, sizeof buf)) > 0)
            result.out.append(buf, static_cast<std::size_t>(n));
        ::close(out[0]);
        int status = 0;
        ::waitpid(child, &status, 0);
        result.ran = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        return result;
    }

    // The content of `path` as the attacker sees it in the view ("<unreadable>" if it cannot).
    std::string read_in_view(const std::string& name, const std::string& path,
                             uid_t uid = kOtherUid) {
        auto r = in_view(name, uid, [&] {
            std::ifstream in(path);
            if (!in) return std::string("<unreadable>");
            std::stringstream s;
            s << in.rdbuf();
            return s.str();
        });
        return r.ran ? r.out : "<no view>";
    }

    // The names in directory `path` as the attacker sees them in the view, sorted, one a line.
    std::string list_in_view(const std::string& name, const std::string& path) {
        auto r = in_view(name, kOtherUid, [&] {
            std::vector<std::string> names;
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(path, ec))
                names.push_back(e.path().filename().string());
            if (ec) return std::string("<unlistable>");
            std::sort(names.begin(), names.end());
            std::string text;
            for (const auto& n : names) text += n + "\n";
            return text;
        });
        return r.ran ? r.out : "<no view>";
    }

    // The view's mount table: one "MOUNT_POINT ROOT FSTYPE" line per mount, in order.
    std::vector<std::string> mounts_in_view(const std::string& name) {
        auto r = in_view(name, 0, [] {
            std::ifstream in("/proc/self/mountinfo");
            std::string line, text;
            while (std::getline(in, line)) {
                std::istringstream f(line);
                std::string id, parent, dev, root, point, field;
                f >> id >> parent >> dev >> root >> point;
                while (f >> field && field != "-") {
                }
                f >> field;  // the file system type
                text += point + " " + root + " " + field + "\n";
            }
            return text;
        });
        std::vector<std::string> lines;
        std::istringstream in(r.out);
        for (std::string line; std::getline(in, line);) lines.push_back(line);
        return lines;
    }

    // The error line of a refused command, with `path` replaced by "<P>", so that two
    // refusals of different paths can be compared.
    static std::string error_for(const Output& r, const std::string& path) {
        std::string text = r.err;
        for (auto at = text.find(path); at != std::string::npos; at = text.find(path, at))
            text.replace(at, path.size(), "<P>");
        return text;
    }

    // One round of a race: the command that adds an entry while the names "a" and "b" in
    // `dir` are swapped, what the attack wants to see, and what the control shows.
    struct Round {
        std::string dir, dst;
        std::vector<std::string> add;
        std::function<bool()> hit, placed;
    };
    struct RaceResult {
        int tries = 0, accepted = 0, placed = 0, hits = 0;
        double seconds = 0;
        std::string refusal;  // the last refusal, for the record
    };

    // Runs rounds for PNS_ATTACK_RACE_SECONDS (10 by default) while a process of the attacker
    // swaps two names in the round's directory with renameat2(RENAME_EXCHANGE) as fast as it
    // can. Each round adds its entry, looks, and takes the entry off again.
    RaceResult race_rounds(const std::function<Round(int)>& round_of,
                           const std::string& swap_a = "a", const std::string& swap_b = "b") {
        int seconds = 10;
        if (const char* s = std::getenv("PNS_ATTACK_RACE_SECONDS")) seconds = std::atoi(s);
        // Which round's directory the swapper works in, shared with it: a round's number, -1
        // between rounds, -2 to stop. The directories themselves arrive over a pipe.
        auto* current = static_cast<std::atomic<int>*>(::mmap(nullptr, sizeof(std::atomic<int>),
                                                              PROT_READ | PROT_WRITE,
                                                              MAP_SHARED | MAP_ANONYMOUS, -1, 0));
        if (current == MAP_FAILED) {
            ADD_FAILURE() << "mmap";
            return {};
        }
        new (current) std::atomic<int>(-1);
        int paths[2];
        if (::pipe2(paths, O_CLOEXEC) != 0) return {};
        pid_t swapper = ::fork();
        if (swapper == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::close(paths[1]);
            if (::setgroups(0, nullptr) != 0 || ::setresgid(kOtherGid, kOtherGid, kOtherGid) != 0 ||
                ::setresuid(kOtherUid, kOtherUid, kOtherUid) != 0)
                ::_exit(126);
            // Directories arrive over the pipe, one a line, in round order.
            std::vector<int> fds;
            std::string pending;
            int at = -1;
            for (;;) {
                int now = current->load();
                if (now == -2) ::_exit(0);
                while (now >= static_cast<int>(fds.size())) {
                    auto nl = pending.find('\n');
                    if (nl == std::string::npos) {
                        char buf[4096];
                        ssize_t n = ::read(paths[0], buf, sizeof buf);
                        if (n <= 0) ::_exit(0);
                        pending.append(buf, static_cast<std::size_t>(n));
                        continue;
                    }
                    fds.push_back(::open(pending.substr(0, nl).c_str(), O_PATH | O_DIRECTORY));
                    pending.erase(0, nl + 1);
                }
                if (now >= 0) at = fds[static_cast<std::size_t>(now)];
                if (now >= 0 && at >= 0)
                    ::renameat2(at, swap_a.c_str(), at, swap_b.c_str(), RENAME_EXCHANGE);
            }
        }
        ::close(paths[0]);
        RaceResult result;
        auto started = Clock::now();
        // Not stretched on slow machines: a race is bounded by time, and takes what it gets.
        auto deadline = started + std::chrono::seconds(seconds);
        while (Clock::now() < deadline) {
            Round round = round_of(result.tries);
            std::string line = round.dir + "\n";
            if (::write(paths[1], line.data(), line.size()) != static_cast<ssize_t>(line.size()))
                break;
            current->store(result.tries++);
            auto r = as_attacker(round.add);
            current->store(-1);
            if (r.exit_code == 0) ++result.accepted;
            if (r.exit_code != 0) result.refusal = r.err;
            if (round.hit()) ++result.hits;
            if (r.exit_code == 0 && round.placed && round.placed()) ++result.placed;
            if (r.exit_code == 0) (void)as_attacker({"unbind", "--ns", round.add[2], round.dst});
        }
        current->store(-2);
        ::close(paths[1]);
        ::waitpid(swapper, nullptr, 0);
        ::munmap(current, sizeof(std::atomic<int>));
        result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
        return result;
    }

    void report(const std::string& what, const RaceResult& r) {
        std::printf(
            "[ race %s ] %d tries, %d accepted, %d placed at the attacker's own, %d hits "
            "in %.1f s: %.0f hits/min\n",
            what.c_str(), r.tries, r.accepted, r.placed, r.hits, r.seconds,
            r.seconds > 0 ? r.hits * 60.0 / r.seconds : 0.0);
        if (!r.refusal.empty())
            std::printf("[ race %s ] refused: %s", what.c_str(), r.refusal.c_str());
        RecordProperty("tries", r.tries);
        RecordProperty("hits", r.hits);
    }

    std::string base_, victim_, home_, tmp_;
};

// ---- SRC ----

// Every way a SRC can reach a directory through symbolic links: each is refused when it leads
// behind the victim's 0700 home, and accepted when it leads to the attacker's own directory.
TEST_F(PathsAttack, SrcThroughLinksIntoAnotherUsersDirectoryIsRefused) {
    attacker_ok({"ns", "create", "a"});
    make_dir(tmp_ + "/d");
    own(tmp_ + "/d", kOtherUid, 0755);
    struct Variant {
        std::string what, src, control;
    };
    std::vector<Variant> variants = {
        {"a final absolute link", link(tmp_ + "/abs", victim_ + "/Documents"),
         link(tmp_ + "/abs-own", home_ + "/Documents")},
        {"a link in the middle", link(tmp_ + "/mid", victim_) + "/Documents",
         link(tmp_ + "/mid-own", home_) + "/Documents"},
        {"a relative link with ..", link(tmp_ + "/d/rel", "../../victim/Documents"),
         link(tmp_ + "/d/rel-own", "../../attacker/Documents")},
        {"a link to a link", link(tmp_ + "/l2l", tmp_ + "/abs"),
         link(tmp_ + "/l2l-own", tmp_ + "/abs-own")},
    };
    int n = 0;
    for (const auto& v : variants) {
        for (const std::string flag : {"", "-b", "-bc"}) {
            SCOPED_TRACE(v.what + " with bind " + flag);
            std::string dst = make_dir(base_ + "/dst" + std::to_string(n++));
            own(dst, kOtherUid, 0755);
            std::vector<std::string> args = {"bind", "--ns", "a"};
            if (!flag.empty()) args.push_back(flag);
            auto attack = args;
            attack.insert(attack.end(), {v.src, dst});
            auto r = as_attacker(attack);
            EXPECT_NE(r.exit_code, 0) << "accepted: " << v.src;
            EXPECT_NE(read_in_view("a", dst + "/report"), kSecret);
            EXPECT_FALSE(exists(victim_ + "/.Documents.pns-work.a"));
            auto control = args;
            control.insert(control.end(), {v.control, dst});
            auto c = as_attacker(control);
            EXPECT_EQ(c.exit_code, 0) << c.err;
            EXPECT_EQ(read_in_view("a", dst + "/report"), kOwn);
        }
    }
    EXPECT_EQ(read_file(victim_ + "/Documents/report"), kSecret);
}

// Case 3: a union that writes into SRC (bind -bc), its SRC a link in /tmp to a world-writable
// directory behind the victim's 0700 home. overlayfs checks its layers as the mounter (root),
// so pnsd must have found them as the user: the union is refused, and nothing is read or
// written there.
TEST_F(PathsAttack, WritableUnionThroughALinkCannotReachBehindA0700Directory) {
    write_file(victim_ + "/pub/inside", "victim pub\n");
    own(victim_ + "/pub/inside", kVictimUid, 0644);
    std::string dst = make_dir(base_ + "/shown");
    own(dst, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    for (const auto& src : {link(tmp_ + "/up", victim_ + "/pub"),      // SRC itself
                            link(tmp_ + "/upp", victim_) + "/pub"}) {  // SRC's parent
        SCOPED_TRACE(src);
        auto r = as_attacker({"bind", "-bc", "--ns", "a", src, dst});
        EXPECT_NE(r.exit_code, 0) << "accepted";
        EXPECT_NE(read_in_view("a", dst + "/inside"), "victim pub\n");
        auto wrote = in_view("a", kOtherUid, [&] {
            std::ofstream out(dst + "/planted");
            out << "x";
            return std::string();
        });
        EXPECT_TRUE(wrote.ran);
        EXPECT_FALSE(exists(victim_ + "/pub/planted"));
        EXPECT_FALSE(exists(victim_ + "/.pub.pns-work.a"));
    }
    // Control: the same union of the attacker's own directory through a link writes there.
    attacker_ok({"bind", "-bc", "--ns", "a", link(tmp_ + "/up-own", home_ + "/pub"), dst});
    auto wrote = in_view("a", kOtherUid, [&] {
        std::ofstream out(dst + "/planted");
        out << "x";
        return std::string(out ? "ok" : "failed");
    });
    EXPECT_EQ(wrote.out, "ok");
    EXPECT_TRUE(exists(home_ + "/pub/planted"));
    EXPECT_FALSE(exists(victim_ + "/pub/planted"));
}

// In a -c union, overlayfs copies a lower file up into SRC when a member renames, links or
// changes it, with the credentials of the union's creator (fs/overlayfs/super.c:
// ovl_fill_super keeps creator_cred). pnsd used to create it as root: a member's rename of a
// root-owned set-uid program of DST put a set-uid-root copy of it, owner and mode kept, in the
// member's own SRC (an old, vulnerable version kept after an upgrade, say: what
// fs.protected_hardlinks exists to deny). A user's union is now made as that user in a user
// namespace that maps no one else (agent/views/unions.hpp), where root's files are never copied up
// (ovl_copy_up_one: EOVERFLOW). The control: the member's own file is copied up and renamed.
TEST_F(PathsAttack, WritableUnionCopiesUpNothingAsRoot) {
    std::string shown = make_dir(base_ + "/bin");
    fs::copy_file("/bin/true", shown + "/tool");
    ASSERT_EQ(::chmod((shown + "/tool").c_str(), 04755), 0);
    write_file(shown + "/own-file", "own\n");
    own(shown + "/own-file", kOtherUid, 0644);
    std::string up = make_dir(home_ + "/up");
    own(up, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    attacker_ok({"bind", "-bc", "--ns", "a", up, shown});
    auto moved = in_view("a", kOtherUid, [&] {
        int tool = ::rename((shown + "/tool").c_str(), (shown + "/kept").c_str());
        int mine = ::rename((shown + "/own-file").c_str(), (shown + "/renamed").c_str());
        return std::string(tool == 0 ? "tool moved" : "tool refused") +
               (mine == 0 ? ", own file moved" : ", own file refused");
    });
    EXPECT_EQ(moved.out, "tool refused, own file moved");
    for (const auto& e : fs::directory_iterator(up)) {
        struct stat st {};
        ASSERT_EQ(::lstat(e.path().c_str(), &st), 0);
        EXPECT_FALSE(st.st_uid == 0 && (st.st_mode & S_ISUID))
            << e.path() << ": a set-uid-root file in the attacker's directory";
    }
    EXPECT_FALSE(exists(up + "/kept"));
    // Control: the attacker's own file was copied up and renamed in SRC.
    EXPECT_EQ(read_file(up + "/renamed"), "own\n");
}

// Every entry of the directory `dir` (not below it), by name, with its lstat.
std::vector<std::pair<std::string, struct stat>> entries_of(const std::string& dir) {
    std::vector<std::pair<std::string, struct stat>> found;
    for (const auto& e : fs::directory_iterator(dir)) {
        struct stat st {};
        if (::lstat(e.path().c_str(), &st) == 0) found.emplace_back(e.path().string(), st);
    }
    return found;
}

// The errno of a call that failed ("ok" if it did not), for what a member saw in a view.
std::string outcome(int rc) {
    return rc == 0 ? "ok" : std::string(std::strerror(errno));
}

// A union pnsd makes anew without its requester (an edit beneath it, a repair) is looked up
// and made as the namespace's owner: still the owner's union, made as the owner. The attack of
// WritableUnionCopiesUpNothingAsRoot after the union was rebuilt so; the control as there.
TEST_F(PathsAttack, WritableUnionMadeAnewIsStillTheUsers) {
    std::string shown = make_dir(base_ + "/bin");
    fs::copy_file("/bin/true", shown + "/tool");
    ASSERT_EQ(::chmod((shown + "/tool").c_str(), 04755), 0);
    write_file(shown + "/own-file", "own\n");
    own(shown + "/own-file", kOtherUid, 0644);
    std::string up = make_dir(home_ + "/up"), scratch = make_dir(home_ + "/scratch");
    own(up, kOtherUid, 0755);
    own(scratch, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    attacker_ok({"tmpfs", "--ns", "a", scratch});
    attacker_ok({"bind", "-bc", "--ns", "a", up, shown});
    auto before = mounts_in_view("a");
    // Taking the first entry off makes the union anew, as the owner.
    attacker_ok({"unbind", "--ns", "a", scratch});
    EXPECT_NE(mounts_in_view("a"), before);
    auto moved = in_view("a", kOtherUid, [&] {
        return "tool: " + outcome(::rename((shown + "/tool").c_str(), (shown + "/kept").c_str())) +
               "; own: " +
               outcome(::rename((shown + "/own-file").c_str(), (shown + "/renamed").c_str()));
    });
    EXPECT_EQ(moved.out, "tool: Value too large for defined data type; own: ok");
    EXPECT_FALSE(exists(up + "/kept"));
    EXPECT_EQ(read_file(up + "/renamed"), "own\n");
}

// A file the member may write but not read (the victim's, mode 0622): opening it for writing
// in a -c union makes overlayfs copy it up first, which reads it as the union's creator. Made
// as root, the victim's file was copied into the attacker's SRC, and the attacker's writes
// went to that copy. Made as the attacker, overlayfs asks whether the creator may read it
// (fs/overlayfs/inode.c: ovl_permission turns MAY_WRITE into MAY_READ for a lower file), and
// the attacker may not: the open is refused and nothing is copied. The control: the
// attacker's own file (0600) opened for writing is copied up and written.
TEST_F(PathsAttack, WritableUnionCopiesNothingTheMemberCannotRead) {
    std::string shown = make_dir(base_ + "/drop");
    write_file(shown + "/victims", kSecret);
    own(shown + "/victims", kVictimUid, 0622);
    write_file(shown + "/mine", kOwn);
    own(shown + "/mine", kOtherUid, 0600);
    std::string up = make_dir(home_ + "/up");
    own(up, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    attacker_ok({"bind", "-bc", "--ns", "a", up, shown});
    auto wrote = in_view("a", kOtherUid, [&] {
        auto append = [](const std::string& path) {
            int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
            if (fd < 0) return outcome(-1);
            bool full = ::write(fd, "more\n", 5) == 5;
            ::close(fd);
            return std::string(full ? "written" : "short");
        };
        return "victim's: " + append(shown + "/victims") + "; mine: " + append(shown + "/mine");
    });
    EXPECT_EQ(wrote.out, "victim's: Permission denied; mine: written");
    for (const auto& [path, st] : entries_of(up))
        EXPECT_NE(st.st_uid, kVictimUid) << path << ": the victim's file copied into SRC";
    EXPECT_FALSE(exists(up + "/victims"));
    EXPECT_EQ(read_file(shown + "/victims"), kSecret);
    // Control: the attacker's own file was copied up, and written there.
    EXPECT_EQ(read_file(up + "/mine"), std::string(kOwn) + "more\n");
    EXPECT_EQ(read_file(shown + "/mine"), kOwn);
}

// Xattrs only root may set, on files the attacker owns: trusted.* (root's own data, which
// overlayfs itself keeps there on other unions) and security.capability (file capabilities).
// Made as root, a copy-up copied both onto the attacker's copy in SRC. Made as the attacker,
// trusted.* is not even listed to the creator (it needs CAP_SYS_ADMIN in the initial user
// namespace) and security.capability cannot be written where root is unmapped
// (security/commoncap.c: cap_convert_nscap), so neither reaches SRC. The control: the
// attacker's own user.* xattr is copied with its file.
TEST_F(PathsAttack, WritableUnionCopiesNoRootOnlyXattr) {
    std::string shown = make_dir(base_ + "/x");
    for (const char* name : {"trusted", "caps", "user"}) {
        write_file(shown + "/" + name, kOwn);
        own(shown + "/" + name, kOtherUid, 0755);
    }
    ASSERT_EQ(::setxattr((shown + "/trusted").c_str(), "trusted.pns", "root's", 6, 0), 0);
    vfs_cap_data caps{};
    caps.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
    caps.data[0].permitted = 1u << CAP_NET_RAW;
    ASSERT_EQ(::setxattr((shown + "/caps").c_str(), "security.capability", &caps, sizeof caps, 0),
              0);
    ASSERT_EQ(::setxattr((shown + "/user").c_str(), "user.pns", "mine", 4, 0), 0)
        << "the test directory's file system takes no user xattrs";
    std::string up = make_dir(home_ + "/up");
    own(up, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    attacker_ok({"bind", "-bc", "--ns", "a", up, shown});
    auto moved = in_view("a", kOtherUid, [&] {
        std::string out;
        for (const char* name : {"trusted", "caps", "user"})
            out += std::string(out.empty() ? "" : ", ") + name + ": " +
                   outcome(::rename((shown + "/" + name).c_str(),
                                    (shown + "/" + name + "-moved").c_str()));
        return out;
    });
    EXPECT_TRUE(moved.ran);
    std::printf("[ xattrs ] renamed in the union: %s\n", moved.out.c_str());
    for (const auto& [path, st] : entries_of(up)) {
        char value[64];
        EXPECT_LT(::lgetxattr(path.c_str(), "trusted.pns", value, sizeof value), 0)
            << path << ": root's trusted.pns copied into SRC";
        EXPECT_LT(::lgetxattr(path.c_str(), "security.capability", value, sizeof value), 0)
            << path << ": a file capability copied into SRC";
    }
    // Control: the attacker's own xattr went with its file, and the trusted one's file moved
    // without it.
    char value[8] = {};
    EXPECT_EQ(::getxattr((up + "/user-moved").c_str(), "user.pns", value, sizeof value), 4);
    EXPECT_STREQ(value, "mine");
    EXPECT_EQ(read_file(up + "/trusted-moved"), kOwn);
}

// A root member of a root namespace whose -c union writes into a user's directory: copies land
// where that user can rename them (a hard link in all but name), so the union is the user's
// (unions::writable_mounter) and root's files are not copied up, whatever root does to them:
// renaming, chmod, opening for writing. Made as root, each left a root-owned copy (the
// set-uid program set-uid) in the user's directory. Root cannot create names there either
// (fs/namei.c: may_create wants the creator's fsuid mapped in the union's user namespace).
// The control: root writes to the user's own file, which is copied up and written.
TEST_F(PathsAttack, RootMemberCopiesNothingOfRootsIntoAUsersSource) {
    std::string shown = make_dir(base_ + "/rootbin");
    for (const char* tool : {"/tool", "/other-tool"}) {
        fs::copy_file("/bin/true", shown + tool);
        ASSERT_EQ(::chmod((shown + tool).c_str(), 04755), 0);
    }
    write_file(shown + "/shadow", kSecret);
    ASSERT_EQ(::chmod((shown + "/shadow").c_str(), 0600), 0);
    write_file(shown + "/users", kOwn);
    own(shown + "/users", kOtherUid, 0644);
    std::string up = make_dir(home_ + "/up");
    own(up, kOtherUid, 0755);
    ok({"ns", "create", "r"});
    ok({"bind", "-bc", "--ns", "r", up, shown});
    auto append = [](const std::string& path) {
        int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0) return -1;
        int rc = ::write(fd, "more\n", 5) == 5 ? 0 : -1;
        ::close(fd);
        return rc;
    };
    auto done = in_view("r", 0, [&] {
        return "rename: " +
               outcome(::rename((shown + "/tool").c_str(), (shown + "/kept").c_str())) +
               "; chmod: " + outcome(::chmod((shown + "/other-tool").c_str(), 04711)) +
               "; write: " + outcome(append(shown + "/shadow")) +
               "; user's: " + outcome(append(shown + "/users"));
    });
    EXPECT_TRUE(done.ran);
    EXPECT_EQ(done.out.find("rename: ok"), std::string::npos) << done.out;
    EXPECT_EQ(done.out.find("chmod: ok"), std::string::npos) << done.out;
    EXPECT_EQ(done.out.find("write: ok"), std::string::npos) << done.out;
    for (const auto& [path, st] : entries_of(up))
        EXPECT_NE(st.st_uid, 0u) << path << ": a root-owned copy in the user's directory";
    EXPECT_EQ(read_file(shown + "/shadow"), kSecret);
    // Control: the user's own file, written by root, was copied up and written there.
    EXPECT_NE(done.out.find("user's: ok"), std::string::npos) << done.out;
    EXPECT_EQ(read_file(up + "/users"), std::string(kOwn) + "more\n");
}

// What a mount covers, which the kernel shows no one who could not take the mount off: the
// directory a host mount (here one in pnsd's namespace, as root would make it) is on, and what
// that directory holds on its own file system. overlayfs takes a layer without the mounts below
// it, so a union of DST, made as root, showed that directory's own content; made as the
// attacker, the kernel refuses such a layer (fs/namespace.c: clone_private_mount,
// __has_locked_children) and the union is refused, read-only or writable. The control: the
// same union where nothing is mounted below DST.
TEST_F(PathsAttack, UnionNeverShowsWhatAMountCovers) {
    for (const char* dir : {"/covered/hidden", "/plain/hidden"}) {
        make_dir(base_ + dir);
        write_file(base_ + dir + "/under", kSecret);
    }
    std::string hidden = base_ + "/covered/hidden";
    pid_t child = ::fork();
    if (child == 0) {
        std::string ns = "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt";
        int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNS) != 0 ||
            ::mount("tmpfs", hidden.c_str(), "tmpfs", 0, "size=1m") != 0)
            ::_exit(1);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mount in pnsd's namespace";
    attacker_ok({"ns", "create", "a"});
    EXPECT_EQ(read_in_view("a", hidden + "/under"), "<unreadable>");
    for (const std::string flag : {"-bc", "-b", "-a"}) {
        SCOPED_TRACE(flag);
        std::string up = make_dir(home_ + "/up" + flag);
        own(up, kOtherUid, 0755);
        auto r = as_attacker({"bind", flag, "--ns", "a", up, base_ + "/covered"});
        EXPECT_NE(r.exit_code, 0) << "accepted";
        EXPECT_NE(r.err.find("mounted below DST"), std::string::npos) << r.err;
        EXPECT_NE(read_in_view("a", hidden + "/under"), kSecret);
        // Control: nothing is mounted below /plain.
        attacker_ok({"bind", flag, "--ns", "a", up, base_ + "/plain"});
        EXPECT_EQ(read_in_view("a", base_ + "/plain/hidden/under"), kSecret);
        attacker_ok({"unbind", "--ns", "a", base_ + "/plain"});
    }
}

// The process pnsd starts to make a user's union has that user's (effective) uid: if the user
// could signal it, a SIGSTOP would hold up pnsd's mount thread, every view's edits with it,
// until pnsd gave up on it. Its real and saved uids stay root's, so the kernel refuses the
// user's signals (kernel/signal.c: kill_ok_by_cred). The attack: a Stopper scans for it while
// the attacker makes unions for PNS_ATTACK_RACE_SECONDS (10 by default). It must find the
// process (or the race proves nothing) and stop it never. The control: every union was made.
TEST_F(PathsAttack, UnionMakerCannotBeStoppedByItsUser) {
    int seconds = 10;
    if (const char* env = std::getenv("PNS_ATTACK_RACE_SECONDS")) seconds = std::atoi(env);
    std::string shown = make_dir(base_ + "/shown"), up = make_dir(home_ + "/up");
    own(up, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    Stopper stopper;
    ASSERT_TRUE(stopper.started());
    int made = 0, tries = 0;
    // At least `seconds`, and on until the scan has seen the process (a slow machine, such as
    // the emulated VM, makes few unions a second), but never more than 120 s.
    auto start = Clock::now();
    auto deadline = start + std::chrono::seconds(seconds);
    while (Clock::now() < deadline ||
           (stopper.found() == 0 && Clock::now() < start + std::chrono::seconds(120))) {
        ++tries;
        auto r = as_attacker({"bind", "-bc", "--ns", "a", up, shown});
        if (r.exit_code == 0) ++made;
        EXPECT_EQ(r.exit_code, 0) << r.err;
        if (r.exit_code == 0) attacker_ok({"unbind", "--ns", "a", shown});
    }
    stopper.finish();
    std::printf(
        "[ race stop ] %d unions in %lld s; the attacker found pnsd's process %d times and "
        "stopped it %d times\n",
        made,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count()),
        stopper.found(), stopper.stopped());
    EXPECT_GT(stopper.found(), 0) << "the race never saw the process: it proves nothing";
    EXPECT_EQ(stopper.stopped(), 0);
    EXPECT_EQ(made, tries);
}

// Root's -c union into a directory of root's that others may write: they could rename root's
// copies out of it, so pnsd refuses it. The control: into a directory only root writes, the
// union is root's, and root's rename of its set-uid program copies it up there (what root
// asked for, where only root can move it).
TEST_F(PathsAttack, RootsWritableUnionIntoADirectoryOthersMayWriteIsRefused) {
    std::string shown = make_dir(base_ + "/rootbin");
    fs::copy_file("/bin/true", shown + "/tool");
    ASSERT_EQ(::chmod((shown + "/tool").c_str(), 04755), 0);
    std::string shared = make_dir(base_ + "/shared");
    ASSERT_EQ(::chmod(shared.c_str(), 0777), 0);
    ok({"ns", "create", "r"});
    auto r = ctl({"bind", "-bc", "--ns", "r", shared, shown});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("others may write"), std::string::npos) << r.err;
    // Control: a directory only root may write.
    std::string mine = make_dir(base_ + "/rootonly");
    ok({"bind", "-bc", "--ns", "r", mine, shown});
    auto moved = in_view("r", 0, [&] {
        return outcome(::rename((shown + "/tool").c_str(), (shown + "/kept").c_str()));
    });
    EXPECT_EQ(moved.out, "ok");
    struct stat st {};
    ASSERT_EQ(::lstat((mine + "/kept").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_TRUE(fs::is_empty(shared));
}

// The work directory of a -c union is made beside SRC, where the attacker may have planted a
// link of that name to the victim's world-writable directory: overlayfs would then do its
// work (create, rename, remove) there as root.
TEST_F(PathsAttack, PlantedWorkDirectoryLinkIsNotFollowed) {
    std::string dst = make_dir(base_ + "/shown");
    own(dst, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    link(home_ + "/.pub.pns-work.a", victim_ + "/pub");
    auto r = as_attacker({"bind", "-bc", "--ns", "a", home_ + "/pub", dst});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(fs::is_empty(victim_ + "/pub"));
    // Control: without the planted link the same union works.
    fs::remove(home_ + "/.pub.pns-work.a");
    attacker_ok({"bind", "-bc", "--ns", "a", home_ + "/pub", dst});
    EXPECT_TRUE(fs::is_directory(home_ + "/.pub.pns-work.a"));
    EXPECT_TRUE(fs::is_empty(victim_ + "/pub"));
}

// Case 7: a union's SRC given as an absolute link, a relative one with .., or a link to a
// link, to the user's own directory, is one lookup like any other path: accepted, and the
// union shows it (and, with -c, new files land in the real directory).
TEST_F(PathsAttack, UnionSourceLinksToTheUsersOwnDirectoryAreAccepted) {
    make_dir(tmp_ + "/d");
    own(tmp_ + "/d", kOtherUid, 0755);
    std::vector<std::string> sources = {
        link(tmp_ + "/abs", home_ + "/src"),
        link(tmp_ + "/d/rel", "../../attacker/src"),
        link(tmp_ + "/l2l", tmp_ + "/abs"),
    };
    attacker_ok({"ns", "create", "a"});
    int n = 0;
    for (const auto& src : sources) {
        for (const std::string flag : {"-b", "-a", "-bc"}) {
            SCOPED_TRACE(src + " " + flag);
            std::string dst = make_dir(base_ + "/u" + std::to_string(n++));
            write_file(dst + "/from-dst", "dst\n");
            own(dst + "/from-dst", kOtherUid, 0644);
            own(dst, kOtherUid, 0755);
            auto r = as_attacker({"bind", flag, "--ns", "a", src, dst});
            ASSERT_EQ(r.exit_code, 0) << r.err;
            EXPECT_EQ(read_in_view("a", dst + "/from-src"), "src\n");
            EXPECT_EQ(read_in_view("a", dst + "/from-dst"), "dst\n");
            if (flag == "-bc") {
                std::string name = "made" + std::to_string(n);
                auto wrote = in_view("a", kOtherUid, [&] {
                    std::ofstream out(dst + "/" + name);
                    out << "new\n";
                    return std::string(out ? "ok" : "failed");
                });
                EXPECT_EQ(wrote.out, "ok");
                EXPECT_EQ(read_file(home_ + "/src/" + name), "new\n");
            }
        }
    }
}

// ---- DST ----

// Case 4: a DST through the attacker's own link into the victim's 0700 home, for every verb
// (and for a missing DST, which makes a skeleton of its parent): refused, and nothing of the
// victim's shows; the same through a link to the attacker's own directory works.
TEST_F(PathsAttack, DstThroughALinkIntoAnotherUsersHomeIsRefusedForEveryVerb) {
    std::string into_victim = link(tmp_ + "/v", victim_);
    std::string into_own = link(tmp_ + "/o", home_);
    attacker_ok({"ns", "create", "a"});
    struct Verb {
        std::vector<std::string> args;  // before DST
        std::string dst;                // below the link
        std::string shows;              // below the link, a file the control must show
        std::string content;
    };
    std::vector<Verb> verbs = {
        {{"ro"}, "/Documents", "/Documents/report", kOwn},
        {{"tmpfs"}, "/Documents", "/Documents/report", "<unreadable>"},
        {{"hide"}, "/Documents", "/Documents/report", "<unreadable>"},
        {{"bind", home_ + "/src"}, "/Documents", "/Documents/from-src", "src\n"},
        {{"bind", "-b", home_ + "/src"}, "/Documents", "/Documents/report", kOwn},
        {{"bind", "-bc", home_ + "/src"}, "/Documents", "/Documents/from-src", "src\n"},
        // A missing DST: its parent gets a skeleton listing what it holds.
        {{"bind", home_ + "/src"}, "/Documents/new/dir", "/Documents/report", kOwn},
        {{"tmpfs"}, "/Documents/newdir", "/Documents/report", kOwn},
    };
    for (const auto& verb : verbs) {
        std::vector<std::string> args = {verb.args[0], "--ns", "a"};
        args.insert(args.end(), verb.args.begin() + 1, verb.args.end());
        SCOPED_TRACE(verb.args[0] + " " + verb.dst);
        auto attack = args;
        attack.push_back(into_victim + verb.dst);
        auto r = as_attacker(attack);
        EXPECT_NE(r.exit_code, 0) << "accepted";
        EXPECT_EQ(r.err.find("victim-only"), std::string::npos) << r.err;
        EXPECT_EQ(read_in_view("a", into_own + "/Documents/report"), kOwn);
        EXPECT_EQ(read_in_view("a", victim_ + "/Documents/report", 0), kSecret);
        EXPECT_EQ(list_in_view("a", home_ + "/Documents"), "mine-only\nreport\n");

        auto control = args;
        control.push_back(into_own + verb.dst);
        auto c = as_attacker(control);
        ASSERT_EQ(c.exit_code, 0) << c.err;
        EXPECT_EQ(read_in_view("a", home_ + verb.shows), verb.content);
        ok({"unbind", "--ns", "a", into_own + verb.dst}, kAttacker);
        EXPECT_EQ(read_in_view("a", home_ + "/Documents/report"), kOwn);
    }
}

// A DST that is itself a symbolic link is refused wherever it points (the mount would go on
// the link's target, which the table does not name), with words that do not tell whether the
// target is there; the path it points to, named as such, is the control.
TEST_F(PathsAttack, DstThatIsALinkIsRefusedWhereverItPoints) {
    attacker_ok({"ns", "create", "a"});
    std::string to_victim = link(tmp_ + "/vd", victim_ + "/Documents");
    std::string to_missing = link(tmp_ + "/vm", victim_ + "/Nocuments");
    std::string to_own = link(tmp_ + "/od", home_ + "/Documents");
    for (const std::string verb : {"ro", "tmpfs", "hide"}) {
        SCOPED_TRACE(verb);
        auto a = as_attacker({verb, "--ns", "a", to_victim});
        auto b = as_attacker({verb, "--ns", "a", to_missing});
        auto c = as_attacker({verb, "--ns", "a", to_own});
        EXPECT_NE(a.exit_code, 0);
        EXPECT_NE(b.exit_code, 0);
        EXPECT_NE(c.exit_code, 0);
        EXPECT_EQ(error_for(a, to_victim), error_for(b, to_missing));
        EXPECT_EQ(error_for(a, to_victim), error_for(c, to_own));
        attacker_ok({verb, "--ns", "a", home_ + "/Documents"});
        attacker_ok({"unbind", "--ns", "a", home_ + "/Documents"});
    }
}

// /proc's magic links (a process's cwd, root, open files) lead wherever that process is,
// whatever the root of the lookup: a DST through the cwd of one of the victim's processes,
// sitting in its 0700 home, is refused. The same DST named without the magic link, in the
// attacker's own home, is the control.
TEST_F(PathsAttack, DstThroughAMagicLinkIsRefused) {
    pid_t sitter = ::fork();
    if (sitter == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::chdir(victim_.c_str()) != 0 || ::setgroups(0, nullptr) != 0 ||
            ::setresgid(kVictimGid, kVictimGid, kVictimGid) != 0 ||
            ::setresuid(kVictimUid, kVictimUid, kVictimUid) != 0)
            ::_exit(126);
        for (;;) ::pause();
    }
    ASSERT_GT(sitter, 0);
    attacker_ok({"ns", "create", "a"});
    std::string through = "/proc/" + std::to_string(sitter) + "/cwd/Documents";
    for (const std::string verb : {"ro", "tmpfs"}) {
        auto r = as_attacker({verb, "--ns", "a", through});
        EXPECT_NE(r.exit_code, 0) << verb << " accepted";
    }
    EXPECT_EQ(read_in_view("a", victim_ + "/Documents/report", 0), kSecret);
    ::kill(sitter, SIGKILL);
    ::waitpid(sitter, nullptr, 0);
    attacker_ok({"ro", "--ns", "a", home_ + "/Documents"});
}

// What a refusal says must not depend on whether the path exists behind the 0700 directory:
// the same words (but for the path itself) for an existing and a missing name, for every verb.
TEST_F(PathsAttack, ErrorsAreTheSameForExistingAndMissingPathsBehindA0700Directory) {
    std::string into_victim = link(tmp_ + "/v", victim_);
    attacker_ok({"ns", "create", "a"});
    std::vector<std::vector<std::string>> verbs = {{"ro"},
                                                   {"tmpfs"},
                                                   {"hide"},
                                                   {"bind", home_ + "/src"},
                                                   {"bind", "-b", home_ + "/src"},
                                                   {"bind", "-bc", home_ + "/src"}};
    for (const auto& verb : verbs) {
        SCOPED_TRACE(verb[0] + (verb.size() > 2 ? " " + verb[1] : ""));
        for (const std::string& via : {into_victim, victim_}) {
            std::vector<std::string> args = {verb[0], "--ns", "a"};
            args.insert(args.end(), verb.begin() + 1, verb.end());
            std::string there = via + "/Documents", missing = via + "/Nocuments";
            auto with = args, without = args;
            with.push_back(there);
            without.push_back(missing);
            auto a = as_attacker(with);
            auto b = as_attacker(without);
            EXPECT_NE(a.exit_code, 0);
            EXPECT_NE(b.exit_code, 0);
            EXPECT_EQ(error_for(a, there), error_for(b, missing));
            // One level deeper: the missing path would need a skeleton of an existing one.
            auto c = as_attacker([&] {
                auto v = args;
                v.push_back(there + "/new");
                return v;
            }());
            auto d = as_attacker([&] {
                auto v = args;
                v.push_back(missing + "/new");
                return v;
            }());
            EXPECT_EQ(error_for(c, there + "/new"), error_for(d, missing + "/new"));
        }
    }
    // Control: the same commands on the attacker's own existing and missing paths tell the
    // difference only where the attacker could see it anyway (ro needs the path to exist).
    attacker_ok({"ro", "--ns", "a", home_ + "/Documents"});
    auto missing = as_attacker({"ro", "--ns", "a", home_ + "/Nocuments"});
    EXPECT_NE(missing.exit_code, 0);
}

// A skeleton is a listing of the parent of a missing DST; it is made only from what the
// editor may list. The victim's home here is 0711: searchable (a name there can be reached)
// but not readable.
TEST_F(PathsAttack, SkeletonNeverListsWhatTheEditorCannotList) {
    own(victim_, kVictimUid, 0711);
    attacker_ok({"ns", "create", "a"});
    auto r = as_attacker({"tmpfs", "--ns", "a", victim_ + "/newdir"});
    EXPECT_NE(r.exit_code, 0) << "a skeleton of an unreadable directory was made";
    EXPECT_EQ(list_in_view("a", victim_), "<unlistable>");
    // Control: a missing DST in the attacker's own directory gets its skeleton.
    attacker_ok({"tmpfs", "--ns", "a", home_ + "/newdir"});
    EXPECT_EQ(list_in_view("a", home_), "Documents\nnewdir\npub\nsrc\n");
}

// The symbolic link of a DST is swapped (renameat2 RENAME_EXCHANGE in a loop) between the
// victim's home and the attacker's own directory while the attacker adds and removes the
// entry: pnsd must never take what it mounts from one and put it at the other. A hit is the
// victim's report, or a name only the victim's Documents holds, showing in the attacker's
// own Documents in the view.
class DstRace : public PathsAttack, public ::testing::WithParamInterface<std::string> {};

TEST_P(DstRace, SwappedLinkNeverShowsTheVictimsFiles) {
    const std::string verb = GetParam();
    attacker_ok({"ns", "create", "a"});
    std::string race = make_dir(tmp_ + "/race");
    own(race, kOtherUid, 0755);
    auto result = race_rounds([&](int i) {
        // The attacker's own directory of this round, the same shape as the victim's.
        std::string mine = home_ + "/r" + std::to_string(i);
        make_dir(mine + "/Documents");
        write_file(mine + "/Documents/report", kOwn);
        own(mine + "/Documents/report", kOtherUid, 0644);
        own(mine + "/Documents", kOtherUid, 0755);
        own(mine, kOtherUid, 0755);
        // And the victim's of this round, inside the 0700 home: a round never meets what an
        // earlier one left behind (on the old code, stale unions stacked on one directory
        // soon made every union there fail: "maximum fs stacking depth exceeded").
        std::string theirs = victim_ + "/r" + std::to_string(i);
        make_dir(theirs + "/Documents");
        for (const char* f : {"/Documents/report", "/Documents/victim-only"}) {
            write_file(theirs + f, f == std::string("/Documents/report") ? kSecret : "");
            own(theirs + f, kVictimUid, 0644);
        }
        own(theirs + "/Documents", kVictimUid, 0755);
        own(theirs, kVictimUid, 0755);
        Round round;
        round.dir = make_dir(race + "/" + std::to_string(i));
        own(round.dir, kOtherUid, 0755);
        link(round.dir + "/a", theirs);
        link(round.dir + "/b", mine);
        round.dst = round.dir + "/a/Documents";
        if (verb == "ro") round.add = {"ro", "--ns", "a", round.dst};
        if (verb == "union") round.add = {"bind", "-b", "--ns", "a", home_ + "/src", round.dst};
        if (verb == "skeleton") {
            round.dst += "/new";
            round.add = {"tmpfs", "--ns", "a", round.dst};
        }
        round.hit = [this, mine] {
            return read_in_view("a", mine + "/Documents/report") == kSecret ||
                   list_in_view("a", mine + "/Documents").find("victim-only") != std::string::npos;
        };
        // The entry's effect at the attacker's own directory, where the link led there.
        round.placed = [this, mine, verb] {
            if (verb == "union") return read_in_view("a", mine + "/Documents/from-src") == "src\n";
            if (verb == "skeleton")
                return list_in_view("a", mine + "/Documents").find("new") != std::string::npos;
            auto probe = in_view("a", kOtherUid, [&] {
                int fd = ::open((mine + "/Documents/probe").c_str(), O_WRONLY | O_CREAT, 0644);
                return std::string(fd < 0 && errno == EROFS ? "ro" : "rw");
            });
            return probe.out == "ro";
        };
        return round;
    });
    report(verb, result);
    EXPECT_EQ(result.hits, 0) << "the victim's files showed in the attacker's view " << result.hits
                              << " times in " << result.tries << " tries";
    // Control: the entry was accepted, and made at the attacker's own directory, whenever the
    // link led there.
    EXPECT_GT(result.accepted, 0);
    EXPECT_GT(result.placed, 0);
}

INSTANTIATE_TEST_SUITE_P(Verbs, DstRace, ::testing::Values("ro", "union", "skeleton"));

// ---- undo, repair and unbind ----

// Case 4, the stale mounts: entries whose DST goes through a link (to the attacker's own
// directory), and a skeleton, leave nothing mounted after their unbind.
TEST_F(PathsAttack, UnbindLeavesNoStaleMount) {
    std::string via = link(tmp_ + "/o", home_);
    attacker_ok({"ns", "create", "a"});
    auto before = mounts_in_view("a");
    std::vector<std::vector<std::string>> entries = {
        {"ro", via + "/Documents"},
        {"tmpfs", via + "/Documents"},
        {"hide", via + "/Documents"},
        {"bind", home_ + "/pub", via + "/Documents"},
        {"bind", "-b", home_ + "/src", via + "/Documents"},
        {"bind", "-bc", home_ + "/up", via + "/Documents"},
        {"bind", home_ + "/src", via + "/Documents/new/dir"},
        {"tmpfs", via + "/newdir"},
    };
    make_dir(home_ + "/up");
    own(home_ + "/up", kOtherUid, 0755);
    for (const auto& e : entries) {
        SCOPED_TRACE(e[0] + " " + e.back());
        std::vector<std::string> args = {e[0], "--ns", "a"};
        args.insert(args.end(), e.begin() + 1, e.end());
        attacker_ok(args);
        EXPECT_NE(mounts_in_view("a"), before);
        attacker_ok({"unbind", "--ns", "a", e.back()});
        EXPECT_EQ(mounts_in_view("a"), before);
    }
    // And all of them at once, taken off by one apply.
    for (const auto& e : entries) {
        std::vector<std::string> args = {e[0], "--ns", "a"};
        args.insert(args.end(), e.begin() + 1, e.end());
        attacker_ok(args);
    }
    attacker_ok({"apply", "--ns", "a", "-"});  // an empty table
    EXPECT_EQ(mounts_in_view("a"), before);
}

// What pnsd recorded to undo an entry (where its mount is) is not a path to follow again: the
// attacker re-points the link of a DST before the unbind, at a directory where root has a
// mount of its own that hides a file. The unbind must take off the entry's mount, and never
// root's (which would show the attacker what root's mount hides).
TEST_F(PathsAttack, RecordedDstIsNotFollowedAgainAfterItsLinkMoves) {
    std::string shared = make_dir(base_ + "/shared/Documents");
    write_file(shared + "/under-roots-mount", "hidden\n");
    auto mounted =
        run({PNS_ENTER_PATH, "--mnt", "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt",
             "--", "/bin/mount", "-t", "tmpfs", "-o", "mode=0755", "roots", shared});
    ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
    std::string via = link(tmp_ + "/o", home_);
    attacker_ok({"ns", "create", "a"});
    auto before = mounts_in_view("a");
    for (const std::string verb : {"ro", "tmpfs", "skeleton"}) {
        SCOPED_TRACE(verb);
        link(tmp_ + "/o", home_);
        std::string dst = via + "/Documents" + (verb == "skeleton" ? "/new" : "");
        attacker_ok({verb == "skeleton" ? "tmpfs" : verb, "--ns", "a", dst});
        link(tmp_ + "/o", base_ + "/shared");
        auto r = as_attacker({"unbind", "--ns", "a", dst});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(read_in_view("a", shared + "/under-roots-mount"), "<unreadable>");
        // Control: the entry's own mount went.
        EXPECT_EQ(mounts_in_view("a"), before);
        EXPECT_EQ(read_in_view("a", home_ + "/Documents/report"), kOwn);
    }
    run({PNS_ENTER_PATH, "--mnt", "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt", "--",
         "/bin/umount", shared});
}

// pnsd writes, for each mount it is about to make, a journal line in its runtime directory
// (a crash in the middle of an edit is undone from it). Written by path while in the view, it
// would follow an entry the user put over that directory in their own view, and a link
// there: root would create the file wherever the link leads (here, in the victim's home).
TEST_F(PathsAttack, JournalIsNotWrittenThroughTheView) {
    std::string evil = make_dir(home_ + "/evil");
    own(evil, kOtherUid, 0755);
    link(evil + "/a", victim_);
    std::string dst = make_dir(base_ + "/shown");
    own(dst, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    auto covered = as_attacker({"bind", "--ns", "a", evil, pnsd_->runtime_dir() + "/views"});
    ASSERT_EQ(covered.exit_code, 0) << covered.err;
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"tmpfs", "--ns", "a", dst},
          std::vector<std::string>{"bind", "--ns", "a", home_ + "/src", dst + "/new"}}) {
        auto r = as_attacker(args);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_FALSE(exists(victim_ + "/journal"));
        EXPECT_FALSE(exists(evil + "/a/journal"));
    }
    // Control: the entries are there.
    EXPECT_EQ(read_in_view("a", dst + "/new/from-src"), "src\n");
}

// pnsd stages a union's SRC in its runtime directory inside the view (overlayfs takes only
// layers that are mounts of the namespace). A user may cover that directory in their own view
// with an entry of their own, and there swap the stage's name between a directory and a link
// into the victim's home: pnsd must never follow it (the union is refused in that view), and
// unions in the user's other namespaces still work.
TEST_F(PathsAttack, CoveredStagingDirectoryIsNotFollowed) {
    std::string evil = make_dir(home_ + "/evil");
    own(evil, kOtherUid, 0755);
    attacker_ok({"ns", "create", "a"});
    auto covered = as_attacker({"bind", "--ns", "a", evil, pnsd_->runtime_dir() + "/views"});
    ASSERT_EQ(covered.exit_code, 0) << covered.err;
    auto result = race_rounds(
        [&](int i) {
            Round round;
            if (i == 0) {
                // (pnsd wrote its journal through the view too: let it land here.)
                make_dir(evil + "/a");
                own(evil + "/a", kOtherUid, 0755);
                make_dir(evil + "/.stage");
                own(evil + "/.stage", kOtherUid, 0755);
                link(evil + "/.stage-other", victim_ + "/Documents");
            }
            round.dir = evil;
            round.dst = make_dir(base_ + "/shown" + std::to_string(i));
            own(round.dst, kOtherUid, 0755);
            round.add = {"bind", "-b", "--ns", "a", home_ + "/src", round.dst};
            round.hit = [this, dst = round.dst] {
                return read_in_view("a", dst + "/report") == kSecret ||
                       list_in_view("a", dst).find("victim-only") != std::string::npos ||
                       read_in_view("a", victim_ + "/Documents/report", 0) != kSecret;
            };
            return round;
        },
        ".stage", ".stage-other");
    report("stage", result);
    EXPECT_EQ(result.hits, 0);
    // Control: another namespace of the attacker unions as usual.
    std::string dst = make_dir(base_ + "/control");
    own(dst, kOtherUid, 0755);
    attacker_ok({"ns", "create", "b"});
    attacker_ok({"bind", "-b", "--ns", "b", home_ + "/src", dst});
    EXPECT_EQ(read_in_view("b", dst + "/from-src"), "src\n");
}

}  // namespace
}  // namespace pns::test
