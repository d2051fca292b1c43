// The wire protocol: requests, responses, error codes and entries as JSON.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/protocol.hpp"
#include "test_util.hpp"

namespace pns::protocol {
namespace {

using test::Contains;
using test::FailsWith;
using test::Succeeds;

constexpr Code kAllCodes[] = {
    Code::kOk,
    Code::kBadRequest,
    Code::kUnsupportedVersion,
    Code::kUnknownOp,
    Code::kInvalidArgument,
    Code::kNotFound,
    Code::kAlreadyExists,
    Code::kPermissionDenied,
    Code::kLimitExceeded,
    Code::kConflict,
    Code::kInternal,
    Code::kBusy,
    Code::kNoProcess,
};

// ---------------------------------------------------------------- decode_request

TEST(DecodeRequest, Valid) {
    auto r = decode_request(R"({"version": 1, "op": "ns.create", "args": {"name": "dev"}})");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->op, "ns.create");
    EXPECT_EQ(r->args, json({{"name", "dev"}}));

    r = decode_request("  {\"op\":\"ns.list\",\"version\":1}\n");  // any order, no args
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->op, "ns.list");
    EXPECT_TRUE(r->args.is_object());
    EXPECT_TRUE(r->args.empty());

    r = decode_request(R"({"version":1,"op":"x","args":{},"extra":[1,2,3]})");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->op, "x");

    // Moderate nesting inside args is fine.
    r = decode_request(R"({"version":1,"op":"x","args":{"a":{"b":[{"c":[1]}]}}})");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->args["a"]["b"][0]["c"][0], 1);
}

TEST(DecodeRequest, RoundTripsEncodeRequest) {
    Request request{
        "ns.apply",
        {{"name", "dev"}, {"text", "hide /a\n# \"q\" \\ \xc3\xa9"}, {"force", true}, {"n", 7}}};
    std::string line = encode_request(request);
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "one request, one line";
    auto r = decode_request(line);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->op, request.op);
    EXPECT_EQ(r->args, request.args);
    EXPECT_EQ(json::parse(line)["version"], kVersion);
}

TEST(DecodeRequest, NotJson) {
    for (std::string line : {"", " ", "\n", "{", "}", "nope", "{\"version\":1,", "{'version':1}",
                             "{\"version\":1,\"op\":\"x\"} trailing",
                             "{\"version\":1,\"op\":\"x\"}{\"version\":1,\"op\":\"y\"}",
                             "{\"version\":1,\"op\":\"x\",}", "\xff"}) {
        auto r = decode_request(line);
        EXPECT_TRUE(FailsWith(r, EPROTO, "not valid JSON")) << line;
        if (!r) {
            EXPECT_EQ(code_from_errno(r.error().code), Code::kBadRequest);
        }
    }
    EXPECT_TRUE(
        FailsWith(decode_request(std::string("{\"version\":1,\"op\":\"a\0\"}", 23)), EPROTO));
}

TEST(DecodeRequest, NotAnObject) {
    for (std::string line :
         {"[]", "[1]", "1", "\"s\"", "null", "true", "[{\"version\":1,\"op\":\"x\"}]"}) {
        EXPECT_TRUE(FailsWith(decode_request(line), EPROTO, "not a JSON object")) << line;
    }
}

TEST(DecodeRequest, Version) {
    EXPECT_TRUE(FailsWith(decode_request(R"({"op":"x"})"), EPROTO, "no \"version\""));
    for (std::string v : {"\"1\"", "1.0", "1.5", "true", "null", "[1]", "{}", "1e0"}) {
        EXPECT_TRUE(FailsWith(decode_request(R"({"op":"x","version":)" + v + "}"), EPROTO,
                              "not an integer"))
            << v;
    }
    for (std::string v :
         {"0", "2", "-1", "99", "4294967297", "18446744073709551615", "-9223372036854775808"}) {
        auto r = decode_request(R"({"op":"x","version":)" + v + "}");
        EXPECT_TRUE(FailsWith(r, EPROTONOSUPPORT, "not supported")) << v;
        if (!r) {
            EXPECT_EQ(code_from_errno(r.error().code), Code::kUnsupportedVersion);
        }
    }
    // The version is checked before anything else is looked at.
    EXPECT_TRUE(FailsWith(decode_request(R"({"version":2})"), EPROTONOSUPPORT));
    EXPECT_TRUE(FailsWith(decode_request(R"({"version":2,"op":1,"args":[]})"), EPROTONOSUPPORT));
}

