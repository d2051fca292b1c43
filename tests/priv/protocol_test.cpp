// The wire protocol under abuse, over raw sockets: every request pnsd cannot use gets an error
// response with the right numeric code, the connection stays usable when it can, pnsd keeps
// serving everybody else, and pipelined requests are answered in order.
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The protocol's error codes (common/protocol.hpp), spelled out: they are the contract.
constexpr int kBadRequest = 1;
constexpr int kUnsupportedVersion = 2;
constexpr int kUnknownOp = 3;
constexpr int kInvalidArgument = 4;
constexpr int kNotFound = 5;
constexpr int kPermissionDenied = 7;

class Protocol : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_EQ(pnsd_->ctl({"ns", "create", "dev"}).exit_code, 0);
    }

    // pnsd is alive and answers a fresh client correctly.
    void expect_serving() {
        RawClient other(pnsd().socket());
        auto r = other.call(request("ns.show", {{"name", "dev"}}));
        EXPECT_EQ(r["ok"], true) << r;
        EXPECT_EQ(r["result"]["name"], "dev") << r;
    }
};

void expect_error(const json& response, int code, const std::string& what) {
    ASSERT_TRUE(response.is_object()) << what;
    EXPECT_EQ(response["version"], 1) << what << ": " << response;
    EXPECT_EQ(response["ok"], false) << what << ": " << response;
    ASSERT_TRUE(response["error"].is_object()) << what << ": " << response;
    EXPECT_EQ(response["error"]["code"], code) << what << ": " << response;
    EXPECT_TRUE(response["error"]["name"].is_string()) << what << ": " << response;
    EXPECT_FALSE(response["error"]["message"].get<std::string>().empty()) << what;
    EXPECT_FALSE(response.contains("result")) << what;
}

