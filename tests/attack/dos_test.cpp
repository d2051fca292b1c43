// Denial of service (issue 11, case 6): one ordinary user (kOtherUid) tries to keep everyone
// else, root included, from being served, or to make pnsd hold without bound what the user
// sends or makes it create. Each test runs the flood and asserts that it is refused where the
// bound lies, that others (root, kVictimUid) are served meanwhile, and that its control (the
// same steps within the bound) succeeds.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "agent/namespaces/auth.hpp"
#include "agent/join/members.hpp"
#include "agent/views/mount.hpp"
#include "agent/policies/policies.hpp"
#include "agent/server/server.hpp"
#include "common/protocol.hpp"
#include "common/table.hpp"
#include "tests/attack/attack.hpp"

namespace pns::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using agent::Server;

constexpr int kLimitExceeded = 8;

// A connection to pnsd made by another uid (SO_PEERCRED names whoever called connect), then
// handed to this process.
class Conn {
  public:
    explicit Conn(UniqueFd fd) : fd_(std::move(fd)) {}
    int fd() const { return fd_.get(); }

    bool send_all(std::string_view data) {
        while (!data.empty()) {
            ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return false;
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    // Writes what the socket takes without blocking: bytes written, 0 when full, -1 on error.
    long send_some(std::string_view data) {
        ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
        return static_cast<long>(n);
    }
    // The next line; nullopt on EOF, error or timeout.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout = 20s) {
        auto deadline = Clock::now() + stretched(timeout);
        std::size_t newline;
        while ((newline = pending_.find('\n')) == std::string::npos) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd pfd{fd_.get(), POLLIN, 0};
            int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) return std::nullopt;
            char buf[65536];
            ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) return std::nullopt;
            pending_.append(buf, static_cast<std::size_t>(n));
        }
        std::string line = pending_.substr(0, newline);
        pending_.erase(0, newline + 1);
        return line;
    }
    json call(const json& req) {
        if (!send_all(req.dump() + "\n")) return nullptr;
        auto line = read_line();
        return line ? parse_json(*line) : json(nullptr);
    }
    // Whether pnsd has closed the connection (EOF or reset) now, without waiting; what arrived
    // before is kept.
    bool closed_now() {
        for (;;) {
            char buf[65536];
            ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                pending_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            return !(n < 0 && errno == EAGAIN);
        }
    }
    // Waits for the close; false if the connection is still open after `timeout`.
    bool wait_closed(std::chrono::milliseconds timeout) {
        auto deadline = Clock::now() + stretched(timeout);
        while (Clock::now() < deadline) {
            if (closed_now()) return true;
            pollfd pfd{fd_.get(), POLLIN, 0};
            ::poll(&pfd, 1, 50);
        }
        return closed_now();
    }
    const std::string& received() const { return pending_; }

  private:
    UniqueFd fd_;
    std::string pending_;
};

// `n` connections to `socket`, each made by a process of `uid`, all open at once.
std::vector<Conn> connect_as(uid_t uid, const std::string& socket, std::size_t n) {
    std::vector<Conn> conns;
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        ADD_FAILURE() << "socketpair: " << std::strerror(errno);
        return conns;
    }
    UniqueFd mine(pair[0]), theirs(pair[1]);
    pid_t child = ::fork();
    if (child == 0) {
        mine.reset();
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
            ::setresuid(uid, uid, uid) != 0)
            ::_exit(1);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
        // Handed over in batches: SCM_RIGHTS takes at most 253 descriptors a message.
        std::vector<int> batch;
        auto hand_over = [&] {
            if (batch.empty()) return true;
            char byte = 'x';
            iovec iov{&byte, 1};
            std::vector<char> control(CMSG_SPACE(sizeof(int) * batch.size()));
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
            cmsg->cmsg_level = SOL_SOCKET;
            cmsg->cmsg_type = SCM_RIGHTS;
            cmsg->cmsg_len = CMSG_LEN(sizeof(int) * batch.size());
            std::memcpy(CMSG_DATA(cmsg), batch.data(), sizeof(int) * batch.size());
            bool sent = ::sendmsg(theirs.get(), &msg, 0) == 1;
            for (int fd : batch) ::close(fd);
            batch.clear();
            return sent;
        };
        for (std::size_t i = 0; i < n; ++i) {
            int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
                ::_exit(2);
            batch.push_back(fd);
            if (batch.size() == 200 && !hand_over()) ::_exit(3);
        }
        ::_exit(hand_over() ? 0 : 3);
    }
    theirs.reset();
    while (conns.size() < n) {
        char byte;
        iovec iov{&byte, 1};
        std::vector<char> control(CMSG_SPACE(sizeof(int) * 253));
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        if (::recvmsg(mine.get(), &msg, MSG_CMSG_CLOEXEC) != 1) break;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            std::vector<int> fds(count);
            std::memcpy(fds.data(), CMSG_DATA(c), count * sizeof(int));
            for (int fd : fds) conns.emplace_back(UniqueFd(fd));
        }
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "connecting as uid " << uid;
    EXPECT_EQ(conns.size(), n);
    return conns;
}

// Raises this process's open-file limit to at least `n`.
void need_fds(rlim_t n) {
    rlimit own{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
    if (own.rlim_cur >= n) return;
    rlimit raised{n, std::max<rlim_t>(own.rlim_max, n)};
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &raised), 0) << std::strerror(errno);
}

// A deep directory whose paths are almost as long as a path may be (kMaxPathLength), so that
// a table of a few thousand entries is megabytes of text.
std::string long_base(const std::string& under) {
    std::string base = under;
    while (base.size() < 3700) base += "/" + std::string(250, 'd');
    return make_dir(base);
}