TEST(DecodeRequest, Op) {
    EXPECT_TRUE(FailsWith(decode_request(R"({"version":1})"), EPROTO, "no \"op\""));
    for (std::string op : {"1", "null", "[]", "{}", "true"}) {
        EXPECT_TRUE(FailsWith(decode_request(R"({"version":1,"op":)" + op + "}"), EPROTO, "\"op\""))
            << op;
    }
}

TEST(DecodeRequest, Args) {
    for (std::string args : {"[]", "\"x\"", "null", "1", "true", "[{}]"}) {
        EXPECT_TRUE(FailsWith(decode_request(R"({"version":1,"op":"x","args":)" + args + "}"),
                              EPROTO, "\"args\" is not an object"))
            << args;
    }
}

TEST(DecodeRequest, DeeplyNested) {
    auto nested = [](int depth) {
        return R"({"version":1,"op":"x","args":{"a":)" + std::string(depth, '[') +
               std::string(depth, ']') + "}}";
    };
    EXPECT_TRUE(Succeeds(decode_request(nested(4))));
    EXPECT_TRUE(FailsWith(decode_request(nested(64)), EPROTO, "nested too deeply"));
    EXPECT_TRUE(FailsWith(decode_request(nested(100000)), EPROTO, "nested too deeply"));
    // Deep nesting elsewhere than in args too.
    std::string deep =
        R"({"version":1,"op":"x","junk":)" + std::string(1000, '[') + std::string(1000, ']') + "}";
    EXPECT_TRUE(FailsWith(decode_request(deep), EPROTO, "nested too deeply"));
    std::string objects = R"({"version":1,"op":"x","args":)";
    for (int i = 0; i < 50; ++i) objects += "{\"k\":";
    objects += "1";
    objects += std::string(50, '}') + "}";
    EXPECT_TRUE(FailsWith(decode_request(objects), EPROTO, "nested too deeply"));
}

TEST(DecodeRequest, TooLarge) {
    std::string line = R"({"version":1,"op":"x"})";
    line.resize(kMaxMessageBytes + 1, ' ');
    EXPECT_TRUE(FailsWith(decode_request(line), EPROTO, "too large"));
}

// ---------------------------------------------------------------- errors and codes

TEST(Codes, NamesAreDistinctAndStable) {
    std::set<std::string_view> names;
    for (Code c : kAllCodes) {
        EXPECT_NE(code_name(c), "unknown");
        EXPECT_TRUE(names.insert(code_name(c)).second) << code_name(c);
    }
    EXPECT_EQ(code_name(Code::kOk), "ok");
    EXPECT_EQ(code_name(Code::kBadRequest), "bad-request");
    EXPECT_EQ(code_name(Code::kUnsupportedVersion), "unsupported-version");
    EXPECT_EQ(code_name(Code::kNotFound), "not-found");
    EXPECT_EQ(code_name(Code::kInternal), "internal");
    // The numbers are part of the protocol.
    EXPECT_EQ(static_cast<int>(Code::kBadRequest), 1);
    EXPECT_EQ(static_cast<int>(Code::kPermissionDenied), 7);
    EXPECT_EQ(static_cast<int>(Code::kInternal), 10);
}

TEST(Codes, ErrnoRoundTrip) {
    std::set<int> errnos;
    for (Code c : kAllCodes) {
        int err = errno_from_code(c);
        EXPECT_EQ(code_from_errno(err), c) << code_name(c);
        EXPECT_TRUE(errnos.insert(err).second) << code_name(c) << " shares errno " << err;
        EXPECT_EQ(err == 0, c == Code::kOk) << code_name(c);
    }
}

