// Authorization decisions, one function per kind of request, each from the caller's kernel
// credentials (SO_PEERCRED) and the namespace alone. Pure, so every rule is unit-tested.
#pragma once

#include <cstddef>

#include "agent/namespace.hpp"
#include "pns/result.hpp"

namespace pns::agent::auth {

// How many namespaces one ordinary user may own; root has no such limit.
inline constexpr std::size_t kMaxNamespacesPerUser = 256;

// Anyone may create a namespace for themselves; only root may create one for somebody else.
// `owned` is how many namespaces `owner` has now.
Status may_create(const Caller& caller, uid_t owner, std::size_t owned);

// The owner and root may edit (bind, hide, apply, ...) and delete a namespace.
Status may_edit(const Caller& caller, const Namespace& ns);

// Everybody may list namespaces; only the owner and root see their entries.
bool may_see_entries(const Caller& caller, const Namespace& ns);

// The primary group of `uid` from the user database (the uid itself when it has no entry):
// the group a satellite maps, and the one a lookup made on a user's behalf runs with.
gid_t primary_gid(uid_t uid);

// Export reveals the entries, so it follows may_see_entries, as an error.
Status may_read_table(const Caller& caller, const Namespace& ns);

}  // namespace pns::agent::auth