class Dos : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        // The attacker's namespace and a directory of its own to put entries on.
        ok({"ns", "create", "mine"}, as_attacker());
        home_ = make_dir(dir_.path() + "/home4242");
        ASSERT_EQ(::chown(home_.c_str(), kOtherUid, kOtherGid), 0);
    }
    static RunOptions as_attacker() { return {.uid = kOtherUid, .gid = kOtherGid}; }
    static RunOptions as_victim() { return {.uid = kVictimUid, .gid = kVictimGid}; }

    // `pnsctl status` as root answers, and so does the victim's `pnsctl ns ls`.
    void others_are_served() {
        auto root = ctl({"status"}, {.timeout = 10s});
        EXPECT_EQ(root.exit_code, 0) << "root's status: " << root.err;
        auto victim = ctl({"ns", "ls"}, {.uid = kVictimUid, .gid = kVictimGid, .timeout = 10s});
        EXPECT_EQ(victim.exit_code, 0) << "another user's ns ls: " << victim.err;
    }

    // A table of hide entries on directories under a long path, as text: as many as fit in
    // `bytes`, so less than one entry's line short of it.
    std::string long_table(std::size_t bytes, const std::string& tag) {
        std::string base = long_base(home_ + "/" + tag);
        std::string text;
        for (std::size_t i = 0;; ++i) {
            std::string line = "hide " + base + "/" + std::to_string(i) + "\n";
            if (text.size() + line.size() > bytes) return text;
            make_dir(base + "/" + std::to_string(i));
            text += line;
        }
    }

    // Waits until pnsd has let go of every connection but the one asking.
    void wait_for_clients(std::size_t n) {
        EXPECT_TRUE(wait_until([&] { return ctl_json(pnsd(), {"status"})["clients"] == n; }))
            << "pnsd still holds connections that were closed";
    }

    // `pnsctl apply --ns NAME -` of `table` as the attacker.
    Output apply_as_attacker(const std::string& name, const std::string& table) {
        return ctl({"apply", "--ns", name, "-"},
                   {.uid = kOtherUid, .gid = kOtherGid, .stdin_data = table, .timeout = 300s});
    }

    std::string home_;
};