TEST_F(Protocol, MalformedRequestsGetErrorResponses) {
    const std::string deep_args = R"({"version":1,"op":"ns.ls","args":{"x":)" +
                                  std::string(100000, '[') + std::string(100000, ']') + "}}";
    const std::string deep_unclosed = std::string(1000000, '[');
    const std::string deep_objects = [] {
        std::string s;
        for (int i = 0; i < 50000; ++i) s += R"({"a":)";
        s += "1";
        for (int i = 0; i < 50000; ++i) s += "}";
        return s;
    }();
    const std::string long_op = R"({"version":1,"op":")" + std::string(1 << 20, 'x') + R"("})";
    struct Case {
        std::string line;
        int code;
        std::string what;
    };
    const std::vector<Case> cases = {
        {std::string("\x01\x02garbage\xff\xfe\x00zz", 14), kBadRequest, "binary garbage"},
        {"hello pnsd", kBadRequest, "not JSON"},
        {"", kBadRequest, "empty line"},
        {"   ", kBadRequest, "blank line"},
        {"[1,2,3]", kBadRequest, "JSON array"},
        {R"([{"version":1,"op":"ns.ls"}])", kBadRequest, "request inside an array"},
        {R"("ns.ls")", kBadRequest, "JSON string"},
        {"42", kBadRequest, "JSON number"},
        {"null", kBadRequest, "JSON null"},
        {R"({"version":1,"op":"ns.ls"})"
         "garbage",
         kBadRequest, "trailing garbage"},
        {R"({"version":1,"op":"ns.ls")", kBadRequest, "truncated JSON"},
        {R"({"op":"ns.ls"})", kBadRequest, "no version"},
        {R"({"version":"1","op":"ns.ls"})", kBadRequest, "version as a string"},
        {R"({"version":1.5,"op":"ns.ls"})", kBadRequest, "version not an integer"},
        {R"({"version":2,"op":"ns.ls"})", kUnsupportedVersion, "version 2"},
        {R"({"version":0,"op":"ns.ls"})", kUnsupportedVersion, "version 0"},
        {R"({"version":-1,"op":"ns.ls"})", kUnsupportedVersion, "version -1"},
        {R"({"version":99999999999999999999,"op":"ns.ls"})", kBadRequest, "version too big"},
        {R"({"version":1})", kBadRequest, "no op"},
        {R"({"version":1,"op":7})", kBadRequest, "op not a string"},
        {R"({"version":1,"op":"frobnicate"})", kUnknownOp, "unknown op"},
        {R"({"version":1,"op":"ns.frobnicate"})", kUnknownOp, "unknown ns op"},
        {R"({"version":1,"op":"entry.frobnicate"})", kUnknownOp, "unknown entry op"},
        {R"({"version":1,"op":""})", kUnknownOp, "empty op"},
        {long_op, kUnknownOp, "1 MiB op name"},
        {R"({"version":1,"op":"ns.ls","args":[]})", kBadRequest, "args an array"},
        {R"({"version":1,"op":"ns.ls","args":"x"})", kBadRequest, "args a string"},
        {R"({"version":1,"op":"ns.create","args":{}})", kBadRequest, "missing name"},
        {R"({"version":1,"op":"ns.create","args":{"name":5}})", kBadRequest, "name a number"},
        {R"({"version":1,"op":"ns.create","args":{"name":"x","locked":"yes"}})", kBadRequest,
         "locked a string"},
        {R"({"version":1,"op":"ns.create","args":{"name":"x","owner":[0]}})", kBadRequest,
         "owner an array"},
        {R"({"version":1,"op":"ns.create","args":{"name":"x","owner":99999999999}})",
         kInvalidArgument, "owner out of range"},
        {R"({"version":1,"op":"ns.create","args":{"name":"Bad"}})", kInvalidArgument, "bad name"},
        {R"({"version":1,"op":"ns.create","args":{"name":"x","table":"frob /a"}})",
         kInvalidArgument, "bad table"},
        {R"({"version":1,"op":"ns.apply","args":{"name":"dev","table":7}})", kBadRequest,
         "table a number"},
        {R"({"version":1,"op":"ns.apply","args":{"name":"dev","table":"","generation":"1"}})",
         kBadRequest, "generation a string"},
        {R"({"version":1,"op":"ns.apply","args":{"name":"dev","table":"","generation":-1}})",
         kBadRequest, "generation negative"},
        {R"({"version":1,"op":"ns.show","args":{"name":"nope"}})", kNotFound, "no such ns"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev"}})", kBadRequest, "no entry"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":[]}})", kBadRequest,
         "entry an array"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":{"verb":"bind","dst":"/a"}}})",
         kInvalidArgument, "bind without src"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":{"verb":"mount","dst":"/a"}}})",
         kInvalidArgument, "unknown verb"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":{"verb":"hide","dst":"/a/../b"}}})",
         kInvalidArgument, "dst not normalized"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":{"verb":"hide","dst":"/a\u0000b"}}})",
         kInvalidArgument, "NUL in a path"},
        {R"({"version":1,"op":"entry.add","args":{"name":"dev","entry":{"verb":"hide","dst":"/a","union":"sideways"}}})",
         kInvalidArgument, "bad union"},
        {R"({"version":1,"op":"entry.rm","args":{"name":"dev","dst":"relative"}})",
         kInvalidArgument, "relative dst"},
        {R"({"version":1,"op":"ns.ls","args":{"name":"\ud800"}})", kBadRequest, "lone surrogate"},
        {"{\"version\":1,\"op\":\"ns.\xff\xfe\"}", kBadRequest, "invalid UTF-8"},
        {deep_args, kBadRequest, "100000 nested arrays in args"},
        {deep_unclosed, kBadRequest, "1000000 unclosed arrays"},
        {deep_objects, kBadRequest, "50000 nested objects"},
    };
    RawClient shared(pnsd().socket());
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        // On a connection of its own...
        RawClient client(pnsd().socket());
        auto response = client.call_raw(c.line);
        expect_error(response, c.code, c.what);
        // ... which stays usable afterwards.
        auto next = client.call(request("ns.show", {{"name", "dev"}}));
        EXPECT_EQ(next["ok"], true) << next;
        // And on one connection shared by all the cases, in a row.
        expect_error(shared.call_raw(c.line), c.code, c.what);
    }
    auto last = shared.call(request("status"));
    EXPECT_EQ(last["ok"], true) << last;
    expect_serving();
    // None of it created anything or changed dev.
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), 1u) << list;
    EXPECT_EQ(generation_of(pnsd(), "dev"), 1u);
}

// Sends `line` over a raw connection from a child process running as `uid`, and returns the
// response line (empty if there was none).
std::string raw_call_as(uid_t uid, const std::string& socket, const std::string& line) {
    int fds[2];
    if (::pipe(fds) != 0) return "";
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
            ::setresuid(uid, uid, uid) != 0)
            ::_exit(1);
        RawClient client(socket);
        if (!client.ok() || !client.send_all(line + "\n")) ::_exit(2);
        auto response = client.read_line();
        if (!response) ::_exit(3);
        std::string out = *response;
        if (::write(fds[1], out.data(), out.size()) != static_cast<ssize_t>(out.size())) ::_exit(4);
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "raw client child: " << status;
    return out;
}

