// Crash safety of the stored tables: pnsd killed with SIGKILL in the middle of a burst of
// writes always restarts with every table either as it was or as it became, never torn, and
// never older than what it acknowledged. Corrupt and foreign files in the state directory are
// reported and skipped, never fatal.
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

constexpr int kNamespaces = 4;

std::string ns_name(int i) {
    return "crash" + std::to_string(i);
}

// Two tables per namespace. They share a long prefix, which a view realizes once and keeps
// (an edit only redoes what follows the common prefix), and end in different tails, so the
// generation alone says which one is due: a namespace created from table A is at generation
// 1, and every apply alternates. Long paths make each stored file tens of KiB, so a write
// that is not atomic has room to be caught half done.
class CrashTables {
  public:
    explicit CrashTables(std::string base) : base_(std::move(base)) {}

    void make_dirs(int namespaces) const {
        for (int ns = 0; ns < namespaces; ++ns) {
            for (int k = 0; k < kPrefix; ++k) make_dir(prefix_dir(ns, k));
            for (const char* tail : {"a", "b1", "b2"}) make_dir(tail_dir(ns, tail));
        }
    }

    std::string text(int ns, int variant) const {
        std::string out;
        for (int k = 0; k < kPrefix; ++k) out += "ro " + prefix_dir(ns, k) + "\n";
        if (variant == 0) return out + "hide " + tail_dir(ns, "a") + "\n";
        return out + "tmpfs " + tail_dir(ns, "b1") + "\nro " + tail_dir(ns, "b2") + "\n";
    }
    std::string for_generation(int ns, std::uint64_t generation) const {
        return text(ns, generation % 2 == 1 ? 0 : 1);
    }

  private:
    static constexpr int kPrefix = 60;
    std::string prefix_dir(int ns, int k) const {
        return base_ + "/" + std::string(200, 'p') + "/" + std::to_string(ns) + "/" +
               std::string(200, 'q') + "/" + std::string(100, 'r') + std::to_string(k);
    }
    std::string tail_dir(int ns, const char* tail) const {
        return base_ + "/tail/" + std::to_string(ns) + "/" + tail;
    }
    std::string base_;
};

class CrashSafety : public PrivTest {};

// After a restart: every namespace loaded, none skipped, no temporary file left, and each
// table is the one its generation says, at least as new as the last acknowledged write and no
// newer than the last one sent. Returns the generations found.
std::vector<std::uint64_t> check_tables(const Pnsd& pnsd, const CrashTables& tables, int count,
                                        const std::vector<std::uint64_t>& acknowledged,
                                        const std::vector<std::uint64_t>& sent) {
    std::string log = pnsd.log_since_start();
    EXPECT_EQ(log.find("skipping"), std::string::npos) << log;
    EXPECT_EQ(log.find("ignoring"), std::string::npos) << log;
    for (const auto& entry :
         std::filesystem::directory_iterator(pnsd.state_dir() + "/namespaces")) {
        EXPECT_FALSE(entry.path().filename().string().starts_with("."))
            << "left after loading: " << entry.path();
    }
    auto list = ctl_json(pnsd, {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), static_cast<std::size_t>(count)) << list;

    std::vector<std::uint64_t> generations(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        auto& generation = generations[static_cast<std::size_t>(i)];
        auto exported = ctl_json(pnsd, {"export", "--ns", ns_name(i)});
        generation = exported["generation"].get<std::uint64_t>();
        EXPECT_GE(generation, acknowledged[static_cast<std::size_t>(i)])
            << ns_name(i) << ": an acknowledged write was lost";
        EXPECT_LE(generation, sent[static_cast<std::size_t>(i)]) << ns_name(i);
        EXPECT_EQ(exported["table"].get<std::string>(), tables.for_generation(i, generation))
            << ns_name(i) << " at generation " << generation << " is torn or wrong";
    }
    return generations;
}

std::uint64_t random_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) | device();
}

