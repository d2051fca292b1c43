// One namespace as pnsd keeps it: identity, owner, flags and its table.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "pns/table.hpp"

namespace pns::agent {

struct Namespace {
    std::string name;
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
    bool is_root() const { return uid == 0; }
};

}  // namespace pns::agent