// Nothing in a request says who sends it: pnsd takes the caller from SO_PEERCRED, so fields
// claiming another identity change nothing.
TEST_F(Protocol, CallerComesFromCredentialsNotFromTheRequest) {
    const std::string x = make_dir(dir_.path() + "/dst/x"), y = make_dir(dir_.path() + "/dst/y");
    ASSERT_EQ(pnsd().ctl({"hide", "--ns", "dev", x}).exit_code, 0);
    for (const auto& args : {json{{"name", "dev"}, {"entry", {{"verb", "hide"}, {"dst", y}}}},
                             json{{"name", "dev"},
                                  {"entry", {{"verb", "hide"}, {"dst", y}}},
                                  {"uid", 0},
                                  {"caller", {{"uid", 0}, {"gid", 0}, {"pid", 1}}}}}) {
        auto line = raw_call_as(kOtherUid, pnsd().socket(), request("entry.add", args).dump());
        auto j = parse_json(line);
        expect_error(j, kPermissionDenied, args.dump());
    }
    auto status = parse_json(
        raw_call_as(kOtherUid, pnsd().socket(),
                    R"({"version":1,"op":"status","args":{"uid":0},"caller":{"uid":0}})"));
    EXPECT_EQ(status["result"]["caller"]["uid"], kOtherUid) << status;
    // The user's own namespace, by raw request, works.
    auto created = parse_json(
        raw_call_as(kOtherUid, pnsd().socket(), request("ns.create", {{"name", "mine"}}).dump()));
    EXPECT_EQ(created["result"]["owner"], kOtherUid) << created;
    EXPECT_EQ(export_of(pnsd(), "dev"), "hide " + x + "\n");
}

TEST_F(Protocol, OversizedRequestIsRefusedAndConnectionClosed) {
    RawClient big(pnsd().socket());
    RawClient bystander(pnsd().socket());
    const std::string chunk(1 << 20, 'a');
    std::string head = R"({"version":1,"op":"ns.apply","args":{"name":"dev","table":")";
    ASSERT_TRUE(big.send_all(head));
    std::size_t sent = head.size();
    std::optional<std::string> response;
    bool sending = true;
    // Send without end until pnsd answers; it must do so after 32 MiB.
    while (!response) {
        pollfd pfd{big.fd(), static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
        ASSERT_GT(::poll(&pfd, 1, 20000), 0) << "no answer after " << sent << " bytes";
        if (pfd.revents & POLLIN) {
            response = big.read_line(20s);
            ASSERT_TRUE(response) << "connection closed without an answer after " << sent;
            break;
        }
        if (sending && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            long n = big.send_some(chunk);
            if (n < 0)
                sending = false;  // pnsd closed its end; the answer is waiting
            else
                sent += static_cast<std::size_t>(n);
        }
        ASSERT_LT(sent, 64u << 20) << "pnsd took 64 MiB without a newline and said nothing";
        // Meanwhile everybody else is served.
        auto other = bystander.call(request("status"));
        ASSERT_EQ(other["ok"], true) << other;
    }
    EXPECT_GE(sent, 32u << 20);
    auto j = parse_json(*response);
    expect_error(j, kBadRequest, "oversized request");
    EXPECT_NE(j["error"]["message"].get<std::string>().find("larger than 32 MiB"),
              std::string::npos)
        << j;
    EXPECT_TRUE(big.wait_closed());
    expect_serving();
    EXPECT_EQ(generation_of(pnsd(), "dev"), 1u);
}

TEST_F(Protocol, LargeButValidRequestsAreAnswered) {
    RawClient client(pnsd().socket());
    const std::string h = make_dir(dir_.path() + "/dst/h");
    // A table over the 8 MiB text limit, in a request under the 32 MiB message limit.
    std::string table;
    while (table.size() <= (8u << 20)) table += "# " + std::string(200, 'x') + "\n";
    auto r = client.call(request("ns.apply", {{"name", "dev"}, {"table", table + "hide " + h}}));
    expect_error(r, kInvalidArgument, "table over 8 MiB");
    EXPECT_NE(r["error"]["message"].get<std::string>().find("larger than 8 MiB"), std::string::npos)
        << r["error"];
    // Just under it: answered, and what it says is what is stored.
    table.resize((8u << 20) - 1000);
    table.resize(table.rfind('\n') + 1);
    table += "hide " + h + "\n";
    r = client.call(request("ns.apply", {{"name", "dev"}, {"table", table}}));
    EXPECT_EQ(r["ok"], true) << r.dump().substr(0, 500);
    EXPECT_EQ(r["result"]["entries"], 1);
    r = client.call(request("ns.export", {{"name", "dev"}}));
    EXPECT_EQ(r["result"]["table"], "hide " + h + "\n");
    // A large answer: a table of many long entries, exported whole.
    std::string many;
    for (int i = 0; i < 300; ++i)
        many += "ro " +
                make_dir(dir_.path() + "/dst/" + std::string(200, 'l') + "/" + std::to_string(i)) +
                "\n";
    r = client.call(request("ns.apply", {{"name", "dev"}, {"table", many}}));
    EXPECT_EQ(r["ok"], true) << r.dump().substr(0, 500);
    r = client.call(request("ns.export", {{"name", "dev"}}));
    EXPECT_EQ(r["result"]["table"], many);
}

