// pnsd as a process: tables survive a restart (clean or kill -9), one pnsd per socket and per
// state directory, a stale socket is replaced, SIGTERM ends it cleanly.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

class Daemon : public PrivTest {};

// Several namespaces with owners, flags, entries and generations of all kinds, and one that
// was removed and must stay removed. Paths are real: every table is realized as a view.
void populate(const Pnsd& pnsd, const std::string& dir) {
    auto must = [&](const std::vector<std::string>& args, const RunOptions& options = {}) {
        auto r = pnsd.ctl(args, options);
        ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    };
    const std::string s = make_dir(dir + "/src"), d = make_dir(dir + "/dst");
    for (const char* name : {"alpha", "bin", "with space"}) make_dir(s + "/" + name);
    for (const char* name : {"alpha", "bin", "dev", "tmp", "etc"}) make_dir(d + "/" + name);
    must({"ns", "create", "alpha"});
    must({"bind", "--ns", "alpha", s + "/alpha", d + "/alpha"});
    must({"bind", "--ns", "alpha", "-b", "-c", s + "/bin", d + "/bin"});
    must({"hide", "--ns", "alpha", d + "/dev"});
    must({"ns", "create", "beta", "--locked", "--owner", std::to_string(kOtherUid)});
    must({"tmpfs", "--ns", "beta", d + "/tmp"}, {.uid = kOtherUid});
    must({"ro", "--ns", "beta", d + "/etc"}, {.uid = kOtherUid});
    must({"ns", "create", "empty"});
    std::string table;
    for (int i = 0; i < 40; ++i) {
        std::string n = std::to_string(i);
        make_dir(s + "/with space/" + n);
        make_dir(d + "/big/" + n);
        table += "bind \"" + s + "/with space/" + n + "\" " + d + "/big/" + n + "\n";
    }
    write_file(dir + "/big.txt", table);
    must({"ns", "create", "big", "--from", dir + "/big.txt"});
    must({"ns", "create", "churn"});
    for (int i = 0; i < 10; ++i)
        must({"hide", "--ns", "churn", make_dir(d + "/h" + std::to_string(i))});
    must({"unbind", "--ns", "churn", d + "/h3"});
    must({"ns", "create", "gone"});
    must({"hide", "--ns", "gone", d + "/dev"});
    must({"ns", "rm", "gone"});
}

// Nothing went wrong while loading: no table skipped, no view that could not be adopted.
void expect_clean_start(const Pnsd& pnsd) {
    std::string log = pnsd.log_since_start();
    EXPECT_EQ(log.find("skipping"), std::string::npos) << log;
    EXPECT_EQ(log.find(" warning "), std::string::npos) << log;
    EXPECT_EQ(log.find(" error "), std::string::npos) << log;
}

// Everything a client can observe: the list (owners, flags, generations, counts) and every
// table's text.
json snapshot(const Pnsd& pnsd) {
    json list = ctl_json(pnsd, {"ns", "ls"});
    json tables = json::object();
    for (const auto& ns : list["namespaces"]) {
        auto name = ns["name"].get<std::string>();
        tables[name] = export_of(pnsd, name);
    }
    return {{"list", list}, {"tables", tables}};
}

TEST_F(Daemon, TablesSurviveCleanRestart) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    ASSERT_NO_FATAL_FAILURE(populate(pnsd, dir.path()));
    const json before = snapshot(pnsd);
    ASSERT_EQ(before["list"]["namespaces"].size(), 5u) << before;
    EXPECT_EQ(before["list"]["namespaces"][3]["name"], "churn") << before;
    EXPECT_EQ(before["list"]["namespaces"][3]["generation"], 12) << before;

    EXPECT_EQ(pnsd.stop(), 0) << pnsd.log();
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(snapshot(pnsd), before);
    expect_clean_start(pnsd);
    // The next edit continues from the stored generation.
    auto r = ctl_json(pnsd, {"hide", "--ns", "churn", make_dir(dir.path() + "/dst/next")});
    EXPECT_EQ(r["generation"], 13) << r;
    // And ownership survived: the user still edits beta, and still cannot edit alpha.
    const std::string x = make_dir(dir.path() + "/dst/x");
    EXPECT_EQ(pnsd.ctl({"hide", "--ns", "beta", x}, {.uid = kOtherUid}).exit_code, 0);
    EXPECT_EQ(pnsd.ctl({"hide", "--ns", "alpha", x}, {.uid = kOtherUid}).exit_code, 1);

    // A second clean restart, with a fresh Pnsd object, sees the latest state.
    const json after = snapshot(pnsd);
    EXPECT_EQ(pnsd.stop(), 0);
    Pnsd again(dir.path());
    ASSERT_TRUE(again.start());
    EXPECT_EQ(snapshot(again), after);
    expect_clean_start(again);
}

TEST_F(Daemon, TablesSurviveKill9) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    ASSERT_NO_FATAL_FAILURE(populate(pnsd, dir.path()));
    const json before = snapshot(pnsd);

    pnsd.kill9();
    // The killed pnsd could not remove its socket: the next one replaces it.
    EXPECT_TRUE(exists(pnsd.socket()));
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(snapshot(pnsd), before);
    expect_clean_start(pnsd);
    auto status = ctl_json(pnsd, {"status"});
    EXPECT_EQ(status["pid"], pnsd.pid()) << status;
    EXPECT_EQ(status["namespaces"], 5) << status;
}

