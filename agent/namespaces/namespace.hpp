// One namespace as pnsd keeps it: identity, owner, flags and its table.
#pragma once

#include <sys/types.h>

#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/table.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

// What a namespace is for good: 128 random bits drawn when it is created, never reused, so a
// namespace made later under the same name is never taken for it. What outlives a request and
// names a namespace (policies, a view's pins) holds this, never the name alone.
struct NamespaceId {
    std::uint64_t high = 0;
    std::uint64_t low = 0;

    bool empty() const { return high == 0 && low == 0; }
    std::string hex() const;  // 32 lowercase hex digits
    // 32 hex digits, not all zero; nullopt otherwise.
    static std::optional<NamespaceId> parse(std::string_view text);
    // From getrandom(2).
    static Result<NamespaceId> random();
    friend auto operator<=>(const NamespaceId&, const NamespaceId&) = default;
};

struct Namespace {
    std::string name;
    NamespaceId id;
    uid_t owner = 0;
    bool locked = false;  // members may not change or leave their view (enforced by the guard)
    std::uint64_t generation = 0;  // bumped by every change of the table; starts at 1
    Table table;
};

// Who sent a request, as the kernel reports it (SO_PEERCRED), never as the client claims.
struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    // A pidfd of the process that connected, taken when the connection was accepted
    // (SO_PEERPIDFD): while it is alive, `pid` names that process and no other. Shared by the
    // connection's requests; null when the process was gone before pnsd accepted it.
    std::shared_ptr<const UniqueFd> pidfd;

    bool is_root() const { return uid == 0; }
    // Whether the process that connected still runs (or is a zombie not yet reaped), so that
    // `pid` and what was read under /proc/pid are still its own.
    bool alive() const;
};

}  // namespace pns::agent
