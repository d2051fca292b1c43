// pnsd's request table: every operation of the protocol (common/ops.hpp) with the handler that
// serves it, whether it changes state, and what runs after it succeeds. Serving a request is a
// lookup in it; the rooms behind the handlers (namespaces, join, policies) authorize and act.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/namespaces/namespace.hpp"
#include "agent/server/reply.hpp"
#include "agent/server/server.hpp"
#include "common/protocol.hpp"
#include "common/result.hpp"

namespace pns::agent {

// Whether an operation changes pnsd's state: changes are logged at info, reads at debug.
enum class Effect { kReads, kChanges };

struct Route {
    std::string_view op;
    Effect effect = Effect::kReads;
    std::function<Reply(const Caller&, const protocol::Request&, Server::Ticket)> handle;
    // Runs after an answer given at once was a success, and may add to it (answers given later
    // have their own completion in their room).
    std::function<void(const Caller&, const protocol::Request&, nlohmann::json&)> after;
};

class Requests {
  public:
    // Fails (a bug in pnsd, found at start) unless the routes serve every operation of
    // common/ops.hpp exactly once and nothing else.
    static Result<Requests> make(std::vector<Route> routes);

    // Decodes one request line, serves it, logs it, and encodes its answer; nothing when the
    // answer comes later.
    std::optional<std::string> serve(const Caller& caller, std::string_view line,
                                     Server::Ticket ticket) const;

    const Route* find(std::string_view op) const;

  private:
    explicit Requests(std::vector<Route> routes) : routes_(std::move(routes)) {}
    std::vector<Route> routes_;
};

// Which operations of common/ops.hpp `ops` misses, and which it has that are not there, each
// once: "" when it names exactly them. Pure, for Requests::make and the README's check.
std::string compare_with_protocol(const std::vector<std::string_view>& ops);

}  // namespace pns::agent
