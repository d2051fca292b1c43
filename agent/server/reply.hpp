// What a request's handler gives back: its answer now, or the promise that the answer comes
// later through Server::answer (a change on its lane, a join on the tracer's thread, an event
// stream). A type of its own, so that "later" is never confused with an answer that is empty.
#pragma once

#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace pns::agent {

class Reply {
  public:
    // Answered now (implicit, so that a handler returns its value or its error as it is).
    Reply(Result<nlohmann::json> answer) : answer_(std::move(answer)) {}  // NOLINT
    Reply(nlohmann::json value) : answer_(std::move(value)) {}            // NOLINT
    Reply(Error error) : answer_(std::move(error)) {}                     // NOLINT
    static Reply later() { return Reply(); }
    // The shape the namespaces' lanes return: nothing means later.
    static Reply from(std::optional<Result<nlohmann::json>> answer) {
        return answer ? Reply(std::move(*answer)) : later();
    }

    bool deferred() const { return !answer_.has_value(); }
    // The answer of a reply that is not deferred.
    Result<nlohmann::json>& answer() { return *answer_; }

  private:
    Reply() = default;
    std::optional<Result<nlohmann::json>> answer_;
};

}  // namespace pns::agent