TEST(Codes, ErrnoMapping) {
    EXPECT_EQ(code_from_errno(0), Code::kOk);
    EXPECT_EQ(code_from_errno(EPROTO), Code::kBadRequest);
    EXPECT_EQ(code_from_errno(EPROTONOSUPPORT), Code::kUnsupportedVersion);
    EXPECT_EQ(code_from_errno(EOPNOTSUPP), Code::kUnknownOp);
    EXPECT_EQ(code_from_errno(EINVAL), Code::kInvalidArgument);
    EXPECT_EQ(code_from_errno(ENAMETOOLONG), Code::kInvalidArgument);
    EXPECT_EQ(code_from_errno(ENOENT), Code::kNotFound);
    EXPECT_EQ(code_from_errno(EEXIST), Code::kAlreadyExists);
    EXPECT_EQ(code_from_errno(EPERM), Code::kPermissionDenied);
    EXPECT_EQ(code_from_errno(EACCES), Code::kPermissionDenied);
    EXPECT_EQ(code_from_errno(EDQUOT), Code::kLimitExceeded);
    EXPECT_EQ(code_from_errno(E2BIG), Code::kLimitExceeded);
    EXPECT_EQ(code_from_errno(ESTALE), Code::kConflict);
    EXPECT_EQ(code_from_errno(EIO), Code::kInternal);
    EXPECT_EQ(code_from_errno(ENOMEM), Code::kInternal);
    EXPECT_EQ(code_from_errno(EBUSY), Code::kBusy);
    EXPECT_EQ(code_from_errno(ESRCH), Code::kNoProcess);
    EXPECT_EQ(code_from_errno(ETIMEDOUT), Code::kInternal);
    EXPECT_EQ(code_from_errno(-1), Code::kInternal);
    EXPECT_EQ(code_from_errno(123456), Code::kInternal);
}

// ---------------------------------------------------------------- responses

TEST(Response, FailureRoundTripsEveryCode) {
    for (Code c : kAllCodes) {
        if (c == Code::kOk) continue;
        std::string message = "no namespace 'x' (" + std::string(code_name(c)) + ")";
        std::string line = encode_failure(Error{errno_from_code(c), message});
        EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
        json j = json::parse(line);
        EXPECT_EQ(j["version"], kVersion);
        EXPECT_EQ(j["ok"], false);
        EXPECT_EQ(j["error"]["code"], static_cast<int>(c));
        EXPECT_EQ(j["error"]["name"], code_name(c));
        auto r = decode_response(line);
        ASSERT_TRUE(Succeeds(r)) << line;
        EXPECT_EQ(r->code, c) << line;
        EXPECT_FALSE(r->ok());
        EXPECT_EQ(r->message, message);
    }
}

TEST(Response, FailureMessagesSurviveAnyBytes) {
    std::string message = "line1\nline2 \"quoted\" back\\slash \t caf\xc3\xa9 \x01";
    std::string line = encode_failure(Error{EINVAL, message});
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    auto r = decode_response(line);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->code, Code::kInvalidArgument);
    EXPECT_EQ(r->message, message);

    // Invalid UTF-8 (a path quoted in a message) must not make encoding throw.
    std::string bad = "path '/\xff\xfe' is not valid UTF-8";
    std::string bad_line;
    ASSERT_NO_THROW(bad_line = encode_failure(Error{EINVAL, bad}));
    r = decode_response(bad_line);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->code, Code::kInvalidArgument);
    EXPECT_TRUE(Contains(r->message, "is not valid UTF-8"));
}

TEST(Response, FailureFromUnmappedErrnoIsInternal) {
    auto r = decode_response(encode_failure(Error::from_errno(ENOMEM, "load")));
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->code, Code::kInternal);
    EXPECT_TRUE(Contains(r->message, "load: "));
}

