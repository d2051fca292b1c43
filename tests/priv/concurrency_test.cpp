// Many clients at once: well over 64 connected together, all served; a client that stalls
// mid-request or never reads its answers holds only its own connection.
#include <poll.h>
#include <sys/resource.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class Concurrency : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_EQ(pnsd_->ctl({"ns", "create", "dev"}).exit_code, 0);
    }

    // `n` fresh clients, all connected at once, each sends `ns.ls` and gets its answer.
    // Returns how long that took.
    Clock::duration many_list(std::size_t n) {
        auto start = Clock::now();
        auto clients = connect_many(pnsd().socket(), n);
        const std::string line = request("ns.ls").dump() + "\n";
        for (auto& c : clients) EXPECT_TRUE(c.send_all(line));
        // One deadline for all: a pnsd that serves nobody fails this in 10 s, not 64 times 10 s.
        auto deadline = Clock::now() + stretched(10s);
        for (auto& c : clients) {
            auto response = c.read_line(
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
            EXPECT_TRUE(response) << "a client got no answer";
            if (!response) continue;
            auto j = parse_json(*response);
            EXPECT_EQ(j["ok"], true) << *response;
            EXPECT_EQ(j["result"]["namespaces"][0]["name"], "dev") << *response;
        }
        return Clock::now() - start;
    }

    // 64 pnsctl processes at once, each `ns ls`; all must succeed.
    void many_pnsctl_list(int n) {
        std::vector<std::thread> threads;
        std::atomic<int> failures{0};
        for (int i = 0; i < n; ++i) {
            threads.emplace_back([&] {
                auto r = pnsd().ctl({"ns", "ls"}, {.timeout = 30s});
                if (r.exit_code != 0 || r.out.find("dev") == std::string::npos) ++failures;
            });
        }
        for (auto& t : threads) t.join();
        EXPECT_EQ(failures, 0);
    }
};

TEST_F(Concurrency, ManyClientsConnectedAtOnce) {
    constexpr std::size_t kClients = 200;
    auto clients = connect_many(pnsd().socket(), kClients);
    // pnsd holds them all at the same time.
    RawClient observer(pnsd().socket());
    auto status = observer.call(request("status"));
    EXPECT_EQ(status["result"]["clients"], kClients + 1) << status;

    // Every client sends before any reads: all requests are in flight together.
    for (std::size_t i = 0; i < kClients; ++i) {
        ASSERT_TRUE(clients[i].send_all(
            request("ns.create", {{"name", "c" + std::to_string(i)}}).dump() + "\n"));
    }
    for (std::size_t i = 0; i < kClients; ++i) {
        auto line = clients[i].read_line();
        ASSERT_TRUE(line) << "client " << i;
        EXPECT_EQ(parse_json(*line)["result"]["name"], "c" + std::to_string(i));
    }
    // Then a pipelined exchange on each, answered in order per connection.
    const std::string dst = make_dir(dir_.path() + "/dst");
    for (std::size_t i = 0; i < kClients; ++i) {
        std::string name = "c" + std::to_string(i);
        std::string target = make_dir(dst + "/" + name);
        std::string wire =
            request("entry.add", {{"name", name}, {"entry", {{"verb", "hide"}, {"dst", target}}}})
                .dump() +
            "\n" + request("ns.export", {{"name", name}}).dump() + "\n" +
            request("ns.show", {{"name", name}}).dump() + "\n";
        ASSERT_TRUE(clients[i].send_all(wire));
    }
    for (std::size_t i = 0; i < kClients; ++i) {
        std::string name = "c" + std::to_string(i);
        auto added = clients[i].read_line();
        auto exported = clients[i].read_line();
        auto shown = clients[i].read_line();
        ASSERT_TRUE(added && exported && shown) << "client " << i;
        EXPECT_EQ(parse_json(*added)["result"]["generation"], 2);
        EXPECT_EQ(parse_json(*exported)["result"]["table"], "hide " + dst + "/" + name + "\n");
        EXPECT_EQ(parse_json(*shown)["result"]["entry_count"], 1);
    }
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), kClients + 1);

    // When they leave, pnsd forgets them.
    clients.clear();
    auto after = observer.call(request("status"));
    // Closing is noticed on pnsd's next pass; the observer's own request is that pass or later.
    for (int i = 0; i < 100 && after["result"]["clients"] != 1; ++i)
        after = observer.call(request("status"));
    EXPECT_EQ(after["result"]["clients"], 1) << after;
}