// A FUSE file system whose daemon never answers, mounted in pnsd's mount namespace: opened
// /dev/fuse is kept and never read, so every lookup below `dir` blocks until it is closed
// (which aborts the connection: the lookups fail with ENOTCONN).
class SilentFuse {
  public:
    SilentFuse(pid_t sandbox, const std::string& dir, uid_t owner) {
        fuse_.reset(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
        if (!fuse_) {
            ADD_FAILURE() << "open /dev/fuse: " << std::strerror(errno);
            return;
        }
        std::string options = "fd=" + std::to_string(fuse_.get()) +
                              ",rootmode=40755,user_id=" + std::to_string(owner) +
                              ",group_id=" + std::to_string(owner) + ",allow_other";
        std::string ns = "/proc/" + std::to_string(sandbox) + "/ns/mnt";
        pid_t child = fork();
        if (child == 0) {
            int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0 || ::setns(fd, CLONE_NEWNS) != 0) _exit(1);
            _exit(::mount("pns-silent", dir.c_str(), "fuse", MS_NOSUID | MS_NODEV,
                          options.c_str()) == 0
                      ? 0
                      : 2);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mount the FUSE file system";
    }
    // Aborts the connection: whoever waits on it gets an error.
    void close() { fuse_.reset(); }

  private:
    UniqueFd fuse_;
};

// An edit whose SRC is on a FUSE file system that never answers: its lookup, made as the
// requester, blocks for as long as the file system does. That once stalled pnsd's one thread
// for everybody; now it holds only the requester's own lane. Root's requests, another user's
// edits and joins are served meanwhile; the attacker's own next edit waits behind it (its lane
// is its own), and both end when the file system goes. Control: the same edit of a source not
// on the stalled file system is answered at once.
TEST_F(Dos, AnEditStuckOnASilentFuseSourceDelaysNobodyElse) {
    const std::string stuck = make_dir(dir_.path() + "/silent");
    ASSERT_EQ(chown(stuck.c_str(), kOtherUid, kOtherGid), 0);
    const std::string target = make_dir(dir_.path() + "/target");
    const std::string plain = make_dir(home_ + "/plain");
    for (const std::string ns : {"slow", "next"}) ok({"ns", "create", ns}, {.uid = kOtherUid});
    ok({"ns", "create", "other"}, {.uid = kVictimUid});
    // The control first: a source that answers.
    ok({"bind", "--ns", "next", plain, target}, {.uid = kOtherUid});

    SilentFuse fuse(pnsd_->sandbox_pid(), stuck, kOtherUid);
    if (HasFailure()) return;
    // pnsctl as the attacker, in the background, in pnsd's mount namespace (where the FUSE
    // file system is: SRC is looked up in the requester's own).
    auto attacker = [&](std::vector<std::string> args) {
        std::vector<std::string> argv = {
            "/usr/bin/nsenter", "--mount=/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt",
            "--setuid", std::to_string(kOtherUid), "--setgid", std::to_string(kOtherGid), "--",
            "/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path()};
        argv.insert(argv.end(), args.begin(), args.end());
        return std::make_unique<Proc>(argv);
    };
    auto edit = attacker({"bind", "--ns", "slow", stuck + "/x", target});
    // The lane is in the lookup once pnsd says a job is pending.
    ASSERT_TRUE(wait_until([&] { return ctl_json(pnsd(), {"status"})["lanes"]["pending"] == 1; }))
        << pnsd_->log_since_start();

    auto timed = [&](const std::vector<std::string>& args, const RunOptions& options) {
        auto started = Clock::now();
        auto r = ctl(args, options);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    };
    const auto quick = stretched(2s);
    EXPECT_LT(timed({"status"}, {}), quick);
    EXPECT_LT(timed({"ns", "create", "roots"}, {}), quick);
    EXPECT_LT(timed({"bind", "--ns", "roots", plain, target}, {}), quick);
    EXPECT_LT(timed({"bind", "--ns", "other", target, target + "/"}, {.uid = kVictimUid}), quick);
    EXPECT_LT(timed({"run", "--ns", "other", "--", "/bin/true"}, {.uid = kVictimUid}), quick);

    // The attacker's next edit, of another namespace, waits on its own lane.
    auto second = attacker({"unbind", "--ns", "next", target});
    EXPECT_EQ(second->wait(1s), -1) << "the attacker's second edit did not wait for its first";

    fuse.close();
    EXPECT_EQ(edit->wait(), 1) << "the stuck edit should fail once its file system is gone";
    EXPECT_EQ(second->wait(), 0);
    EXPECT_EQ(export_of(pnsd(), "slow"), "");
    EXPECT_EQ(ctl_json(pnsd(), {"status"})["lanes"]["pending"], 0);
}

// A join whose satellite is still to be made waits on its user's lane (here behind that user's
// own edit, stuck on a silent FUSE source). Meanwhile root removes the namespace and another
// user creates one of the same name: the join was authorized for the first and must not land in
// the second (names are not identities), where the attacker's process would see the victim's
// view. Before the fix it would have: the satellite was made and joined by name once the lane
// was free. Control: the same steps without the removal; the join is made then.
TEST_F(Dos, AJoinWaitingOnItsLaneNeverLandsInALaterNamespaceOfTheSameName) {
    const std::string target = make_dir(dir_.path() + "/target");
    for (const std::string ns : {"slow", "kept", "reused"}) ok({"ns", "create", ns}, as_attacker());
    auto stalled_join = [&](const std::string& ns, bool replace) -> std::pair<int, std::string> {
        const std::string stuck = make_dir(dir_.path() + "/silent-" + ns);
        EXPECT_EQ(chown(stuck.c_str(), kOtherUid, kOtherGid), 0);
        SilentFuse fuse(pnsd_->sandbox_pid(), stuck, kOtherUid);
        // The attacker's edit, looked up in pnsd's mount namespace, where the FUSE mount is.
        Proc edit({"/usr/bin/nsenter",
                   "--mount=/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt",
                   "--setuid", std::to_string(kOtherUid), "--setgid", std::to_string(kOtherGid),
                   "--", "/usr/bin/env", "PNS_SOCKET=" + pnsd_->socket(), pnsctl_path(), "bind",
                   "--ns", "slow", stuck + "/x", target});
        EXPECT_TRUE(
            wait_until([&] { return ctl_json(pnsd(), {"status"})["lanes"]["pending"] == 1; }))
            << pnsd_->log_since_start();
        Proc join({"/bin/sh", "-c",
                   "PNS_SOCKET='" + pnsd_->socket() + "' exec '" + pnsctl_path() + "' run --ns " +
                       ns + " -- /bin/true 2>&1"},
                  kOtherUid);
        // Its satellite is queued on the attacker's lane, behind the stuck edit.
        EXPECT_TRUE(
            wait_until([&] { return ctl_json(pnsd(), {"status"})["lanes"]["pending"] == 2; }))
            << pnsd_->log_since_start();
        if (replace) {
            ok({"ns", "rm", ns});
            ok({"ns", "create", ns}, {.uid = kVictimUid, .gid = kVictimGid});
        }
        fuse.close();
        EXPECT_EQ(edit.wait(), 1) << "the stuck edit fails once its file system is gone";
        const int code = join.wait(60s);
        return {code, join.line(5s)};
    };
    auto [refused, said] = stalled_join("reused", true);
    EXPECT_EQ(refused, 1) << said;
    EXPECT_NE(said.find("removed meanwhile"), std::string::npos) << said;
    EXPECT_TRUE(ctl_json(pnsd(), {"ns", "show", "reused"})["members"].empty())
        << "the attacker's process is in the victim's namespace";
    // Control: nothing removed, the join waits for the lane and is made.
    auto [made, made_said] = stalled_join("kept", false);
    EXPECT_EQ(made, 0) << made_said;
}

// 4,096 connections from one user kept everyone out. Now one user holds at most its share:
// the connection past it is told why and closed, while root and other users are served.
TEST_F(Dos, ConnectionFloodOfOneUserLeavesRootAndOthersServed) {
    need_fds(4 * Server::kMaxConnectionsPerUser);
    // Control: the attacker gets every connection of its share, and each is served.
    auto held = connect_as(kOtherUid, pnsd().socket(), Server::kMaxConnectionsPerUser);
    ASSERT_EQ(held.size(), Server::kMaxConnectionsPerUser);
    for (std::size_t i = 0; i < held.size(); ++i)
        ASSERT_EQ(held[i].call(request("status"))["ok"], true) << "connection " << i;
    // The attack: more.
    auto more = connect_as(kOtherUid, pnsd().socket(), 8);
    for (auto& c : more) {
        auto line = c.read_line(5s);
        ASSERT_TRUE(line) << "a connection past the share got no answer";
        auto j = parse_json(*line);
        EXPECT_EQ(j["ok"], false) << *line;
        EXPECT_EQ(j["error"]["code"], kLimitExceeded) << *line;
        EXPECT_NE(j["error"]["message"].get<std::string>().find("connections"), std::string::npos)
            << *line;
        EXPECT_TRUE(c.wait_closed(5s));
    }
    others_are_served();
    auto status = ctl_json(pnsd(), {"status"});
    EXPECT_EQ(status["clients"].get<std::size_t>(), Server::kMaxConnectionsPerUser + 1) << status;
    // Its share is its own: once it lets one go, it may open another.
    held.pop_back();
    bool again = false;
    for (int i = 0; i < 100 && !again; ++i) {
        auto one = connect_as(kOtherUid, pnsd().socket(), 1);
        again = !one.empty() && one[0].call(request("status"))["ok"] == true;
    }
    EXPECT_TRUE(again);
}

// Many users together (a user with many uids, or many users colluding) still leave root its
// reserved slots: root's pnsctl gets in when every ordinary slot is taken.
TEST_F(Dos, OrdinaryUsersTogetherLeaveRootItsSlots) {
    const std::size_t ordinary = Server::kMaxConnections - Server::kRootReserve;
    const std::size_t uids = ordinary / Server::kMaxConnectionsPerUser;
    ASSERT_EQ(uids * Server::kMaxConnectionsPerUser, ordinary);
    need_fds(Server::kMaxConnections + 512);
    // A pnsd with room for two descriptors per client (socket and pidfd), as systemd gives it.
    TempDir dir;
    Pnsd roomy(dir.path());
    roomy.set_fd_limit(3 * Server::kMaxConnections);
    ASSERT_TRUE(roomy.start());
    std::vector<Conn> all;
    for (std::size_t u = 0; u < uids; ++u) {
        auto some = connect_as(static_cast<uid_t>(50000 + u), roomy.socket(),
                               Server::kMaxConnectionsPerUser);
        ASSERT_EQ(some.size(), Server::kMaxConnectionsPerUser);
        // Control: every one of them is served.
        ASSERT_EQ(some.back().call(request("status"))["ok"], true) << "uid " << 50000 + u;
        for (auto& c : some) all.push_back(std::move(c));
    }
    // Yet another ordinary user is turned away...
    auto late = connect_as(kVictimUid, roomy.socket(), 1);
    ASSERT_EQ(late.size(), 1u);
    auto line = late[0].read_line(5s);
    ASSERT_TRUE(line);
    EXPECT_NE(line->find("too many clients"), std::string::npos) << *line;
    // ...but root gets in, again and again.
    for (int i = 0; i < 5; ++i) {
        auto r = roomy.ctl({"status"}, {.timeout = 10s});
        EXPECT_EQ(r.exit_code, 0) << r.err;
    }
}

// Time on pnsd's main thread: one user's 128 connections, each with requests queued, got 16
// requests served each per pass, so another user's request waited for thousands of them. Now
// each uid gets about a millisecond per pass, and root's next request waits for a handful.
TEST_F(Dos, ManyConnectionsOfOneUserGetNoMoreTimeThanOneOfAnother) {
    auto flood = connect_as(kOtherUid, pnsd().socket(), Server::kMaxConnectionsPerUser);
    ASSERT_EQ(flood.size(), Server::kMaxConnectionsPerUser);
    // Queued on every connection at once (fewer under emulation: even one each makes an old
    // pnsd serve 128 of them before root's next request).
    const int queued = scaled(64);
    std::string batch;
    for (int i = 0; i < queued; ++i) batch += request("status").dump() + "\n";
    RawClient root(pnsd().socket());
    auto served = [&] {
        auto j = root.call(request("status"));
        return j["result"]["requests"].get<std::uint64_t>();
    };
    std::uint64_t before = served();
    for (auto& c : flood) ASSERT_TRUE(c.send_all(batch));  // within the socket buffer
    // Two of root's requests in a row: how many of the attacker's were served between them.
    std::uint64_t first = served();
    std::uint64_t second = served();
    EXPECT_LT(second - first - 1, 64u)
        << "root's request waited for " << second - first - 1 << " requests of another user";
    // Control: the attacker's requests are all served, in the end.
    std::size_t answered = 0;
    for (auto& c : flood)
        for (int i = 0; i < queued; ++i) answered += c.read_line().has_value();
    EXPECT_EQ(answered, queued * Server::kMaxConnectionsPerUser);
    EXPECT_GE(served() - before, queued * Server::kMaxConnectionsPerUser);
}

// Trickling a request a byte every few seconds kept a connection open forever (every byte
// reset the idle timeout). Now a request must be complete within the deadline from its first
// byte; the same request sent at once, or trickled within the deadline, is served.
TEST_F(Dos, TricklingARequestDoesNotKeepAConnection) {
    const std::string whole = request("status").dump() + "\n";
    // Control: trickled over a few seconds, well within the deadline.
    auto control = connect_as(kOtherUid, pnsd().socket(), 1);
    ASSERT_EQ(control.size(), 1u);
    for (char c : whole) {
        ASSERT_TRUE(control[0].send_all(std::string_view(&c, 1)));
        std::this_thread::sleep_for(2s / whole.size());
    }
    auto answered = control[0].read_line();
    ASSERT_TRUE(answered);
    EXPECT_EQ(parse_json(*answered)["ok"], true) << *answered;

    // The attack: a byte every two seconds, on many connections.
    auto slow = connect_as(kOtherUid, pnsd().socket(), 16);
    auto start = Clock::now();
    std::size_t sent = 0;
    bool all_closed = false;
    while (!all_closed) {
        ASSERT_LT(Clock::now() - start, stretched(Server::kRequestDeadline + 10s))
            << "pnsd still holds connections trickling a request after " << sent << " bytes";
        all_closed = true;
        for (auto& c : slow) {
            if (c.closed_now()) continue;
            all_closed = false;
            c.send_some(std::string_view(whole).substr(sent % (whole.size() - 1), 1));
        }
        ++sent;
        // Meanwhile others are served promptly.
        if (sent % 3 == 0) others_are_served();
        std::this_thread::sleep_for(2s);
    }
    EXPECT_GE(Clock::now() - start, Server::kRequestDeadline - 1s);
    for (auto& c : slow) EXPECT_NE(c.received().find("not complete"), std::string::npos);
}

// One unfinished request may be up to 32 MiB; one user may have at most kMaxInputPerUser of
// them buffered in pnsd. A user sending more over several connections is refused, while a
// legal request of the largest size (an apply of an 8 MiB table) is still served.
TEST_F(Dos, UnfinishedRequestsOfOneUserAreBounded) {
    const std::size_t per_conn = 30u << 20;  // under the 32 MiB of one request
    const std::size_t conns = Server::kMaxInputPerUser / per_conn + 2;
    auto flood = connect_as(kOtherUid, pnsd().socket(), conns);
    std::string chunk =
        R"({"version": 1, "op": "status", "args": {"pad": ")" + std::string(per_conn, 'x');
    std::size_t refused = 0;
    std::vector<std::size_t> sent(conns, 0);
    auto deadline = Clock::now() + stretched(20s);
    // Round robin, so that each holds part of its request at once.
    bool progress = true;
    while (progress && Clock::now() < deadline) {
        progress = false;
        for (std::size_t i = 0; i < conns; ++i) {
            if (sent[i] >= chunk.size()) continue;
            long n = flood[i].send_some(std::string_view(chunk).substr(
                sent[i], std::min<std::size_t>(1 << 20, chunk.size() - sent[i])));
            if (n < 0) {
                sent[i] = chunk.size();  // closed by pnsd
                continue;
            }
            sent[i] += static_cast<std::size_t>(n);
            progress = progress || n > 0;
        }
        if (!progress) std::this_thread::sleep_for(10ms), progress = true;
        bool all_done = true;
        for (std::size_t i = 0; i < conns; ++i) all_done = all_done && sent[i] >= chunk.size();
        if (all_done) break;
    }
    for (auto& c : flood) {
        if (!c.wait_closed(1s)) continue;
        if (c.received().find("unfinished requests") != std::string::npos) ++refused;
    }
    EXPECT_GE(refused, 1u) << "pnsd took more than " << (Server::kMaxInputPerUser >> 20)
                           << " MiB of unfinished requests from one user";
    others_are_served();
    flood.clear();
    wait_for_clients(1);

    // Control: the largest legal request (8 MiB of table text) is served for this user.
    std::string table = long_table(kMaxTableTextBytes, "big");
    ASSERT_GT(table.size(), kMaxTableTextBytes - 8192);
    auto r = apply_as_attacker("mine", table);
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The 8 MiB limit on a table's text held for apply and create only; entry by entry, a table
// could grow without bound. Now entry.add refuses what would take it past 8 MiB, and takes
// what fits.
TEST_F(Dos, TableTextLimitHoldsForEntryAdd) {
    // A table 64 bytes short of the limit.
    std::string table = long_table(kMaxTableTextBytes - 64, "grow");
    ASSERT_EQ(apply_as_attacker("mine", table).exit_code, 0);
    std::string last = table.substr(table.rfind("hide ", table.size() - 2) + 5);
    last.pop_back();
    std::size_t left = kMaxTableTextBytes - table.size();
    // The attack: an entry longer than what is left.
    std::string too_long = make_dir(last + "/x");
    ASSERT_GT(too_long.size() + 6, left);
    auto r = ctl({"hide", "--ns", "mine", too_long}, as_attacker());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("8 MiB"), std::string::npos) << r.err;
    EXPECT_EQ(export_of(pnsd(), "mine"), table) << "a refused entry.add changed the table";
    // Control: a short one fits.
    std::string short_dir = make_dir(dir_.path() + "/s");
    ASSERT_LT(short_dir.size() + 6, left);
    ok({"hide", "--ns", "mine", short_dir}, as_attacker());
}

// 256 namespaces of 65,536 tmpfs entries each, of unbounded size: a user could fill memory.
// Now each tmpfs holds at most mnt::kTmpfsBytes (writing more is ENOSPC in the view, and
// writing less works), and one user's namespaces hold at most auth::Quotas::tmpfs of them.
TEST_F(Dos, TmpfsEntriesAreBoundedInSizeAndNumber) {
    std::string scratch = make_dir(home_ + "/scratch");
    ASSERT_EQ(::chown(scratch.c_str(), kOtherUid, kOtherGid), 0);
    ok({"tmpfs", "--ns", "mine", scratch}, as_attacker());
    auto in_view = [&](const std::string& script) {
        return ctl({"run", "--ns", "mine", "--", "/bin/sh", "-c", script},
                   {.uid = kOtherUid, .gid = kOtherGid, .timeout = 60s});
    };
    // Control: half the bound fits.
    const auto half = agent::mnt::kTmpfsBytes / 2;
    auto fits = in_view("head -c " + std::to_string(half) + " /dev/zero > " + scratch +
                        "/a && stat -c %s " + scratch + "/a");
    ASSERT_EQ(fits.exit_code, 0) << fits.err;
    EXPECT_EQ(fits.out, std::to_string(half) + "\n");
    // The attack: more than the bound.
    auto full = in_view("head -c " + std::to_string(agent::mnt::kTmpfsBytes) + " /dev/zero > " +
                        scratch + "/b");
    EXPECT_NE(full.exit_code, 0);
    EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
    // And the host's directory got none of it.
    EXPECT_TRUE(std::filesystem::is_empty(scratch));

    // The number of tmpfs entries, over all of the user's namespaces.
    ok({"ns", "create", "second"}, as_attacker());
    std::size_t made = 1;
    for (; made < agent::auth::Quotas{}.tmpfs; ++made) {
        std::string d = make_dir(home_ + "/t" + std::to_string(made));
        ok({"tmpfs", "--ns", made % 2 ? "second" : "mine", d}, as_attacker());
    }
    std::string extra = make_dir(home_ + "/t-extra");
    auto refused = ctl({"tmpfs", "--ns", "second", extra}, as_attacker());
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_NE(refused.err.find("tmpfs entries"), std::string::npos) << refused.err;
    // Control: other kinds of entries are still taken, and root is not bounded by it.
    ok({"hide", "--ns", "second", extra}, as_attacker());
    ok({"ns", "create", "roots"});
    ok({"tmpfs", "--ns", "roots", extra});
}

// One user's namespaces together hold at most so many entries (default 65,536, one full
// namespace; here a pnsd with --user-entries 100, the mechanism being the same): whatever the
// user does, the entry past it is refused and the tables stay as they were.
TEST_F(Dos, EntriesOfOneUserAreBoundedOverAllItsNamespaces) {
    TempDir dir;
    Pnsd small(dir.path());
    small.set_extra_args({"--user-entries", "100"});
    ASSERT_TRUE(small.start());
    auto as = [&](const std::vector<std::string>& args, const std::string& in = {}) {
        return small.ctl(args, {.uid = kOtherUid, .gid = kOtherGid, .stdin_data = in});
    };
    std::string base = make_dir(home_ + "/e");
    std::string first, second;
    for (int i = 0; i < 50; ++i) first += "hide " + make_dir(base + "/" + std::to_string(i)) + "\n";
    for (int i = 0; i < 50; ++i) second += "ro " + base + "/" + std::to_string(i) + "\n";
    // Control: the whole share is taken, in two namespaces.
    ASSERT_EQ(as({"ns", "create", "one", "--from", "-"}, first).exit_code, 0);
    ASSERT_EQ(as({"ns", "create", "two"}).exit_code, 0);
    auto applied = as({"apply", "--ns", "two", "-"}, second);
    ASSERT_EQ(applied.exit_code, 0) << applied.err;
    // The attack: one more, in either, or in a new namespace, or by apply.
    auto gen = generation_of(small, "two");
    auto r = as({"hide", "--ns", "two", home_});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("at most 100 are allowed"), std::string::npos) << r.err;
    EXPECT_EQ(generation_of(small, "two"), gen);
    EXPECT_EQ(as({"apply", "--ns", "two", "-"}, second + "hide " + home_ + "\n").exit_code, 1);
    auto created = as({"ns", "create", "three", "--from", "-"}, "hide " + home_ + "\n");
    EXPECT_EQ(created.exit_code, 1);
    EXPECT_NE(created.err.find("entries"), std::string::npos) << created.err;
    EXPECT_EQ(export_of(small, "two"), second);
    // Control: once it gives some back, it may use them elsewhere; root is not bounded.
    ASSERT_EQ(as({"unbind", "--ns", "two", base + "/0"}).exit_code, 0);
    auto moved = as({"hide", "--ns", "one", home_});
    EXPECT_EQ(moved.exit_code, 0) << moved.err;
    EXPECT_EQ(small.ctl({"hide", "--ns", "two", home_}).exit_code, 0);
}