TEST_F(Protocol, PipelinedRequestsAreAnsweredInOrder) {
    RawClient client(pnsd().socket());
    std::string wire;
    auto add = [&](const json& j) { wire += j.dump() + "\n"; };
    const std::string a = make_dir(dir_.path() + "/dst/a");
    add(request("ns.create", {{"name", "p1"}}));
    add(request("entry.add", {{"name", "p1"}, {"entry", {{"verb", "hide"}, {"dst", a}}}}));
    wire += "this is not json\n";
    add(request("ns.show", {{"name", "p1"}}));
    add(request("frobnicate"));
    add(request("entry.add", {{"name", "p1"}, {"entry", {{"verb", "hide"}, {"dst", a}}}}));
    add(request("ns.export", {{"name", "p1"}}));
    wire += R"({"version":2,"op":"ns.ls"})"
            "\n";
    add(request("ns.ls"));
    add(request("ns.rm", {{"name", "p1"}}));
    add(request("ns.show", {{"name", "p1"}}));
    ASSERT_TRUE(client.send_all(wire));  // all in one write

    std::vector<json> responses;
    for (int i = 0; i < 11; ++i) {
        auto line = client.read_line();
        ASSERT_TRUE(line) << "response " << i;
        responses.push_back(parse_json(*line));
    }
    EXPECT_EQ(responses[0]["result"]["name"], "p1");
    EXPECT_EQ(responses[1]["result"]["generation"], 2);
    expect_error(responses[2], kBadRequest, "not json");
    EXPECT_EQ(responses[3]["result"]["entries"].size(), 1u);
    expect_error(responses[4], kUnknownOp, "frobnicate");
    expect_error(responses[5], 6, "duplicate entry");
    EXPECT_EQ(responses[6]["result"]["table"], "hide " + a + "\n");
    expect_error(responses[7], kUnsupportedVersion, "version 2");
    EXPECT_EQ(responses[8]["result"]["namespaces"].size(), 2u);
    EXPECT_EQ(responses[9]["result"]["name"], "p1");
    expect_error(responses[10], kNotFound, "removed");

    // A long pipeline, written in one go, answered in order.
    wire.clear();
    for (int i = 0; i < 10; ++i) add(request("ns.create", {{"name", "q" + std::to_string(i)}}));
    // Natively far more than the socket buffers hold, so pnsd answers while the client is
    // still writing (scaled: see harness.hpp).
    const int count = std::max(300, scaled(3000));
    for (int i = 0; i < count; ++i)
        add(request("ns.show", {{"name", "q" + std::to_string(i % 10)}}));
    ASSERT_TRUE(client.send_all(wire));
    for (int i = 0; i < 10; ++i) {
        auto line = client.read_line();
        ASSERT_TRUE(line);
        EXPECT_EQ(parse_json(*line)["result"]["name"], "q" + std::to_string(i));
    }
    for (int i = 0; i < count; ++i) {
        auto line = client.read_line();
        ASSERT_TRUE(line) << "response " << i;
        ASSERT_EQ(parse_json(*line)["result"]["name"], "q" + std::to_string(i % 10)) << i;
    }
}

TEST_F(Protocol, HalfClosedClientGetsItsAnswers) {
    RawClient client(pnsd().socket());
    std::string wire;
    for (int i = 0; i < 100; ++i) wire += request("ns.show", {{"name", "dev"}}).dump() + "\n";
    ASSERT_TRUE(client.send_all(wire));
    ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0);
    for (int i = 0; i < 100; ++i) {
        auto line = client.read_line();
        ASSERT_TRUE(line) << "response " << i;
        EXPECT_EQ(parse_json(*line)["ok"], true);
    }
    EXPECT_TRUE(client.wait_closed());
    expect_serving();
}

TEST_F(Protocol, RequestTrickledByteByByte) {
    RawClient client(pnsd().socket());
    std::string line = request("ns.show", {{"name", "dev"}}).dump() + "\n";
    for (char c : line) ASSERT_TRUE(client.send_all(std::string_view(&c, 1)));
    auto response = client.read_line();
    ASSERT_TRUE(response);
    EXPECT_EQ(parse_json(*response)["result"]["name"], "dev");
}

}  // namespace
}  // namespace pns::test