TEST(Response, FailureWithoutErrnoIsStillAFailure) {
    // Error::code should never be 0, but if it is, the answer must not claim success.
    std::string line = encode_failure(Error{0, "oops"});
    json j = json::parse(line);
    EXPECT_EQ(j["ok"], false);
    EXPECT_NE(j["error"]["code"], 0);
    EXPECT_NE(j["error"]["name"], "ok");
    auto r = decode_response(line);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_FALSE(r->ok());
    EXPECT_EQ(r->code, Code::kInternal);
    EXPECT_EQ(r->message, "oops");
}

TEST(Response, SuccessRoundTrip) {
    json result = {{"namespaces", json::array({{{"name", "dev"}, {"owner", 1000}}})},
                   {"text", "hide /a\n"}};
    std::string line = encode_success(result);
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    auto r = decode_response(line);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_TRUE(r->ok());
    EXPECT_EQ(r->code, Code::kOk);
    EXPECT_EQ(r->result, result);

    r = decode_response(R"({"version":1,"ok":true})");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_TRUE(r->ok());
    EXPECT_TRUE(r->result.is_null());

    ASSERT_NO_THROW(line = encode_success(json{{"path", "/\xff"}}));
    EXPECT_TRUE(Succeeds(decode_response(line)));
}

TEST(Response, Malformed) {
    for (std::string line : {"", "x", "[]", "1", R"({"version":1})", R"({"version":1,"ok":1})",
                             R"({"version":1,"ok":"true"})", R"({"version":1,"ok":false})",
                             R"({"version":1,"ok":false,"error":"bad"})",
                             R"({"version":1,"ok":false,"error":{"message":"m"}})",
                             R"({"version":1,"ok":false,"error":{"code":5}})",
                             R"({"version":1,"ok":false,"error":{"code":"5","message":"m"}})",
                             R"({"version":1,"ok":false,"error":{"code":5,"message":5}})",
                             R"({"version":1,"ok":false,"error":{"code":5.5,"message":"m"}})"}) {
        EXPECT_TRUE(FailsWith(decode_response(line), EPROTO, "malformed")) << line;
    }
    for (std::string line : {R"({"ok":true})", R"({"version":2,"ok":true})",
                             R"({"version":"1","ok":true})", R"({"version":0,"ok":false})"}) {
        EXPECT_TRUE(FailsWith(decode_response(line), EPROTONOSUPPORT)) << line;
    }
}

TEST(Response, UnknownCodesAreInternal) {
    for (std::string code :
         {"0", "-1", "13", "99", "2147483647", "4294967307", "4294967296", "4294967297",
          "4294967303", "9223372036854775807", "18446744073709551615", "-4294967295"}) {
        auto r = decode_response(R"({"version":1,"ok":false,"error":{"code":)" + code +
                                 R"(,"message":"m"}})");
        ASSERT_TRUE(Succeeds(r)) << code;
        EXPECT_EQ(r->code, Code::kInternal) << code;
        EXPECT_FALSE(r->ok()) << code;
        EXPECT_EQ(r->message, "m");
    }
    auto r = decode_response(R"({"version":1,"ok":false,"error":{"code":9,"message":"m"}})");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(r->code, Code::kConflict);
}

// ---------------------------------------------------------------- entries

Entry make(EntryKind kind, std::string dst, std::string src = {},
           UnionMode mode = UnionMode::kReplace, bool create = false) {
    return Entry{kind, mode, create, std::move(src), std::move(dst)};
}