// Mounts are bounded as well as entries: one entry may clone a whole tree of mounts (a bind
// or ro of a directory with mounts below it). Here a pnsd with --user-mounts too small for
// the host's /sys and what is below it: a user's `ro /sys` is refused (and its view is as
// before), a `ro` of a plain directory is taken.
TEST_F(Dos, MountsOfOneUserAreBoundedOverAllItsNamespaces) {
    TempDir dir;
    Pnsd small(dir.path());
    // Started first with no bound that matters, to count /sys's mounts as its pnsd sees them
    // (the harness unmounts some of them where pnsd runs).
    small.set_extra_args({"--user-mounts", "1000000"});
    ASSERT_TRUE(small.start());
    std::ifstream mountinfo("/proc/" + std::to_string(small.sandbox_pid()) + "/mountinfo");
    std::size_t under_sys = 0;
    for (std::string line; std::getline(mountinfo, line);) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        fields >> id >> parent >> dev >> root >> mount_point;
        if (mount_point == "/sys" || mount_point.starts_with("/sys/")) ++under_sys;
    }
    if (under_sys < 4) GTEST_SKIP() << "the machine has too few mounts under /sys to tell";
    ASSERT_EQ(small.stop(), 0);
    small.set_extra_args({"--user-mounts", std::to_string(4 + under_sys / 2)});
    ASSERT_TRUE(small.start());
    auto as = [&](const std::vector<std::string>& args) {
        return small.ctl(args, {.uid = kOtherUid, .gid = kOtherGid});
    };
    ASSERT_EQ(as({"ns", "create", "one"}).exit_code, 0);
    // Control: a few single mounts. One hides /proc: pnsd counts the view's mounts without
    // looking anything up in the view (the table could put a file of the user's there).
    ASSERT_EQ(as({"hide", "--ns", "one", "/proc"}).exit_code, 0);
    for (int i = 0; i < 2; ++i)
        ASSERT_EQ(as({"ro", "--ns", "one", make_dir(home_ + "/m" + std::to_string(i))}).exit_code,
                  0);
    // The attack: one entry, many mounts.
    auto r = as({"ro", "--ns", "one", "/sys"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("mounts; at most"), std::string::npos) << r.err;
    EXPECT_EQ(generation_of(small, "one"), 4u);
    // The view is as it was: a fourth single mount still fits.
    auto fits = as({"ro", "--ns", "one", make_dir(home_ + "/m3")});
    EXPECT_EQ(fits.exit_code, 0) << fits.err;
}