TEST_F(Concurrency, SixtyFourPnsctlProcessesAtOnce) {
    constexpr int kProcesses = 64;
    const std::string dst = make_dir(dir_.path() + "/dst");
    for (int i = 1; i < kProcesses; i += 2) make_dir(dst + "/h" + std::to_string(i));
    std::vector<std::thread> threads;
    std::vector<Output> results(kProcesses);
    for (int i = 0; i < kProcesses; ++i) {
        threads.emplace_back([&, i] {
            // Half create their own namespace, half edit the shared one.
            if (i % 2 == 0)
                results[static_cast<std::size_t>(i)] =
                    pnsd().ctl({"ns", "create", "p" + std::to_string(i)}, {.timeout = 30s});
            else
                results[static_cast<std::size_t>(i)] = pnsd().ctl(
                    {"hide", "--ns", "dev", dst + "/h" + std::to_string(i)}, {.timeout = 30s});
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kProcesses; ++i)
        EXPECT_EQ(results[static_cast<std::size_t>(i)].exit_code, 0)
            << i << ": " << results[static_cast<std::size_t>(i)].err;
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), static_cast<std::size_t>(kProcesses / 2 + 1));
    // Every edit of the shared namespace landed, one generation each.
    auto show = ctl_json(pnsd(), {"ns", "show", "dev"});
    EXPECT_EQ(show["entry_count"], kProcesses / 2);
    EXPECT_EQ(show["generation"], kProcesses / 2 + 1);
}

TEST_F(Concurrency, StalledHalfRequestDoesNotDelayOthers) {
    // Several clients each send half a request and stall.
    std::vector<RawClient> stalled;
    const std::string whole = request("ns.show", {{"name", "dev"}}).dump() + "\n";
    const std::string first_half = whole.substr(0, whole.size() / 2);
    for (int i = 0; i < 8; ++i) {
        stalled.emplace_back(pnsd().socket());
        ASSERT_TRUE(stalled.back().send_all(first_half));
    }
    // While they stall, 64 other clients are served at once, promptly.
    auto took = many_list(64);
    EXPECT_LT(took, stretched(2s))
        << "64 clients took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
        << " ms";
    many_pnsctl_list(64);
    // The stalled ones finish their requests and are answered correctly.
    for (auto& s : stalled) ASSERT_TRUE(s.send_all(whole.substr(first_half.size())));
    for (auto& s : stalled) {
        auto line = s.read_line();
        ASSERT_TRUE(line);
        EXPECT_EQ(parse_json(*line)["result"]["name"], "dev");
    }
}

