// pnsd as systemd runs it: the installed pnsd.service (cmake --install), with systemd as PID 1.
// vmtest/ runs this in its VM. Members keep their views through `systemctl restart` and a
// kill -9 of the main process, and pnsctl answers again within 2 s; a service started in a
// policy cgroup runs in its view from its first instruction.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "tests/priv/harness.hpp"

namespace pns::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kPnsctl = "/usr/bin/pnsctl";
constexpr const char* kUnit = "/usr/lib/systemd/system/pnsd.service";

Output systemctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/systemctl"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

class SystemdTest : public PrivTest {
  protected:
    void SetUp() override {
        PrivTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_TRUE(exists("/run/systemd/system")) << "systemd is not PID 1 here";
        ASSERT_TRUE(exists(kUnit)) << "pnsd.service is not installed (cmake --install)";
        auto r = systemctl({"start", "pnsd.service"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        data_ = make_dir(dir_.path() + "/data");
        make_file(data_ + "/src/file", "view\n");
        make_file(data_ + "/src/later", "edited\n");
        shown_ = make_dir(dir_.path() + "/shown");
    }
    void TearDown() override {
        members_.clear();  // kills the members before their namespaces go
        for (const auto& name : namespaces_) pnsctl({"ns", "rm", "--force", name});
        systemctl({"stop", "pnsd.service"});
        PrivTest::TearDown();
    }

    Output pnsctl(const std::vector<std::string>& args, const RunOptions& options = {}) {
        std::vector<std::string> argv = {kPnsctl};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, options);
    }
    void ok(const std::vector<std::string>& args, const RunOptions& options = {}) {
        auto r = pnsctl(args, options);
        ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    }
    void make_ns(const std::string& name, const RunOptions& options = {}) {
        ok({"ns", "create", name}, options);
        namespaces_.push_back(name);
        ok({"bind", "--ns", name, data_ + "/src", shown_}, options);
    }
    json status() {
        auto r = pnsctl({"status", "--json"});
        return r.exit_code == 0 ? json::parse(r.out, nullptr, false) : json();
    }
    pid_t main_pid() {
        auto r = systemctl({"show", "--property=MainPID", "--value", "pnsd.service"});
        return r.exit_code == 0 ? std::atoi(r.out.c_str()) : 0;
    }
    // How long until pnsctl is answered by a pnsd other than `old`.
    std::chrono::milliseconds until_answered(pid_t old) {
        auto start = Clock::now();
        wait_until(
            [&] {
                auto s = status();
                return s.is_object() && s["pid"] != old;
            },
            std::chrono::seconds(20));
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }
    // A member that prints what it sees at `shown_/NAME` for every line it is sent.
    Proc& member(const std::string& ns, const RunOptions& options = {}) {
        members_.push_back(std::make_unique<Proc>(
            std::vector<std::string>{
                kPnsctl, "run", "--ns", ns, "--", "/bin/sh", "-c",
                "while read name; do cat " + shown_ + "/$name 2>&1 || echo missing; done"},
            options.uid));
        return *members_.back();
    }
    static std::string ask(Proc& p, const std::string& name) {
        p.send(name);
        return p.line();
    }

    TempDir dir_;
    std::string data_, shown_;
    std::vector<std::string> namespaces_;
    std::vector<std::unique_ptr<Proc>> members_;
};

TEST_F(SystemdTest, MembersKeepTheirViewsThroughRestartAndKill) {
    auto s = status();
    ASSERT_TRUE(s.is_object());
    EXPECT_EQ(s["tracker"]["state"], "active") << s.dump();
    EXPECT_EQ(s["guard"]["state"], "active") << s.dump();
    RunOptions user;
    user.uid = kOtherUid;
    make_ns("sd");
    make_ns("theirs", user);
    Proc& root = member("sd");
    Proc& satellite = member("theirs", user);
    EXPECT_EQ(ask(root, "file"), "view");
    EXPECT_EQ(ask(satellite, "file"), "view");

    pid_t before = main_pid();
    auto restart = systemctl({"restart", "pnsd.service"});
    ASSERT_EQ(restart.exit_code, 0) << restart.err;
    auto restarted = until_answered(before);
    EXPECT_LE(restarted.count(), 2000) << "pnsctl unanswered for " << restarted.count() << " ms";
    std::printf("pnsctl answered %lld ms after systemctl restart returned\n",
                static_cast<long long>(restarted.count()));
    EXPECT_EQ(ask(root, "file"), "view");
    EXPECT_EQ(ask(satellite, "file"), "view");
    EXPECT_EQ(status()["guard"]["reused"], true);

    before = main_pid();
    ASSERT_GT(before, 1);
    ASSERT_EQ(kill(before, SIGKILL), 0);
    auto killed = until_answered(before);
    EXPECT_LE(killed.count(), 2000) << "pnsctl unanswered for " << killed.count() << " ms";
    std::printf("pnsctl answered %lld ms after kill -9 of pnsd\n",
                static_cast<long long>(killed.count()));
    EXPECT_EQ(ask(root, "file"), "view");
    EXPECT_EQ(ask(satellite, "file"), "view");
    // The restarted pnsd manages the same views: an edit reaches members made before.
    ok({"bind", "--ns", "sd", data_ + "/src/later", shown_ + "/file"});
    EXPECT_EQ(ask(root, "file"), "edited");
    EXPECT_EQ(ask(satellite, "file"), "view");
}

TEST_F(SystemdTest, AServiceInAPolicyCgroupRunsInItsViewFromItsFirstInstruction) {
    make_ns("svc");
    auto slice = systemctl({"start", "pnstest.slice"});
    ASSERT_EQ(slice.exit_code, 0) << slice.err;
    ASSERT_TRUE(exists("/sys/fs/cgroup/pnstest.slice"));
    ok({"policy", "set", "--cgroup", "/sys/fs/cgroup/pnstest.slice", "--ns", "svc"});
    std::string out = dir_.path() + "/probe.out";
    // The service's first program is the one that reads: it must see the view at once.
    write_file("/run/systemd/system/pnsprobe.service",
               "[Service]\nType=oneshot\nSlice=pnstest.slice\nExecStart=/bin/cat " + shown_ +
                   "/file\nStandardOutput=file:" + out + "\n");
    ASSERT_EQ(systemctl({"daemon-reload"}).exit_code, 0);
    auto started = systemctl({"start", "pnsprobe.service"});
    EXPECT_EQ(started.exit_code, 0) << started.err;
    EXPECT_EQ(read_file(out), "view\n");
    ok({"policy", "rm", "--cgroup", "/sys/fs/cgroup/pnstest.slice"});
    unlink("/run/systemd/system/pnsprobe.service");
    systemctl({"daemon-reload"});
    systemctl({"stop", "pnstest.slice"});
}

}  // namespace
}  // namespace pns::test
