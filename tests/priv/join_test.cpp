// Joining (issue 4): pnsctl run, pnsctl attach, supervision of multithreaded processes,
// pnsctl detach and ps. Real processes, busy in the kernel while pnsd injects system calls
// into them, check for themselves that they notice nothing (tests/priv/tools/victim.c).
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

class JoinTest : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        data_ = make_dir(dir_.path() + "/data");
        // The test's own copy, reachable by the unprivileged uid (the build tree may not be).
        victim_ = dir_.path() + "/victim";
        std::filesystem::copy_file(PNS_VICTIM_PATH, victim_);
        chmod(victim_.c_str(), 0755);
        host_ = make_file(data_ + "/target", "host\n");
        make_file(data_ + "/alt", "view\n");
        chmod((data_ + "/alt").c_str(), 0644);
    }

    std::string data(const std::string& rel) const { return data_ + "/" + rel; }

    // A namespace `name` (owned by `owner`) where data/target shows data/alt.
    void make_view(const std::string& name, uid_t owner = 0) {
        RunOptions as;
        if (owner != 0) as.uid = owner;
        ok({"ns", "create", name}, as);
        ok({"bind", "--ns", name, data("alt"), host_}, as);
    }

    RunOptions as(uid_t uid) {
        RunOptions o;
        o.uid = uid;
        return o;
    }

    // The mount namespace of the view of `name`, as a process run there sees it.
    std::string view_ns(const std::string& name, std::optional<uid_t> uid = std::nullopt) {
        RunOptions o;
        if (uid) o.uid = *uid;
        auto r = ctl({"run", "--ns", name, "--", "/bin/readlink", "/proc/self/ns/mnt"}, o);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.out.substr(0, r.out.find('\n'));
    }

    // Checks that a refusal left `pid` running, untraced, where it was.
    void untouched(pid_t pid, const std::string& ns_before) {
        char state = state_of(pid);
        EXPECT_TRUE(state == 'S' || state == 'R') << "state " << state;
        EXPECT_EQ(mount_ns(pid), ns_before);
        EXPECT_EQ(tracer_of(pid), 0);
    }

    std::string data_, victim_, host_;
};

// ---- run ----------------------------------------------------------------------------------

TEST_F(JoinTest, RunShowsTheViewToTheCommandAndItsChildrenOnly) {
    make_view("dev");
    auto r = ctl({"run", "--ns", "dev", "--", "/bin/sh", "-c",
                  "cat " + host_ + "; (cat " + host_ + ") ; /bin/sh -c 'cat " + host_ + "'"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "view\nview\nview\n");
    EXPECT_EQ(read_file(host_), "host\n");
    auto outside = ctl({"status"});
    EXPECT_EQ(outside.exit_code, 0);
}

TEST_F(JoinTest, RunHasTheExitStatusAndSignalsOfTheCommand) {
    make_view("dev");
    EXPECT_EQ(ctl({"run", "--ns", "dev", "--", "/bin/sh", "-c", "exit 7"}).exit_code, 7);
    EXPECT_EQ(ctl({"run", "--ns", "dev", "--", "/bin/sh", "-c", "kill -TERM $$"}).exit_code,
              128 + SIGTERM);
    auto missing = ctl({"run", "--ns", "dev", "--", "/no/such/program"});
    EXPECT_EQ(missing.exit_code, 127);
    EXPECT_NE(missing.err.find("/no/such/program"), std::string::npos) << missing.err;
    // Options of the command are the command's, not pnsctl's.
    auto echo = ctl({"run", "--ns", "dev", "--", "/bin/echo", "--json", "-n", "x"});
    EXPECT_EQ(echo.exit_code, 0);
    EXPECT_EQ(echo.out, "--json -n x\n");
    // stdin is the command's.
    RunOptions input;
    input.stdin_data = "typed\n";
    auto cat = ctl({"run", "--ns", "dev", "--", "/bin/cat"}, input);
    EXPECT_EQ(cat.out, "typed\n");
}

// On a terminal, the command has the terminal: it is the foreground, ^C reaches it.
TEST_F(JoinTest, RunGivesTheCommandTheTerminal) {
    make_view("dev");
    std::string script = "tty; exec sleep 30";
    int master = -1;
    pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::string socket = "PNS_SOCKET=" + pnsd_->socket();
        putenv(socket.data());
        std::string ns = "/proc/" + std::to_string(pnsd_->sandbox_pid()) + "/ns/mnt";
        int fd = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNS) != 0) _exit(125);
        execl(pnsctl_path(), "pnsctl", "run", "--ns", "dev", "--", "/bin/sh", "-c", script.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
    }
    std::string out;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (out.find('\n') == std::string::npos && Clock::now() < deadline) {
        pollfd pfd{master, POLLIN, 0};
        if (poll(&pfd, 1, 1000) <= 0) continue;
        char buf[256];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    EXPECT_TRUE(out.starts_with("/dev/pts/")) << out;
    // pnsctl became sh, which became sleep: the same process, in the view.
    EXPECT_EQ(mount_ns(pid), view_ns("dev"));
    ASSERT_TRUE(wait_for_exec(pid, "sleep"));
    ASSERT_EQ(write(master, "\x03", 1), 1);  // ^C
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << status;
    close(master);
}