// When pnsd runs out of file descriptors (a service manager's limit below the number of
// clients), a client it cannot take is told so at once instead of waiting forever in the
// listen backlog; the clients it holds are served.
TEST_F(Concurrency, ClientsBeyondTheFdLimitAreToldNotLeftHanging) {
    TempDir dir;
    Pnsd limited(dir.path());
    limited.set_fd_limit(64);
    ASSERT_TRUE(limited.start());
    // What pnsd holds open at rest (its socket, its state, the tracker's and guard's maps, the
    // reserve it keeps for refusing): the clients get the rest of the 64.
    std::size_t idle = 0;
    for ([[maybe_unused]] const auto& fd :
         std::filesystem::directory_iterator("/proc/" + std::to_string(limited.pid()) + "/fd"))
        ++idle;
    ASSERT_LT(idle, 48u) << "pnsd leaves too little room to test";
    constexpr std::size_t kClients = 100;
    auto clients = connect_many(limited.socket(), kClients);
    const std::string line = request("ns.ls").dump() + "\n";
    for (auto& c : clients) c.send_some(line);  // a refused client may be closed already
    std::size_t served = 0, refused = 0;
    auto deadline = Clock::now() + stretched(10s);
    for (auto& c : clients) {
        auto response = c.read_line(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        ASSERT_TRUE(response) << "a client got no answer (" << served << " served, " << refused
                              << " refused before it)";
        auto j = parse_json(*response);
        if (j["ok"] == true) {
            ++served;
            continue;
        }
        ++refused;
        EXPECT_EQ(j["error"]["code"], 8) << *response;  // limit-exceeded
        EXPECT_TRUE(c.wait_closed());
    }
    // All but a few: a request may need a descriptor of its own for a moment.
    EXPECT_GE(served + 4, 64 - idle) << idle << " descriptors open at rest";
    EXPECT_GE(refused, 1u);
    // Once the clients leave, newcomers are served again (their closing is noticed within a
    // few passes of pnsd's loop; each attempt below is one such pass).
    clients.clear();
    bool ok = false;
    for (int attempt = 0; attempt < 100 && !ok; ++attempt) {
        RawClient later(limited.socket());
        ok = later.call(request("ns.ls"))["ok"] == true;
    }
    EXPECT_TRUE(ok);
    EXPECT_EQ(limited.stop(), 0);
}

TEST_F(Concurrency, ClientsBeyondMaxConnectionsAreTold) {
    constexpr std::size_t kMaxConnections = 4096;  // Server::kMaxConnections
    // Enough file descriptors on both sides, whatever the limits this test was started with.
    rlimit own{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
    if (own.rlim_cur < 2 * kMaxConnections) {
        rlimit raised{2 * kMaxConnections, std::max<rlim_t>(own.rlim_max, 2 * kMaxConnections)};
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &raised), 0) << std::strerror(errno);
    }
    TempDir dir;
    Pnsd roomy(dir.path());
    roomy.set_fd_limit(2 * kMaxConnections);
    ASSERT_TRUE(roomy.start());
    ASSERT_EQ(roomy.ctl({"ns", "create", "dev"}).exit_code, 0);

    auto clients = connect_many(roomy.socket(), kMaxConnections);
    // Answered: pnsd has accepted all of them by now.
    ASSERT_EQ(clients.back().call(request("ns.ls"))["ok"], true);
    RawClient extra(roomy.socket());
    auto refused = extra.read_line();
    ASSERT_TRUE(refused);
    auto j = parse_json(*refused);
    EXPECT_EQ(j["ok"], false) << *refused;
    EXPECT_EQ(j["error"]["code"], 8) << *refused;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("too many clients"), std::string::npos);
    EXPECT_TRUE(extra.wait_closed());
    // The ones it holds are all served.
    for (std::size_t i = 0; i < kMaxConnections; i += 97)
        EXPECT_EQ(clients[i].call(request("ns.show", {{"name", "dev"}}))["ok"], true) << i;
}

// A client that pipelines a long burst of writes (each one fsynced) gets its answers, but
// others are served between its requests, not after all of them.
TEST_F(Concurrency, PipelinedBurstOfWritesDoesNotHoldUpOthers) {
    constexpr int kBurst = 100;
    // A large table makes every write of the burst cost milliseconds even where fsync is
    // free (tmpfs), so the burst outlasts any scheduling delay of this test.
    const std::string dst = make_dir(dir_.path() + "/dst");
    std::string base;
    for (int i = 0; i < 1000; ++i)
        base += "ro " + make_dir(dst + "/base/" + std::string(100, 'b') + std::to_string(i)) + "\n";
    ASSERT_EQ(pnsd().ctl({"apply", "--ns", "dev", "-"}, {.stdin_data = base}).exit_code, 0);
    const int start = 2;  // generation after the apply
    RawClient greedy(pnsd().socket());
    RawClient other(pnsd().socket());
    std::string wire;
    for (int i = 0; i < kBurst; ++i)
        wire +=
            request(
                "entry.add",
                {{"name", "dev"},
                 {"entry", {{"verb", "hide"}, {"dst", make_dir(dst + "/h" + std::to_string(i))}}}})
                .dump() +
            "\n";
    ASSERT_LT(wire.size(), 128u << 10);  // within pnsd's socket buffer: sent at once
    ASSERT_TRUE(greedy.send_all(wire));
    // Sent after the whole burst: served long before its end (the generation it sees says
    // how many of the burst's writes were done by then).
    auto list = other.call(request("ns.ls"));
    auto seen = list["result"]["namespaces"][0]["generation"].get<int>() - start;
    EXPECT_LT(seen, kBurst / 2) << "ns.ls waited for " << seen << " writes of another client";
    // The burst completes, in order.
    for (int i = 0; i < kBurst; ++i) {
        auto line = greedy.read_line(60s);
        ASSERT_TRUE(line) << "answer " << i;
        ASSERT_EQ(parse_json(*line)["result"]["generation"], start + i + 1) << *line;
    }
    EXPECT_EQ(generation_of(pnsd(), "dev"), static_cast<std::uint64_t>(start + kBurst));
}

