#include "agent/server/requests.hpp"

#include <algorithm>
#include <cerrno>
#include <set>

#include <spdlog/spdlog.h>

#include "common/ops.hpp"
#include "common/text.hpp"

namespace pns::agent {

using nlohmann::json;

std::string compare_with_protocol(const std::vector<std::string_view>& ops) {
    std::set<std::string_view> seen;
    std::string missing, extra;
    auto add = [](std::string& list, std::string_view op) {
        list += list.empty() ? "" : ", ";
        list += op;
    };
    for (auto op : ops) {
        bool known = std::find(protocol::op::kAll.begin(), protocol::op::kAll.end(), op) !=
                     protocol::op::kAll.end();
        if (!seen.insert(op).second || !known) add(extra, op);
    }
    for (auto op : protocol::op::kAll)
        if (!seen.contains(op)) add(missing, op);
    std::string out;
    if (!missing.empty()) out += "missing: " + missing;
    if (!extra.empty()) out += std::string(out.empty() ? "" : "; ") + "not in the protocol or twice: " + extra;
    return out;
}

Result<Requests> Requests::make(std::vector<Route> routes) {
    std::vector<std::string_view> ops;
    for (const auto& route : routes) ops.push_back(route.op);
    if (auto problem = compare_with_protocol(ops); !problem.empty())
        return Error{EINVAL, "request table: " + problem};
    return Requests(std::move(routes));
}

const Route* Requests::find(std::string_view op) const {
    auto it = std::find_if(routes_.begin(), routes_.end(),
                           [&](const Route& route) { return route.op == op; });
    return it == routes_.end() ? nullptr : &*it;
}

std::optional<std::string> Requests::serve(const Caller& caller, std::string_view line,
                                           Server::Ticket ticket) const {
    auto request = protocol::decode_request(line);
    if (!request) {
        spdlog::debug("server: uid {} pid {}: {}", caller.uid, caller.pid,
                      request.error().message);
        return protocol::encode_failure(request.error());
    }
    const Route* route = find(request->op);
    if (!route)
        return protocol::encode_failure(
            Error{EOPNOTSUPP, "unknown operation " + quote(request->op)});
    Reply reply = route->handle(caller, *request, ticket);
    if (reply.deferred()) return std::nullopt;
    auto& result = reply.answer();
    if (!result) {
        // What pnsd could not do is an error of pnsd's; what a caller may not do is not.
        auto level = result.error().code == EIO || protocol::code_from_errno(result.error().code) ==
                                                       protocol::Code::kInternal
                         ? spdlog::level::err
                         : spdlog::level::debug;
        spdlog::log(level, "server: uid {} pid {} {}: {}", caller.uid, caller.pid,
                    quote(request->op), result.error().message);
        return protocol::encode_failure(result.error());
    }
    if (route->after) route->after(caller, *request, *result);
    const auto& args = request->args;
    spdlog::log(route->effect == Effect::kChanges ? spdlog::level::info : spdlog::level::debug,
                "server: uid {} pid {} {} {}: ok", caller.uid, caller.pid, quote(request->op),
                args.contains("name") && args["name"].is_string()
                    ? quote(args["name"].get<std::string>())
                    : "");
    return protocol::encode_success(*result);
}

}  // namespace pns::agent