// A client that never reads: each connection buffers a bounded amount of answers, and one
// user's connections together at most kMaxOutputPerUser; past that they are closed, while the
// ones within it get all of their answers.
TEST_F(Dos, UnreadAnswersOfOneUserAreBounded) {
    std::string table = long_table(kMaxTableTextBytes, "out");
    ASSERT_EQ(apply_as_attacker("mine", table).exit_code, 0);
    // Each export answer is the whole table: about 8 MiB that the attacker never reads.
    const std::size_t conns = Server::kMaxOutputPerUser / table.size() + 4;
    auto hogs = connect_as(kOtherUid, pnsd().socket(), conns);
    const std::string ask = request("ns.export", {{"name", "mine"}}).dump() + "\n";
    for (auto& h : hogs) ASSERT_TRUE(h.send_all(ask));
    // pnsd has answered (or closed) all of them once root's request, sent last, is answered.
    others_are_served();
    std::size_t closed = 0, answered = 0;
    for (auto& h : hogs) {
        if (h.closed_now() && h.received().find('\n') == std::string::npos) {
            ++closed;
            continue;
        }
        auto line = h.read_line(30s);
        if (line && parse_json(*line)["result"]["table"] == table) ++answered;
    }
    EXPECT_GE(closed, 1u) << "pnsd holds more than " << (Server::kMaxOutputPerUser >> 20)
                          << " MiB of answers one user does not read";
    // Control: the ones within the bound got their whole answers.
    EXPECT_GE(answered, Server::kMaxOutputPerUser / (table.size() + 4096) - 1);
}