TEST_F(JoinTest, RunKeepsTheWorkingDirectory) {
    make_view("dev");
    RunOptions in_data;
    in_data.cwd = data_;
    auto r = ctl({"run", "--ns", "dev", "--", "/bin/sh", "-c", "pwd; cat target"}, in_data);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, data_ + "\nview\n");
    EXPECT_EQ(r.err, "");
}

TEST_F(JoinTest, RunFallsBackToRootWithAWarningWhenTheDirectoryIsHidden) {
    make_dir(data("gone"));
    ok({"ns", "create", "dev"});
    ok({"hide", "--ns", "dev", data_});
    RunOptions in_gone;
    in_gone.cwd = data("gone");
    auto r = ctl({"run", "--ns", "dev", "--", "/bin/pwd"}, in_gone);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "/\n");
    EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(data("gone")), std::string::npos) << r.err;
}

TEST_F(JoinTest, RunAsAnUnprivilegedUserJoinsTheUsersSatellite) {
    make_view("mine", kOtherUid);
    auto r = ctl({"run", "--ns", "mine", "--", "/bin/sh", "-c",
                  "cat " + host_ + "; id -u; readlink /proc/self/ns/user"},
                 as(kOtherUid));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string content, uid, user_ns;
    std::getline(lines, content);
    std::getline(lines, uid);
    std::getline(lines, user_ns);
    EXPECT_EQ(content, "view");
    EXPECT_EQ(uid, std::to_string(kOtherUid));
    EXPECT_NE(user_ns, std::filesystem::read_symlink("/proc/self/ns/user").string());
    // And no capabilities to show for it, even in its own user namespace.
    auto caps = ctl({"run", "--ns", "mine", "--", "/bin/grep", "CapEff", "/proc/self/status"},
                    as(kOtherUid));
    EXPECT_EQ(caps.out, "CapEff:\t0000000000000000\n");
    EXPECT_EQ(read_file(host_), "host\n");
}

// ---- attach ---------------------------------------------------------------------------------

TEST_F(JoinTest, AttachMovesARunningProcessAndItsLaterChildren) {
    make_view("dev");
    std::string before = mount_ns(getpid());
    Proc sh({"/bin/sh", "-c", "echo ready; while read -r line; do cat " + host_ + "; done"});
    ASSERT_EQ(sh.line(), "ready");
    sh.send("x");
    EXPECT_EQ(sh.line(), "host");
    auto r = ctl({"attach", "--ns", "dev", std::to_string(sh.pid())});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(mount_ns(sh.pid()), view_ns("dev"));
    sh.send("x");
    EXPECT_EQ(sh.line(), "view");  // cat: a child started after the attach
    EXPECT_EQ(read_file(host_), "host\n");
    EXPECT_EQ(mount_ns(getpid()), before);

    auto ps = ctl_json(pnsd(), {"ps"});
    bool listed = false;
    for (const auto& row : ps["processes"])
        if (row["pid"] == sh.pid()) {
            listed = true;
            EXPECT_EQ(row["namespace"], "dev");
            EXPECT_EQ(row["state"], "member");
            EXPECT_EQ(row["view"], "primary");
            EXPECT_TRUE(row["since"].is_number());
        }
    EXPECT_TRUE(listed) << ps.dump();
    auto show = ctl_json(pnsd(), {"ns", "show", "dev"});
    ASSERT_TRUE(show["members"].is_array()) << show.dump();
    EXPECT_EQ(show["members"].size(), 1u) << show.dump();
}