// A client that sends requests and never reads: pnsd buffers a bounded amount of its answers,
// then stops reading its requests, and serves everybody else meanwhile.
TEST_F(Concurrency, ClientThatNeverReadsDoesNotBlockOthers) {
    RawClient hog(pnsd().socket());
    RawClient observer(pnsd().socket());
    // ns.export: answered from the table alone (ns.show also scans /proc for members, which
    // makes the thousands of requests this takes cost minutes under emulation).
    const std::string one = request("ns.export", {{"name", "dev"}}).dump() + "\n";
    std::string batch;
    for (int i = 0; i < 100; ++i) batch += one;

    // Send until the hog's socket is full and pnsd has stopped taking its requests: two
    // observer requests in a row with no request of the hog's served between them.
    std::size_t sent = 0;  // bytes
    bool throttled = false;
    std::uint64_t last =
        observer.call(request("status"))["result"]["requests"].get<std::uint64_t>();
    while (!throttled) {
        ASSERT_LT(sent, 16u << 20) << "pnsd keeps reading a client that never reads its answers";
        std::size_t offset = sent % batch.size();
        long n = hog.send_some(std::string_view(batch).substr(offset));
        ASSERT_GE(n, 0) << "pnsd closed the connection of a client that only sends";
        sent += static_cast<std::size_t>(n);
        if (n > 0) continue;
        auto now = observer.call(request("status"))["result"]["requests"].get<std::uint64_t>();
        throttled = now == last + 1;
        last = now;
    }
    const std::size_t complete = sent / one.size();
    // pnsd answered part of them and holds the rest unread: it is not buffering without end.
    EXPECT_GT(complete, 1000u);

    // Meanwhile everybody else is served promptly.
    auto took = many_list(64);
    EXPECT_LT(took, stretched(2s))
        << "64 clients took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
        << " ms";
    many_pnsctl_list(16);

    // Once the hog reads, it gets every answer, in order, and can finish its last request.
    std::string rest = one.substr(sent % one.size());
    if (rest.size() == one.size()) rest.clear();
    std::size_t expected = complete + (rest.empty() ? 0 : 1);
    std::size_t received = 0;
    auto deadline = Clock::now() + stretched(30s);
    while (received < expected) {
        ASSERT_LT(Clock::now(), deadline) << received << " of " << expected << " answers";
        pollfd pfd{hog.fd(), static_cast<short>(POLLIN | (rest.empty() ? 0 : POLLOUT)), 0};
        ASSERT_GT(::poll(&pfd, 1, static_cast<int>(stretched(10s).count())), 0);
        if (!rest.empty() && (pfd.revents & POLLOUT)) {
            long n = hog.send_some(rest);
            ASSERT_GE(n, 0);
            rest.erase(0, static_cast<std::size_t>(n));
        }
        if (pfd.revents & POLLIN) {
            ASSERT_TRUE(hog.pump()) << "closed after " << received << " answers";
            while (auto line = hog.take_line()) {
                ++received;
                ASSERT_NE(line->find(R"("ok":true)"), std::string::npos) << *line;
            }
        }
    }
    EXPECT_EQ(received, expected);
}

}  // namespace
}  // namespace pns::test
