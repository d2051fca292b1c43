// The pnsd wire protocol. A client connects to pnsd's Unix stream socket and sends one JSON
// object per line; pnsd answers each with one JSON object per line, in order.
//
//   request:  {"version": 1, "op": "ns.create", "args": {"name": "dev"}}
//   success:  {"version": 1, "ok": true, "result": {...}}
//   failure:  {"version": 1, "ok": false,
//              "error": {"code": 5, "name": "not-found", "message": "no namespace 'x'"}}
//
// Who is asking is never part of a request: pnsd takes it from SO_PEERCRED.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "common/table.hpp"

namespace pns::protocol {

using nlohmann::json;

inline constexpr int kVersion = 1;
// A request larger than this is refused and its connection closed: 8 MiB of table text
// escaped into JSON fits with room to spare.
inline constexpr std::size_t kMaxMessageBytes = 32u << 20;

// Numeric error codes of the protocol; stable across versions, never reused.
enum class Code : int {
    kOk = 0,
    kBadRequest = 1,          // not JSON, not an object, fields missing or of the wrong type
    kUnsupportedVersion = 2,  // "version" is not one pnsd speaks
    kUnknownOp = 3,           // "op" names no operation
    kInvalidArgument = 4,     // well-formed request, value refused (bad name, bad path, ...)
    kNotFound = 5,            // no such namespace or entry
    kAlreadyExists = 6,       // namespace or entry already there
    kPermissionDenied = 7,    // the caller may not do this
    kLimitExceeded = 8,       // a quota or size limit
    kConflict = 9,            // the namespace changed since the generation the client named
    kInternal = 10,           // pnsd could not do it (I/O error, ...); nothing was changed
    kBusy = 11,               // not now: members inside, traced by another, being joined
    kNoProcess = 12,          // no such process (or it exited meanwhile)
    // decode_response reads codes above the last one as kInternal: keep kNoProcess last or
    // move that bound.
};

std::string_view code_name(Code code);

// Errors inside pnsd carry errno values; this is the one place they become protocol codes.
Code code_from_errno(int err);
int errno_from_code(Code code);

struct Request {
    std::string op;
    json args = json::object();
};

// Parses one request line. Failures carry errno values that code_from_errno maps to
// kBadRequest (EPROTO), kUnsupportedVersion (EPROTONOSUPPORT).
Result<Request> decode_request(std::string_view line);
std::string encode_request(const Request& request);

// The response to a request: `result` on success, otherwise the error's code and message.
std::string encode_success(const json& result);
std::string encode_failure(const Error& error);

// A decoded response as a client sees it.
struct Response {
    Code code = Code::kOk;
    std::string message;
    json result;
    bool ok() const { return code == Code::kOk; }
};
Result<Response> decode_response(std::string_view line);

// Entries as JSON: {"verb": "bind", "union": "before", "create": true, "src": "/a", "dst": "/b"}
// ("union" is "before", "after" or absent; "create" and "src" only where they apply).
json entry_to_json(const Entry& entry);
Result<Entry> entry_from_json(const json& j);

// Typed access to request arguments, failing with EPROTO and a message naming the field.
Result<std::string> get_string(const json& args, std::string_view key);
Result<bool> get_bool(const json& args, std::string_view key, bool fallback);

}  // namespace pns::protocol