TEST_F(Daemon, RefusesSecondInstanceOnSameSocket) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    const std::string x = make_dir(dir.path() + "/dst/x");
    ASSERT_EQ(pnsd.ctl({"ns", "create", "dev"}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"hide", "--ns", "dev", x}).exit_code, 0);

    auto second = run({pnsd_path(), "--socket", pnsd.socket(), "--state-dir",
                       dir.path() + "/state2", "--runtime-dir", dir.path() + "/run2"},
                      {.timeout = std::chrono::seconds(20)});
    EXPECT_NE(second.exit_code, 0);
    EXPECT_NE(second.err.find("another pnsd is already serving on '" + pnsd.socket() + "'"),
              std::string::npos)
        << second.err;

    // The first one is untouched: same process, same socket, same tables.
    EXPECT_TRUE(exists(pnsd.socket()));
    auto status = ctl_json(pnsd, {"status"});
    EXPECT_EQ(status["pid"], pnsd.pid()) << status;
    EXPECT_EQ(status["state_dir"], pnsd.state_dir()) << status;
    EXPECT_EQ(export_of(pnsd, "dev"), "hide " + x + "\n");
    EXPECT_EQ(pnsd.stop(), 0);
}

TEST_F(Daemon, RefusesSecondInstanceOnSameStateDir) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    ASSERT_EQ(pnsd.ctl({"ns", "create", "dev"}).exit_code, 0);

    const std::string other_socket = dir.path() + "/other.sock";
    auto second = run({pnsd_path(), "--socket", other_socket, "--state-dir", pnsd.state_dir(),
                       "--runtime-dir", dir.path() + "/run2"},
                      {.timeout = std::chrono::seconds(20)});
    EXPECT_NE(second.exit_code, 0);
    EXPECT_NE(second.err.find("'" + pnsd.state_dir() + "' is in use by another pnsd"),
              std::string::npos)
        << second.err;
    EXPECT_FALSE(exists(other_socket));

    auto status = ctl_json(pnsd, {"status"});
    EXPECT_EQ(status["pid"], pnsd.pid()) << status;
    const std::string x = make_dir(dir.path() + "/dst/x");
    ASSERT_EQ(pnsd.ctl({"hide", "--ns", "dev", x}).exit_code, 0);
    EXPECT_EQ(pnsd.stop(), 0);
    // What the first one wrote is all there.
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(export_of(pnsd, "dev"), "hide " + x + "\n");
}

TEST_F(Daemon, ReplacesStaleSocketButNotOtherFiles) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    // A socket nobody listens on, as a crash leaves it.
    {
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, pnsd.socket().c_str(), sizeof addr.sun_path - 1);
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ::close(fd);
    }
    ASSERT_TRUE(exists(pnsd.socket()));
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(pnsd.ctl({"ns", "ls"}).exit_code, 0);
    EXPECT_EQ(pnsd.stop(), 0);

    // A regular file where the socket should be is somebody else's: left alone, and said so.
    write_file(pnsd.socket(), "precious");
    auto r = run({pnsd_path(), "--socket", pnsd.socket(), "--state-dir", pnsd.state_dir(),
                  "--runtime-dir", pnsd.runtime_dir()},
                 {.timeout = std::chrono::seconds(20)});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("is not a socket"), std::string::npos) << r.err;
    EXPECT_EQ(read_file(pnsd.socket()), "precious");
}

TEST_F(Daemon, SigtermExitsZeroAndRemovesSocket) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    ASSERT_EQ(pnsd.ctl({"ns", "create", "dev"}).exit_code, 0);
    // Clients in every state do not hold it up: idle, half a request, unread answers.
    RawClient idle(pnsd.socket());
    RawClient half(pnsd.socket());
    ASSERT_TRUE(half.send_all(R"({"version":1,"op":"ns.)"));
    RawClient unread(pnsd.socket());
    std::string many;
    for (int i = 0; i < 2000; ++i) many += request("status").dump() + "\n";
    ASSERT_GT(unread.send_some(many), 0);
    // Answered by then: pnsd has the connections and the requests in hand.
    RawClient probe(pnsd.socket());
    auto status = probe.call(request("status"));
    EXPECT_GE(status["result"]["clients"].get<int>(), 4) << status;

    EXPECT_TRUE(exists(pnsd.socket()));
    EXPECT_EQ(pnsd.stop(), 0) << pnsd.log();
    EXPECT_FALSE(exists(pnsd.socket()));
    EXPECT_TRUE(idle.wait_closed());
    EXPECT_NE(pnsd.log_since_start().find("pnsd: stopped"), std::string::npos)
        << pnsd.log_since_start();

    // SIGINT (Ctrl-C in a terminal) is handled the same way.
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(pnsd.signal_and_wait(SIGINT), 0);
    EXPECT_FALSE(exists(pnsd.socket()));
    // And the table is intact afterwards.
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(generation_of(pnsd, "dev"), 1u);
}

}  // namespace
}  // namespace pns::test