TEST(EntryJson, ToJson) {
    EXPECT_EQ(entry_to_json(make(EntryKind::kBind, "/b", "/a")),
              json::parse(R"({"verb":"bind","src":"/a","dst":"/b"})"));
    EXPECT_EQ(entry_to_json(make(EntryKind::kBind, "/b", "/a", UnionMode::kBefore, true)),
              json::parse(R"({"verb":"bind","union":"before","create":true,"src":"/a",
                              "dst":"/b"})"));
    EXPECT_EQ(entry_to_json(make(EntryKind::kBind, "/b", "/a", UnionMode::kAfter)),
              json::parse(R"({"verb":"bind","union":"after","src":"/a","dst":"/b"})"));
    EXPECT_EQ(entry_to_json(make(EntryKind::kHide, "/d")),
              json::parse(R"({"verb":"hide","dst":"/d"})"));
    EXPECT_EQ(entry_to_json(make(EntryKind::kReadOnly, "/")),
              json::parse(R"({"verb":"ro","dst":"/"})"));
    EXPECT_EQ(entry_to_json(make(EntryKind::kTmpfs, "/t")),
              json::parse(R"({"verb":"tmpfs","dst":"/t"})"));
}

TEST(EntryJson, RoundTripsEveryForm) {
    std::vector<Entry> entries;
    for (std::string dst : {"/", "/d", "/with space/\"q\"\\", "/caf\xc3\xa9"}) {
        for (auto mode : {UnionMode::kReplace, UnionMode::kBefore, UnionMode::kAfter}) {
            for (bool create : {false, true}) {
                Entry e = make(EntryKind::kBind, dst, "/s", mode, create);
                if (validate_entry(e)) entries.push_back(e);
            }
        }
        for (auto kind : {EntryKind::kHide, EntryKind::kReadOnly, EntryKind::kTmpfs}) {
            Entry e = make(kind, dst);
            if (validate_entry(e)) entries.push_back(e);
        }
    }
    ASSERT_EQ(entries.size(), 4u * 5 + 4 * 3 - 2);
    for (const auto& e : entries) {
        json j = entry_to_json(e);
        auto back = entry_from_json(j);
        ASSERT_TRUE(Succeeds(back)) << j.dump();
        EXPECT_EQ(*back, e) << j.dump();
        // Through text as well, as the store and the wire carry it.
        auto reparsed = entry_from_json(json::parse(j.dump()));
        ASSERT_TRUE(Succeeds(reparsed));
        EXPECT_EQ(*reparsed, e);
    }
}

TEST(EntryJson, NullOptionalFieldsAreAbsent) {
    auto e = entry_from_json(
        json::parse(R"({"verb":"hide","dst":"/d","union":null,"src":null,"create":null})"));
    ASSERT_TRUE(Succeeds(e));
    EXPECT_EQ(*e, make(EntryKind::kHide, "/d"));
    e = entry_from_json(json::parse(R"({"verb":"bind","src":"/s","dst":"/d","create":false})"));
    ASSERT_TRUE(Succeeds(e));
    EXPECT_EQ(*e, make(EntryKind::kBind, "/d", "/s"));
}