TEST_F(JoinTest, AttachAsAnUnprivilegedUser) {
    make_view("mine", kOtherUid);
    Proc sh({"/bin/sh", "-c", "echo ready; while read -r line; do cat " + host_ + "; done"},
            kOtherUid);
    ASSERT_EQ(sh.line(), "ready");
    auto r = ctl({"attach", "--ns", "mine", std::to_string(sh.pid())}, as(kOtherUid));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(mount_ns(sh.pid()), view_ns("mine", kOtherUid));
    sh.send("x");
    EXPECT_EQ(sh.line(), "view");
    std::ifstream status("/proc/" + std::to_string(sh.pid()) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with("CapEff:") || line.starts_with("CapPrm:")) {
            EXPECT_EQ(line.substr(line.find('\t') + 1), "0000000000000000") << line;
        }
}

TEST_F(JoinTest, AttachWithoutANamespaceUsesTheCallersOwn) {
    make_view("dev");
    Proc sleeper({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(sleeper.pid(), "sleep"));
    auto r =
        ctl({"run", "--ns", "dev", "--", pnsctl_path(), "attach", std::to_string(sleeper.pid())});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(mount_ns(sleeper.pid()), view_ns("dev"));
    // Outside every namespace there is none to default to.
    Proc other({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(other.pid(), "sleep"));
    auto none = ctl({"attach", std::to_string(other.pid())});
    EXPECT_EQ(none.exit_code, 1);
    EXPECT_NE(none.err.find("--ns"), std::string::npos) << none.err;
}

TEST_F(JoinTest, DetachTakesARootProcessBackToTheHostView) {
    make_view("dev");
    Proc sleeper({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(sleeper.pid(), "sleep"));
    ok({"attach", "--ns", "dev", std::to_string(sleeper.pid())});
    EXPECT_EQ(mount_ns(sleeper.pid()), view_ns("dev"));
    ok({"detach", std::to_string(sleeper.pid())});
    // pnsd's own mount namespace is "the host" (the harness runs pnsd in one of its own).
    EXPECT_EQ(mount_ns(sleeper.pid()), mount_ns(pnsd_->sandbox_pid()));
    auto again = ctl({"detach", std::to_string(sleeper.pid())});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("not in a pns namespace"), std::string::npos) << again.err;
}

TEST_F(JoinTest, ASatelliteMemberCannotLeaveAndIsToldWhy) {
    make_view("mine", kOtherUid);
    make_view("other", kOtherUid);
    Proc sleeper({"/bin/sleep", "60"}, kOtherUid);
    ASSERT_TRUE(wait_for_exec(sleeper.pid(), "sleep"));
    ok({"attach", "--ns", "mine", std::to_string(sleeper.pid())}, as(kOtherUid));
    std::string inside = mount_ns(sleeper.pid());
    auto detach = ctl({"detach", std::to_string(sleeper.pid())}, as(kOtherUid));
    EXPECT_EQ(detach.exit_code, 1);
    EXPECT_NE(detach.err.find("user namespace of its own"), std::string::npos) << detach.err;
    EXPECT_NE(detach.err.find("start the program again outside"), std::string::npos) << detach.err;
    auto move = ctl({"attach", "--ns", "other", std::to_string(sleeper.pid())}, as(kOtherUid));
    EXPECT_EQ(move.exit_code, 1);
    EXPECT_NE(move.err.find("pnsctl run --ns other"), std::string::npos) << move.err;
    untouched(sleeper.pid(), inside);
    // Attaching it to the view it is in already is fine (and a no-op).
    ok({"attach", "--ns", "mine", std::to_string(sleeper.pid())}, as(kOtherUid));
    EXPECT_EQ(mount_ns(sleeper.pid()), inside);
}

// ---- processes that must not notice -------------------------------------------------------

class BusyTarget : public JoinTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(BusyTarget, Attached200TimesItNoticesNothing) {
    make_view("a");
    make_view("b");
    std::string view_a = view_ns("a"), view_b = view_ns("b");
    std::string stop = dir_.path() + "/stop";
    Proc victim({victim_, GetParam(), stop});
    ASSERT_EQ(victim.line(), "ready");
    for (int i = 0, rounds = scaled(200); i < rounds; ++i) {
        const char* ns = i % 2 ? "b" : "a";
        auto r = ctl({"attach", "--ns", ns, std::to_string(victim.pid())});
        ASSERT_EQ(r.exit_code, 0) << "attach " << i << ": " << r.err;
        ASSERT_EQ(mount_ns(victim.pid()), i % 2 ? view_b : view_a) << i;
        char state = state_of(victim.pid());
        ASSERT_TRUE(state == 'S' || state == 'R') << "left in state " << state << " after " << i;
    }
    write_file(stop, "");
    std::string result = victim.line();
    EXPECT_EQ(victim.wait(), 0) << result;
    EXPECT_TRUE(result.starts_with("ok ")) << result;
}

// No room on its stack for pnsd's scratch area: a page is mapped in it, and unmapped after.
TEST_F(JoinTest, AProcessWithoutStackRoomGetsAScratchPage) {
    make_view("dev");
    Proc victim({victim_, "tinystack", dir_.path() + "/stop"});
    ASSERT_EQ(victim.line(), "ready");
    ASSERT_TRUE(wait_until([&] { return state_of(victim.pid()) == 'S'; }));  // in pause()
    auto maps = [&] { return read_file("/proc/" + std::to_string(victim.pid()) + "/maps"); };
    std::string before = maps();
    ok({"attach", "--ns", "dev", std::to_string(victim.pid())});
    EXPECT_EQ(mount_ns(victim.pid()), view_ns("dev"));
    EXPECT_EQ(maps(), before);
    char state = state_of(victim.pid());
    EXPECT_EQ(state, 'S');
    auto log = pnsd_->log_since_start();
    EXPECT_NE(log.find("mapping a scratch page"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Workloads, BusyTarget,
                         ::testing::Values("nanosleep", "pipe", "poll", "signals", "spin"));

// ---- multithreaded processes ----------------------------------------------------------------

TEST_F(JoinTest, EveryChildOfASupervisedProcessJoinsAndItJoinsAtExec) {
    make_view("dev");
    const std::string children = std::to_string(scaled(1000));
    Proc spawner({victim_, "spawner", host_, "view", children});
    ASSERT_EQ(spawner.line(), "ready");
    auto r = ctl({"attach", "--ns", "dev", std::to_string(spawner.pid())});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("multithreaded"), std::string::npos) << r.out;
    // Not in the view yet: it is supervised.
    EXPECT_NE(mount_ns(spawner.pid()), view_ns("dev"));
    auto ps = ctl_json(pnsd(), {"ps"});
    bool listed = false;
    for (const auto& row : ps["processes"])
        if (row["pid"] == spawner.pid()) {
            listed = true;
            EXPECT_EQ(row["state"], "supervised");
        }
    EXPECT_TRUE(listed) << ps.dump();

    spawner.send("go");
    EXPECT_EQ(spawner.line(std::chrono::seconds(120)), "children " + children + " misses 0");
    // Then it exec'd cat, which joined before its first instruction.
    EXPECT_EQ(spawner.line(), "view");
    EXPECT_EQ(spawner.wait(), 0);
    EXPECT_EQ(read_file(host_), "host\n");
}

TEST_F(JoinTest, DetachEndsASupervision) {
    make_view("dev");
    Proc spawner({victim_, "spawner", host_, "host", "20"});
    ASSERT_EQ(spawner.line(), "ready");
    ok({"attach", "--ns", "dev", std::to_string(spawner.pid())});
    ok({"detach", std::to_string(spawner.pid())});
    // Let go: untraced, running, and its children stay outside.
    EXPECT_TRUE(wait_until([&] { return tracer_of(spawner.pid()) == 0; }));
    spawner.send("go");
    EXPECT_EQ(spawner.line(), "children 20 misses 0");
    EXPECT_EQ(spawner.line(), "host");
    EXPECT_EQ(spawner.wait(), 0);
}

// pnsd stopping (or killed) lets every supervised process go, untraced and running.
class SupervisionEnd : public JoinTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SupervisionEnd, PnsdGoingAwayLetsSupervisedProcessesGo) {
    bool kill9 = GetParam();
    make_view("dev");
    Proc spawner({victim_, "spawner", host_, "host", "20"});
    ASSERT_EQ(spawner.line(), "ready");
    ok({"attach", "--ns", "dev", std::to_string(spawner.pid())});
    if (kill9)
        pnsd_->kill9();
    else
        EXPECT_EQ(pnsd_->stop(), 0);
    EXPECT_EQ(tracer_of(spawner.pid()), 0);
    char state = state_of(spawner.pid());
    EXPECT_TRUE(state == 'S' || state == 'R') << state;
    spawner.send("go");
    EXPECT_EQ(spawner.line(), "children 20 misses 0");
    EXPECT_EQ(spawner.line(), "host");
    EXPECT_EQ(spawner.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(StopOrKill, SupervisionEnd, ::testing::Values(false, true));

TEST_F(JoinTest, MembersAreFoundAgainAfterARestart) {
    make_view("dev");
    Proc sleeper({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(sleeper.pid(), "sleep"));
    ok({"attach", "--ns", "dev", std::to_string(sleeper.pid())});
    EXPECT_EQ(pnsd_->stop(), 0);
    ASSERT_TRUE(pnsd_->start());
    EXPECT_EQ(mount_ns(sleeper.pid()), view_ns("dev"));
    auto ps = ctl_json(pnsd(), {"ps", "--ns", "dev"});
    bool listed = false;
    for (const auto& row : ps["processes"])
        if (row["pid"] == sleeper.pid()) {
            listed = true;
            EXPECT_EQ(row["state"], "member");
        }
    EXPECT_TRUE(listed) << ps.dump();
    // And it can be moved again by the new pnsd.
    ok({"detach", std::to_string(sleeper.pid())});
    EXPECT_EQ(mount_ns(sleeper.pid()), mount_ns(pnsd_->sandbox_pid()));
}

// ---- refusals -------------------------------------------------------------------------------

TEST_F(JoinTest, RefusesProcessesThatAreNotTheCallers) {
    make_view("mine", kOtherUid);
    make_view("dev");
    Proc roots({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(roots.pid(), "sleep"));
    std::string before = mount_ns(roots.pid());
    auto r = ctl({"attach", "--ns", "mine", std::to_string(roots.pid())}, as(kOtherUid));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("only your own processes"), std::string::npos) << r.err;
    EXPECT_TRUE(is_one_line(r.err)) << r.err;
    untouched(roots.pid(), before);

    // A user's process into a namespace the user does not own.
    Proc users({"/bin/sleep", "60"}, kOtherUid);
    ASSERT_TRUE(wait_for_exec(users.pid(), "sleep"));
    auto into_roots = ctl({"attach", "--ns", "dev", std::to_string(users.pid())}, as(kOtherUid));
    EXPECT_EQ(into_roots.exit_code, 1);
    EXPECT_NE(into_roots.err.find("only its owner and root"), std::string::npos) << into_roots.err;
    untouched(users.pid(), mount_ns(users.pid()));

    // Another user's process.
    auto by_other = ctl({"attach", "--ns", "mine", std::to_string(users.pid())}, as(kOtherUid + 1));
    EXPECT_EQ(by_other.exit_code, 1);
    untouched(users.pid(), mount_ns(users.pid()));
}

TEST_F(JoinTest, RootProcessesJoinOnlyRootsNamespaces) {
    make_view("mine", kOtherUid);
    Proc roots({"/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(roots.pid(), "sleep"));
    std::string before = mount_ns(roots.pid());
    auto r = ctl({"attach", "--ns", "mine", std::to_string(roots.pid())});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("root processes join only namespaces owned by root"), std::string::npos)
        << r.err;
    untouched(roots.pid(), before);
}

TEST_F(JoinTest, RefusesInitKernelThreadsZombiesAndPnsd) {
    make_view("dev");
    auto init = ctl({"attach", "--ns", "dev", "1"});
    EXPECT_EQ(init.exit_code, 1);
    EXPECT_NE(init.err.find("PID 1"), std::string::npos) << init.err;

    auto kthread = ctl({"attach", "--ns", "dev", "2"});  // kthreadd
    EXPECT_EQ(kthread.exit_code, 1);
    EXPECT_NE(kthread.err.find("kernel thread"), std::string::npos) << kthread.err;

    pid_t zombie = fork();
    if (zombie == 0) _exit(0);
    while (state_of(zombie) != 'Z') usleep(1000);
    auto z = ctl({"attach", "--ns", "dev", std::to_string(zombie)});
    EXPECT_EQ(z.exit_code, 1);
    EXPECT_NE(z.err.find("zombie"), std::string::npos) << z.err;
    waitpid(zombie, nullptr, 0);

    auto self = ctl({"attach", "--ns", "dev", std::to_string(pnsd_->pid())});
    EXPECT_EQ(self.exit_code, 1);
    EXPECT_NE(self.err.find("pnsd itself"), std::string::npos) << self.err;

    auto none = ctl({"attach", "--ns", "dev", "999999999"});
    EXPECT_EQ(none.exit_code, 1);
    auto bad = ctl({"attach", "--ns", "dev", "12abc"});
    EXPECT_EQ(bad.exit_code, 2);
    auto no_ns = ctl({"attach", "--ns", "nope", std::to_string(getpid())});
    EXPECT_EQ(no_ns.exit_code, 1);
    EXPECT_NE(no_ns.err.find("no namespace"), std::string::npos) << no_ns.err;
}

TEST_F(JoinTest, RefusesAProcessTracedByAnotherTracerAndNamesIt) {
    make_view("dev");
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
        raise(SIGSTOP);
        for (;;) pause();
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);  // its SIGSTOP, reported to us, its tracer
    ptrace(PTRACE_CONT, child, nullptr, nullptr);
    auto r = ctl({"attach", "--ns", "dev", std::to_string(child)});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("traced by " + std::to_string(getpid())), std::string::npos) << r.err;
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
}

TEST_F(JoinTest, RefusesSeccompFilteredProcessesAndNonRootProcessesWithCapabilities) {
    make_view("dev");
    make_view("mine", kOtherUid);
    std::string stop = dir_.path() + "/stop";
    Proc filtered({victim_, "seccomp", stop});
    ASSERT_EQ(filtered.line(), "ready");
    std::string before = mount_ns(filtered.pid());
    auto r = ctl({"attach", "--ns", "dev", std::to_string(filtered.pid())});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seccomp"), std::string::npos) << r.err;
    untouched(filtered.pid(), before);

    // A non-root process with an ambient capability (as a service manager may give).
    Proc capable({"/usr/bin/setpriv", "--reuid", std::to_string(kOtherUid), "--regid",
                  std::to_string(kOtherGid), "--clear-groups", "--inh-caps", "+net_bind_service",
                  "--ambient-caps", "+net_bind_service", "/bin/sleep", "60"});
    ASSERT_TRUE(wait_for_exec(capable.pid(), "sleep"));
    auto c = ctl({"attach", "--ns", "mine", std::to_string(capable.pid())});
    EXPECT_EQ(c.exit_code, 1);
    EXPECT_NE(c.err.find("capabilities"), std::string::npos) << c.err;
    write_file(stop, "");
    EXPECT_EQ(filtered.wait(), 0);
}

}  // namespace
}  // namespace pns::test