// The members map is filled by the kernel at every fork of a member, which pnsd cannot refuse:
// a user forking inside its view must not take the room root's and other users' members need
// (a member the map lacks is not guarded, and its escapes go unseen). The map is as large as
// the number of processes the kernel allows, so no user can fill it: forks run out first.
TEST_F(Dos, ForkingMembersCannotCrowdOutOthers) {
    json tracker = ctl_json(pnsd(), {"status"})["tracker"];
    if (tracker["state"] != "active") {
        const char* must = std::getenv("PNS_TESTS_MUST_WORK");
        if (must && std::string_view(must) == "1") FAIL() << "no tracker: " << tracker;
        GTEST_SKIP() << "no tracker: " << tracker;
    }
    auto sysctl = [](const char* path) {
        std::ifstream in(path);
        std::size_t v = 0;
        in >> v;
        return v;
    };
    std::size_t kernel_most =
        std::min(sysctl("/proc/sys/kernel/pid_max"), sysctl("/proc/sys/kernel/threads-max"));
    EXPECT_GE(tracker["members_capacity"].get<std::size_t>(), kernel_most) << tracker;

    // The attack, scaled down: many members forked in the attacker's view.
    const int kForks = scaled(1000);
    std::string pids = home_ + "/pids";
    auto forked = ctl({"run", "--ns", "mine", "--", "/bin/sh", "-c",
                       "i=0; while [ $i -lt " + std::to_string(kForks) +
                           " ]; do sleep 600 </dev/null >/dev/null 2>&1 & echo $! >> " + pids +
                           "; i=$((i+1)); done"},
                      {.uid = kOtherUid, .gid = kOtherGid, .timeout = 120s});
    struct Reap {
        std::string file;
        ~Reap() {
            std::ifstream in(file);
            for (pid_t pid; in >> pid;) ::kill(pid, SIGKILL);
        }
    } reap{pids};
    ASSERT_EQ(forked.exit_code, 0) << forked.err;
    tracker = ctl_json(pnsd(), {"status"})["tracker"];
    EXPECT_GE(tracker["members"].get<int>(), kForks) << tracker;
    EXPECT_EQ(tracker["untracked_children"], 0) << tracker;

    // Control: root's join afterwards is tracked.
    ok({"ns", "create", "roots"});
    Proc sleeper({"/bin/sleep", "600"});
    ok({"attach", "--ns", "roots", std::to_string(sleeper.pid())});
    json ps = ctl_json(pnsd(), {"ps", "--ns", "roots"});
    bool tracked = false;
    for (const auto& row : ps["processes"])
        if (row["pid"] == sleeper.pid()) tracked = row["tracked"] == true;
    EXPECT_TRUE(tracked) << ps;
}