// Kills pnsd at a random moment within the next few milliseconds: the crash must not always
// fall on the same step of pnsd's work after the event that triggered it. (This picks the
// moment of a crash; it waits for nothing.)
void kill_soon(Pnsd& pnsd, std::mt19937_64& rng) {
    auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng));
    auto until = std::chrono::steady_clock::now() + delay;
    while (std::chrono::steady_clock::now() < until) {
    }
    pnsd.kill9();
}

// One raw connection per namespace, each pipelining a stream of compare-and-swap applies;
// pnsd is killed at a random moment after a random number of acknowledgements, while it is
// busy with the requests that follow (or, some rounds, stopped with SIGTERM).
TEST_F(CrashSafety, KillDuringPipelinedApplies) {
    TempDir dir;
    CrashTables tables(dir.path() + "/fs");
    tables.make_dirs(kNamespaces);
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    for (int i = 0; i < kNamespaces; ++i) {
        auto r = pnsd.ctl({"ns", "create", ns_name(i), "--from", "-"},
                          {.stdin_data = tables.text(i, 0)});
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const auto seed = random_seed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    constexpr int kRequests = 12;  // per namespace and round
    std::vector<std::uint64_t> generations(kNamespaces, 1);

    // At least four rounds, so one of them is a graceful stop (scaled: see harness.hpp).
    for (int round = 0, rounds = std::max(4, scaled(20)); round < rounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        struct Stream {
            RawClient client;
            std::string wire;
            std::size_t sent = 0;
            std::uint64_t acknowledged = 0;
        };
        std::vector<Stream> streams;
        for (int i = 0; i < kNamespaces; ++i) {
            Stream s{RawClient(pnsd.socket()), "", 0, generations[static_cast<std::size_t>(i)]};
            ASSERT_TRUE(s.client.ok());
            for (int k = 0; k < kRequests; ++k) {
                std::uint64_t next =
                    generations[static_cast<std::size_t>(i)] + 1 + static_cast<std::uint64_t>(k);
                s.wire += request("ns.apply", {{"name", ns_name(i)},
                                               {"generation", next - 1},
                                               {"table", tables.for_generation(i, next)}})
                              .dump() +
                          "\n";
            }
            streams.push_back(std::move(s));
        }
        // Every fourth round stops pnsd with SIGTERM instead: it exits 0 mid-burst, and what
        // it acknowledged is stored just the same.
        const bool graceful = round % 4 == 3;
        const int total = kNamespaces * kRequests;
        const int kill_after = std::uniform_int_distribution<int>(1, total * 3 / 4)(rng);
        int acknowledged = 0;
        bool killed = false;
        while (!killed) {
            std::vector<pollfd> fds;
            for (auto& s : streams) {
                short events = POLLIN;
                if (s.sent < s.wire.size()) events |= POLLOUT;
                fds.push_back({s.client.fd(), events, 0});
            }
            int ready = ::poll(fds.data(), fds.size(), 20000);
            ASSERT_GT(ready, 0) << "pnsd stopped answering after " << acknowledged << " writes";
            for (std::size_t i = 0; i < streams.size() && !killed; ++i) {
                auto& s = streams[i];
                if (fds[i].revents & POLLOUT) {
                    long n = s.client.send_some(std::string_view(s.wire).substr(s.sent));
                    ASSERT_GE(n, 0) << "send failed";
                    s.sent += static_cast<std::size_t>(n);
                }
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ASSERT_TRUE(s.client.pump()) << "pnsd closed the connection\n" << pnsd.log();
                while (auto line = s.client.take_line()) {
                    auto response = parse_json(*line);
                    ASSERT_EQ(response["ok"], true) << *line;
                    ASSERT_EQ(response["result"]["generation"], s.acknowledged + 1) << *line;
                    ++s.acknowledged;
                    if (++acknowledged == kill_after) {
                        if (graceful)
                            EXPECT_EQ(pnsd.stop(), 0) << "SIGTERM in the middle of a burst";
                        else
                            kill_soon(pnsd, rng);
                        killed = true;
                        break;
                    }
                }
            }
        }
        std::vector<std::uint64_t> acked, sent;
        for (std::size_t i = 0; i < streams.size(); ++i) {
            acked.push_back(streams[i].acknowledged);
            auto complete = std::count(
                streams[i].wire.begin(),
                streams[i].wire.begin() + static_cast<std::ptrdiff_t>(streams[i].sent), '\n');
            sent.push_back(generations[i] + static_cast<std::uint64_t>(complete));
        }
        streams.clear();
        ASSERT_TRUE(pnsd.start());
        generations = check_tables(pnsd, tables, kNamespaces, acked, sent);
        if (HasFailure()) return;
    }
}

// Many pnsctl processes at once, each replacing its namespace's table again and again; pnsd is
// killed when a random number of them have succeeded.
TEST_F(CrashSafety, KillDuringConcurrentPnsctlApplies) {
    constexpr int kWriters = 8;
    constexpr int kMaxPerWriter = 12;
    TempDir dir;
    CrashTables tables(dir.path() + "/fs");
    tables.make_dirs(kWriters);
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    for (int i = 0; i < kWriters; ++i) {
        for (int variant = 0; variant < 2; ++variant)
            write_file(dir.path() + "/table-" + std::to_string(i) + "-" + std::to_string(variant),
                       tables.text(i, variant));
        auto r = pnsd.ctl({"ns", "create", ns_name(i), "--from",
                           dir.path() + "/table-" + std::to_string(i) + "-0"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const auto seed = random_seed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> generations(kWriters, 1);

    for (int round = 0, rounds = std::max(2, scaled(5)); round < rounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        const int kill_after =
            std::uniform_int_distribution<int>(kWriters, kWriters * kMaxPerWriter / 2)(rng);
        std::mt19937_64 kill_rng(rng());
        std::atomic<int> successes{0};
        std::atomic<bool> killing{false};
        std::mutex kill_mutex;
        std::vector<std::uint64_t> acked = generations, attempted = generations;
        std::vector<std::thread> writers;
        for (int t = 0; t < kWriters; ++t) {
            writers.emplace_back([&, t] {
                auto i = static_cast<std::size_t>(t);
                for (int k = 0; k < kMaxPerWriter && !killing; ++k) {
                    std::uint64_t next = acked[i] + 1;
                    attempted[i] = next;
                    std::string file = dir.path() + "/table-" + std::to_string(t) + "-" +
                                       (next % 2 == 1 ? "0" : "1");
                    auto r = pnsd.ctl({"apply", "--ns", ns_name(t), "--if-generation",
                                       std::to_string(next - 1), file, "--json"});
                    if (r.exit_code != 0) {
                        // Only the kill may make a write fail.
                        EXPECT_TRUE(killing) << r.err;
                        return;
                    }
                    auto result = parse_json(r.out);
                    EXPECT_EQ(result["generation"], next) << r.out;
                    acked[i] = next;
                    if (++successes == kill_after) {
                        std::lock_guard lock(kill_mutex);
                        killing = true;
                        kill_soon(pnsd, kill_rng);
                    }
                }
            });
        }
        for (auto& w : writers) w.join();
        if (!killing) pnsd.kill9();  // every writer finished first: a kill at rest
        ASSERT_TRUE(pnsd.start());
        generations = check_tables(pnsd, tables, kWriters, acked, attempted);
        if (HasFailure()) return;
    }
}

TEST_F(CrashSafety, CorruptAndForeignFilesAreSkipped) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    const std::string a = make_dir(dir.path() + "/src/a"), b = make_dir(dir.path() + "/dst/b");
    const std::string h = make_dir(dir.path() + "/dst/h"), c = make_dir(dir.path() + "/dst/c");
    ASSERT_EQ(pnsd.ctl({"ns", "create", "good"}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"bind", "--ns", "good", a, b}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"ns", "create", "good2", "--locked", "--owner", "4242"}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"hide", "--ns", "good2", h}).exit_code, 0);
    auto before = ctl_json(pnsd, {"ns", "ls"});
    ASSERT_EQ(pnsd.stop(), 0);

    const std::string ns_dir = pnsd.state_dir() + "/namespaces";
    const std::string good = read_file(ns_dir + "/good.json");
    ASSERT_FALSE(good.empty());
    json good_json = json::parse(good);
    auto variant = [&](auto change) {
        json j = good_json;
        change(j);
        return j.dump();
    };
    const std::vector<std::pair<std::string, std::string>> bad_files = {
        {"corrupt.json", "{ this is not json"},
        {"truncated.json", good.substr(0, good.size() / 2)},
        {"empty.json", ""},
        {"binary.json", std::string("\x00\xff\xfe\x01", 4)},
        {"array.json", "[1, 2, 3]"},
        {"foreign.json", R"({"format": "something-else", "version": 1})"},
        {"future.json", variant([](json& j) {
             j["name"] = "future";
             j["version"] = 99;
         })},
        {"badentry.json", variant([](json& j) {
             j["name"] = "badentry";
             j["entries"][0]["dst"] = "relative";
         })},
        {"dupentry.json", variant([](json& j) {
             j["name"] = "dupentry";
             j["entries"].push_back(j["entries"][0]);
         })},
        {"badowner.json", variant([](json& j) {
             j["name"] = "badowner";
             j["owner"] = -1;
         })},
        {"Bad_Name.json", variant([](json& j) { j["name"] = "Bad_Name"; })},
        {"mismatch.json", good},  // says it is "good"
    };
    for (const auto& [name, content] : bad_files) write_file(ns_dir + "/" + name, content);
    write_file(ns_dir + "/README", "notes about my namespaces\n");
    write_file(ns_dir + "/good.json~", good);  // an editor's backup
    std::filesystem::create_directory(ns_dir + "/dir.json");
    std::filesystem::create_symlink(ns_dir + "/good.json", ns_dir + "/link.json");
    write_file(ns_dir + "/.good.tmp", good.substr(0, 10));  // an interrupted write

    ASSERT_TRUE(pnsd.start());
    const std::string log = pnsd.log_since_start();
    std::vector<std::string> skipped;
    for (const auto& [name, content] : bad_files) skipped.push_back(name);
    for (const char* name : {"README", "good.json~", "dir.json", "link.json"})
        skipped.push_back(name);
    for (const auto& name : skipped) {
        auto at = log.find("'" + ns_dir + "/" + name + "'");
        ASSERT_NE(at, std::string::npos) << name << " not reported:\n" << log;
        auto line = log.substr(log.rfind('\n', at) + 1, log.find('\n', at) - log.rfind('\n', at));
        EXPECT_TRUE(line.find("skipping") != std::string::npos ||
                    line.find("ignoring") != std::string::npos)
            << line;
        EXPECT_NE(line.find("warning"), std::string::npos) << line;
    }
    // The temporary file is removed; everything else is left for a human to look at.
    EXPECT_FALSE(exists(ns_dir + "/.good.tmp"));
    for (const auto& name : skipped) EXPECT_TRUE(exists(ns_dir + "/" + name)) << name;

    // The good ones are served as before, and pnsd works normally.
    EXPECT_EQ(ctl_json(pnsd, {"ns", "ls"}), before);
    EXPECT_EQ(export_of(pnsd, "good"), "bind " + a + " " + b + "\n");
    EXPECT_EQ(export_of(pnsd, "good2"), "hide " + h + "\n");
    EXPECT_EQ(pnsd.ctl({"hide", "--ns", "good", c}).exit_code, 0);
    EXPECT_EQ(pnsd.ctl({"ns", "create", "fresh"}).exit_code, 0);
    EXPECT_EQ(ctl_json(pnsd, {"status"})["namespaces"], 3);
}

}  // namespace
}  // namespace pns::test