TEST(EntryJson, Rejections) {
    struct Case {
        const char* json;
        int code;
        const char* needle;
    };
    for (const auto& c : std::initializer_list<Case>{
             {R"([])", EPROTO, "not a JSON object"},
             {R"("hide /a")", EPROTO, "not a JSON object"},
             {R"(null)", EPROTO, "not a JSON object"},
             {R"({"dst":"/d"})", EPROTO, "missing \"verb\""},
             {R"({"verb":1,"dst":"/d"})", EPROTO, "\"verb\" is not a string"},
             {R"({"verb":"mount","dst":"/d"})", EINVAL, "unknown verb 'mount'"},
             {R"({"verb":"BIND","src":"/s","dst":"/d"})", EINVAL, "unknown verb"},
             {R"({"verb":"bind","union":"sideways","src":"/s","dst":"/d"})", EINVAL,
              "unknown union mode 'sideways'"},
             {R"({"verb":"bind","union":"replace","src":"/s","dst":"/d"})", EINVAL,
              "unknown union mode"},
             {R"({"verb":"bind","union":1,"src":"/s","dst":"/d"})", EPROTO, "\"union\""},
             {R"({"verb":"bind","union":true,"src":"/s","dst":"/d"})", EPROTO, "\"union\""},
             {R"({"verb":"bind","create":"yes","union":"after","src":"/s","dst":"/d"})", EPROTO,
              "\"create\" is not a boolean"},
             {R"({"verb":"bind","create":1,"union":"after","src":"/s","dst":"/d"})", EPROTO,
              "\"create\""},
             {R"({"verb":"bind","src":1,"dst":"/d"})", EPROTO, "\"src\" is not a string"},
             {R"({"verb":"bind","src":["/s"],"dst":"/d"})", EPROTO, "\"src\""},
             {R"({"verb":"bind","src":"/s"})", EPROTO, "missing \"dst\""},
             {R"({"verb":"bind","src":"/s","dst":null})", EPROTO, "\"dst\" is not a string"},
             {R"({"verb":"hide","dst":7})", EPROTO, "\"dst\""},
             {R"({"verb":"bind","dst":"/d"})", EINVAL, "needs a source"},
             {R"({"verb":"bind","src":"","dst":"/d"})", EINVAL, "needs a source"},
             {R"({"verb":"bind","src":"/s","dst":"/d","create":true})", EINVAL, "needs -a or -b"},
             {R"({"verb":"bind","src":"s","dst":"/d"})", EINVAL, "not absolute"},
             {R"({"verb":"bind","src":"/s/","dst":"/d"})", EINVAL, "not normalized"},
             {R"({"verb":"bind","src":"/s","dst":"/d//e"})", EINVAL, "not normalized"},
             {R"({"verb":"bind","src":"/s/./t","dst":"/d"})", EINVAL, "not normalized"},
             {R"({"verb":"hide","dst":"/a/../b"})", EINVAL, "not normalized"},
             {R"({"verb":"hide","dst":"/a\u0000b"})", EINVAL, "NUL"},
             {R"({"verb":"hide","dst":"/a\nb"})", EINVAL, "control character"},
             {R"({"verb":"hide","dst":""})", EINVAL, "empty"},
             {R"({"verb":"hide","dst":"/"})", EINVAL, "hide of '/'"},
             {R"({"verb":"tmpfs","dst":"/"})", EINVAL, "tmpfs of '/'"},
             {R"({"verb":"hide","src":"/s","dst":"/d"})", EINVAL, "hide takes no source"},
             {R"({"verb":"ro","union":"after","dst":"/d"})", EINVAL, "takes no -a, -b or -c"},
             {R"({"verb":"tmpfs","create":true,"dst":"/d"})", EINVAL, "takes no -a, -b or -c"},
         }) {
        EXPECT_TRUE(FailsWith(entry_from_json(json::parse(c.json)), c.code, c.needle)) << c.json;
    }
}

// ---------------------------------------------------------------- argument access

TEST(Args, GetStringAndBool) {
    json args = {{"s", "v"}, {"n", 1}, {"b", true}, {"z", nullptr}};
    auto s = get_string(args, "s");
    ASSERT_TRUE(Succeeds(s));
    EXPECT_EQ(*s, "v");
    EXPECT_TRUE(FailsWith(get_string(args, "n"), EPROTO, "\"n\" is not a string"));
    EXPECT_TRUE(FailsWith(get_string(args, "missing"), EPROTO, "missing \"missing\""));
    EXPECT_TRUE(FailsWith(get_string(args, "z"), EPROTO, "\"z\" is not a string"));

    auto b = get_bool(args, "b", false);
    ASSERT_TRUE(Succeeds(b));
    EXPECT_TRUE(*b);
    b = get_bool(args, "missing", true);
    ASSERT_TRUE(Succeeds(b));
    EXPECT_TRUE(*b);
    b = get_bool(args, "z", false);
    ASSERT_TRUE(Succeeds(b));
    EXPECT_FALSE(*b);
    EXPECT_TRUE(FailsWith(get_bool(args, "s", false), EPROTO, "\"s\" is not a boolean"));
    EXPECT_TRUE(FailsWith(get_bool(args, "n", false), EPROTO, "\"n\" is not a boolean"));
}

}  // namespace
}  // namespace pns::protocol