// The tracker's map of policies is shared: a user with a delegated cgroup could set a policy on
// every cgroup below it until root could set none. Now one user has kMaxPoliciesPerUser, and
// its policies past that are refused while root's are still taken.
TEST_F(Dos, PoliciesOfOneUserAreBounded) {
    if (auto missing = missing_host_prerequisite(); !missing.empty())
        GTEST_SKIP() << "this host lacks " << missing;
    ASSERT_EQ(ctl_json(pnsd(), {"status"})["tracker"]["state"], "active");
    const std::string top =
        cgroup2_root() + "/pns-test-" + std::filesystem::path(dir_.path()).filename().string();
    ASSERT_EQ(::mkdir(top.c_str(), 0755), 0) << top << ": " << std::strerror(errno);
    struct Remove {
        std::string top;
        ~Remove() {
            std::vector<std::string> dirs;
            for (const auto& e : std::filesystem::directory_iterator(top))
                if (e.is_directory()) dirs.push_back(e.path());
            dirs.push_back(top);
            for (const auto& d : dirs)
                for (int i = 0; i < 200 && ::rmdir(d.c_str()) != 0; ++i) ::usleep(10000);
        }
    } remove{top};
    const std::size_t share = agent::Policies::kMaxPoliciesPerUser;
    for (std::size_t i = 0; i <= share; ++i) {
        std::string d = top + "/u" + std::to_string(i);
        ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
        ASSERT_EQ(::chown(d.c_str(), kOtherUid, kOtherGid), 0);
    }
    // Control: the user's share is taken.
    for (std::size_t i = 0; i < share; ++i)
        ok({"policy", "set", "--cgroup", top + "/u" + std::to_string(i), "--ns", "mine"},
           as_attacker());
    // The attack: one more.
    auto r = ctl({"policy", "set", "--cgroup", top + "/u" + std::to_string(share), "--ns", "mine"},
                 as_attacker());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("policies"), std::string::npos) << r.err;
    // Control: root's policy is taken, and a user's replaced policy is no new one.
    ok({"ns", "create", "roots"});
    ok({"policy", "set", "--cgroup", top + "/u" + std::to_string(share), "--ns", "roots"});
    ok({"ns", "create", "mine2"}, as_attacker());
    ok({"policy", "set", "--cgroup", top + "/u0", "--ns", "mine2"}, as_attacker());
    for (std::size_t i = 0; i < share; ++i)
        ok({"policy", "rm", "--cgroup", top + "/u" + std::to_string(i)}, as_attacker());
    ok({"policy", "rm", "--cgroup", top + "/u" + std::to_string(share)});
}

