#include "common/protocol.hpp"

#include "common/text.hpp"

namespace pns::protocol {

namespace {

// Requests are flat; anything nested deeper than this is not one of ours. The limit keeps a
// hostile client from making pnsd build huge nested values.
constexpr int kMaxDepth = 16;

Error bad_request(std::string message) {
    return Error{EPROTO, std::move(message)};
}

// Parses JSON without exceptions and with a depth limit; discarded on any error.
json parse_bounded(std::string_view text, bool& too_deep) {
    too_deep = false;
    json::parser_callback_t limit_depth = [&too_deep](int depth, json::parse_event_t, json&) {
        if (depth > kMaxDepth) too_deep = true;
        return !too_deep;
    };
    return json::parse(text.begin(), text.end(), limit_depth, /*allow_exceptions=*/false);
}

}  // namespace

std::string_view code_name(Code code) {
    switch (code) {
        case Code::kOk:
            return "ok";
        case Code::kBadRequest:
            return "bad-request";
        case Code::kUnsupportedVersion:
            return "unsupported-version";
        case Code::kUnknownOp:
            return "unknown-op";
        case Code::kInvalidArgument:
            return "invalid-argument";
        case Code::kNotFound:
            return "not-found";
        case Code::kAlreadyExists:
            return "already-exists";
        case Code::kPermissionDenied:
            return "permission-denied";
        case Code::kLimitExceeded:
            return "limit-exceeded";
        case Code::kConflict:
            return "conflict";
        case Code::kInternal:
            return "internal";
        case Code::kBusy:
            return "busy";
        case Code::kNoProcess:
            return "no-such-process";
    }
    return "unknown";
}

Code code_from_errno(int err) {
    switch (err) {
        case 0:
            return Code::kOk;
        case EPROTO:
            return Code::kBadRequest;
        case EPROTONOSUPPORT:
            return Code::kUnsupportedVersion;
        case EOPNOTSUPP:
            return Code::kUnknownOp;
        case EINVAL:
        case ENAMETOOLONG:
            return Code::kInvalidArgument;
        case ENOENT:
            return Code::kNotFound;
        case EEXIST:
            return Code::kAlreadyExists;
        case EPERM:
        case EACCES:
            return Code::kPermissionDenied;
        case EDQUOT:
        case E2BIG:
            return Code::kLimitExceeded;
        case ESTALE:
            return Code::kConflict;
        case EBUSY:
            return Code::kBusy;
        case ESRCH:
            return Code::kNoProcess;
        default:
            return Code::kInternal;
    }
}

int errno_from_code(Code code) {
    switch (code) {
        case Code::kOk:
            return 0;
        case Code::kBadRequest:
            return EPROTO;
        case Code::kUnsupportedVersion:
            return EPROTONOSUPPORT;
        case Code::kUnknownOp:
            return EOPNOTSUPP;
        case Code::kInvalidArgument:
            return EINVAL;
        case Code::kNotFound:
            return ENOENT;
        case Code::kAlreadyExists:
            return EEXIST;
        case Code::kPermissionDenied:
            return EACCES;
        case Code::kLimitExceeded:
            return EDQUOT;
        case Code::kConflict:
            return ESTALE;
        case Code::kInternal:
            return EIO;
        case Code::kBusy:
            return EBUSY;
        case Code::kNoProcess:
            return ESRCH;
    }
    return EIO;
}

Result<Request> decode_request(std::string_view line) {
    if (line.size() > kMaxMessageBytes) return bad_request("request is too large");
    bool too_deep = false;
    json j = parse_bounded(line, too_deep);
    if (too_deep) return bad_request("request is nested too deeply");
    if (j.is_discarded()) return bad_request("request is not valid JSON");
    if (!j.is_object()) return bad_request("request is not a JSON object");

    auto version = j.find("version");
    if (version == j.end()) return bad_request("request has no \"version\"");
    if (!version->is_number_integer()) return bad_request("\"version\" is not an integer");
    if (version->get<long long>() != kVersion)
        return Error{EPROTONOSUPPORT, "protocol version " + version->dump() +
                                          " is not supported (pnsd speaks " +
                                          std::to_string(kVersion) + ")"};

    auto op = j.find("op");
    if (op == j.end() || !op->is_string()) return bad_request("request has no \"op\" string");

    Request request;
    request.op = op->get<std::string>();
    if (auto args = j.find("args"); args != j.end()) {
        if (!args->is_object()) return bad_request("\"args\" is not an object");
        request.args = std::move(*args);
    }
    return request;
}

std::string encode_request(const Request& request) {
    json j = {{"version", kVersion}, {"op", request.op}, {"args", request.args}};
    return j.dump() + "\n";
}

std::string encode_success(const json& result) {
    json j = {{"version", kVersion}, {"ok", true}, {"result", result}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_failure(const Error& error) {
    Code code = code_from_errno(error.code);
    // An Error without an errno is a bug somewhere, but the answer must still be a failure.
    if (code == Code::kOk) code = Code::kInternal;
    json j = {{"version", kVersion},
              {"ok", false},
              {"error",
               {{"code", static_cast<int>(code)},
                {"name", code_name(code)},
                {"message", error.message}}}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Response> decode_response(std::string_view line) {
    bool too_deep = false;
    json j = parse_bounded(line, too_deep);
    if (j.is_discarded() || !j.is_object()) return bad_request("pnsd sent a malformed response");
    auto version = j.find("version");
    if (version == j.end() || !version->is_number_integer() ||
        version->get<long long>() != kVersion)
        return Error{EPROTONOSUPPORT, "pnsd answered in another protocol version"};
    auto ok = j.find("ok");
    if (ok == j.end() || !ok->is_boolean()) return bad_request("pnsd sent a malformed response");

    Response response;
    if (ok->get<bool>()) {
        if (auto result = j.find("result"); result != j.end()) response.result = std::move(*result);
        return response;
    }
    auto error = j.find("error");
    if (error == j.end() || !error->is_object()) return bad_request("pnsd sent a malformed error");
    auto code = error->find("code");
    auto message = error->find("message");
    if (code == error->end() || !code->is_number_integer() || message == error->end() ||
        !message->is_string())
        return bad_request("pnsd sent a malformed error");
    // Wide enough that no out-of-range number wraps onto a known code.
    long long value = code->get<long long>();
    response.code = value > 0 && value <= static_cast<int>(Code::kNoProcess)
                        ? static_cast<Code>(value)
                        : Code::kInternal;
    response.message = message->get<std::string>();
    return response;
}

json entry_to_json(const Entry& entry) {
    json j = {{"verb", to_string(entry.kind)}};
    if (entry.kind == EntryKind::kBind) {
        if (entry.mode != UnionMode::kReplace)
            j["union"] = entry.mode == UnionMode::kBefore ? "before" : "after";
        if (entry.create) j["create"] = true;
        j["src"] = entry.source;
    }
    j["dst"] = entry.target;
    return j;
}

Result<std::string> get_string(const json& args, std::string_view key) {
    auto it = args.find(key);
    if (it == args.end()) return bad_request("missing \"" + std::string(key) + "\"");
    if (!it->is_string()) return bad_request("\"" + std::string(key) + "\" is not a string");
    return it->get<std::string>();
}

Result<bool> get_bool(const json& args, std::string_view key, bool fallback) {
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return bad_request("\"" + std::string(key) + "\" is not a boolean");
    return it->get<bool>();
}

Result<Entry> entry_from_json(const json& j) {
    if (!j.is_object()) return bad_request("an entry is not a JSON object");
    auto verb = get_string(j, "verb");
    if (!verb) return Error(std::move(verb).error());

    Entry entry;
    auto kind = kind_of_verb(*verb);
    if (!kind)
        return Error::invalid("unknown verb " + quote(*verb) + " (expected " +
                              std::string(kVerbs) + ")");
    entry.kind = *kind;

    if (auto it = j.find("union"); it != j.end() && !it->is_null()) {
        if (!it->is_string()) return bad_request("\"union\" is not a string");
        auto mode = it->get<std::string>();
        if (mode == "before") {
            entry.mode = UnionMode::kBefore;
        } else if (mode == "after") {
            entry.mode = UnionMode::kAfter;
        } else {
            return Error::invalid("unknown union mode " + quote(mode) +
                                  " (expected before or after)");
        }
    }
    auto create = get_bool(j, "create", false);
    if (!create) return Error(std::move(create).error());
    entry.create = *create;

    if (auto it = j.find("src"); it != j.end() && !it->is_null()) {
        if (!it->is_string()) return bad_request("\"src\" is not a string");
        entry.source = it->get<std::string>();
    }
    auto target = get_string(j, "dst");
    if (!target) return Error(std::move(target).error());
    entry.target = std::move(*target);

    if (auto st = validate_entry(entry); !st) return Error(std::move(st).error());
    return entry;
}

}  // namespace pns::protocol