// `pnsctl events` streams: each event goes to every stream that may see it, so one user may
// have only so many open; closing one makes room for another.
TEST_F(Dos, EventStreamsOfOneUserAreBounded) {
    const std::string watch = request("proc.events").dump() + "\n";
    auto streams = connect_as(kOtherUid, pnsd().socket(), agent::Members::kMaxWatchersPerUser + 1);
    for (std::size_t i = 0; i < agent::Members::kMaxWatchersPerUser; ++i) {
        ASSERT_TRUE(streams[i].send_all(watch));
        auto line = streams[i].read_line(5s);
        ASSERT_TRUE(line) << "stream " << i;
        EXPECT_NE(line->find("watching"), std::string::npos) << *line;
    }
    ASSERT_TRUE(streams.back().send_all(watch));
    auto refused = streams.back().read_line(5s);
    ASSERT_TRUE(refused);
    EXPECT_EQ(parse_json(*refused)["error"]["code"], kLimitExceeded) << *refused;
    // Root's stream is not counted against it.
    RawClient root(pnsd().socket());
    ASSERT_TRUE(root.send_all(watch));
    auto root_line = root.read_line(5s);
    ASSERT_TRUE(root_line);
    EXPECT_NE(root_line->find("watching"), std::string::npos) << *root_line;
    // Control: a stream given back makes room (once pnsd has seen it go).
    streams.erase(streams.begin());
    streams.pop_back();
    wait_for_clients(agent::Members::kMaxWatchersPerUser - 1 + 2);  // and root's, and status
    auto again = connect_as(kOtherUid, pnsd().socket(), 1);
    ASSERT_TRUE(again[0].send_all(watch));
    auto line = again[0].read_line(5s);
    ASSERT_TRUE(line);
    EXPECT_NE(line->find("watching"), std::string::npos) << *line;
}

// A join of a user's process needs two helpers of pnsd's that run as that user: the child
// that makes the user's satellite, which enters a user namespace the user owns
// (user_namespaces(7)), and the holder, which sits in the view with the member's uid. The user
// may stop either (kernel/signal.c: kill_ok_by_cred lets a uid signal its own processes, and
// asks for CAP_KILL in the target's user namespace, which its owner has). pnsd once waited for
// both without a bound, the maker on the one mount thread and the holder on the tracer thread:
// stopped, they held up every view's edits and every join, root's too (the attacker found and
// stopped the maker 78 times of 80 in 5 s; with a stopped holder another user's `pnsctl run`
// waited 60 s and failed). Now the maker runs on the user's own lane and the tracer waits for
// no holder: each is killed after 10 s and only the attacker's own join fails; root and other
// users are served meanwhile. Each helper is attacked on its own: the maker in joins of new
// namespaces, the holder in joins of a namespace whose satellite exists. Control: without the
// stopping, the same join succeeds.
TEST_F(Dos, AStoppedHelperOfPnsdHoldsUpOnlyItsOwnUser) {
    ok({"ns", "create", "other"}, {.uid = kVictimUid, .gid = kVictimGid});
    auto timed = [&](const std::vector<std::string>& args, const RunOptions& options) {
        auto started = Clock::now();
        auto r = ctl(args, options);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    };
    // One join of the attacker's into `name` while `stopper` stops what it finds. Returns what
    // pnsctl said if one of pnsd's helpers was held (the join refused), else nothing.
    auto attempt = [&](Stopper& stopper, const std::string& name) -> std::optional<std::string> {
        int stopped_before = stopper.stopped();
        Proc join({"/bin/sh", "-c",
                   "PNS_SOCKET='" + pnsd_->socket() + "' exec '" + pnsctl_path() + "' run --ns " +
                       name + " -- /bin/true 2>&1"},
                  kOtherUid);
        // Until the join ends or the attacker has stopped a helper (no stretched wait: pnsd
        // kills a stopped helper after 10 s, whatever the machine).
        auto exited = [&] { return state_of(join.pid()) == 'Z'; };
        auto until = Clock::now() + 5s;
        while (Clock::now() < until && !exited() && stopper.stopped() == stopped_before)
            ::usleep(1000);
        if (exited() || stopper.stopped() == stopped_before) {
            EXPECT_NE(join.wait(60s), -1);
            return std::nullopt;
        }
        // A helper is stopped: pnsd serves root and the victim meanwhile, before the helper's
        // 10 s are up (answers that waited for it would come only after).
        const auto status_took = timed({"status"}, {});
        const auto run_took = timed({"run", "--ns", "other", "--", "/bin/true"},
                                    {.uid = kVictimUid, .gid = kVictimGid});
        EXPECT_LT(status_took, stretched(2s));
        EXPECT_LT(run_took, stretched(2s));
        const bool still_held = !exited();
        const int code = join.wait(30s);
        std::string said = join.line(5s);
        if (code == 0) return std::nullopt;  // stopped after it had done its part: no hold
        std::printf("[ held ] %s\n[ held ] meanwhile root's status took %lld ms, the victim's "
                    "run %lld ms\n",
                    said.c_str(), static_cast<long long>(status_took.count()),
                    static_cast<long long>(run_took.count()));
        EXPECT_EQ(code, 1) << "the attacker's own join ends, refused, once the helper it "
                              "stopped is killed";
        EXPECT_TRUE(still_held) << "root and the victim were answered only once the hold was over";
        return said;
    };

    bool maker = false, holder = false;
    {
        Stopper stopper(true, pnsd_->pid());
        ASSERT_TRUE(stopper.started());
        for (int i = 0; i < 50 && !maker; ++i) {
            const std::string name = "new" + std::to_string(i);
            ok({"ns", "create", name}, as_attacker());
            if (auto said = attempt(stopper, name))
                maker = said->find("user namespace") != std::string::npos ||
                        said->find("satellite") != std::string::npos;
            ok({"ns", "rm", name}, as_attacker());
        }
        stopper.finish();
    }
    // The satellite is made first, unstopped: only the holder is left to stop.
    ok({"ns", "create", "sat"}, as_attacker());
    auto made = ctl({"run", "--ns", "sat", "--", "/bin/true"}, as_attacker());
    EXPECT_EQ(made.exit_code, 0) << made.err;
    {
        Stopper stopper(true, pnsd_->pid());
        ASSERT_TRUE(stopper.started());
        for (int i = 0; i < 50 && !holder; ++i)
            if (auto said = attempt(stopper, "sat"))
                holder = said->find("holder") != std::string::npos;
        stopper.finish();
    }
    EXPECT_TRUE(maker) << "the attacker never held a satellite's maker: that part proves nothing";
    EXPECT_TRUE(holder) << "the attacker never held a holder: that part proves nothing";
    // Control: unstopped, the attacker's join of the same namespace is made.
    auto r = ctl({"run", "--ns", "sat", "--", "/bin/true"}, as_attacker());
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace pns::test
