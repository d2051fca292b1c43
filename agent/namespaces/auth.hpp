// Authorization decisions, one function per kind of request, each from the caller's kernel
// credentials (SO_PEERCRED) and the namespace alone. Pure, so every rule is unit-tested.
#pragma once

#include <array>
#include <cstddef>

#include "agent/namespaces/namespace.hpp"
#include "common/result.hpp"

namespace pns::agent::auth {

// How many namespaces one ordinary user may own; root has no such limit.
inline constexpr std::size_t kMaxNamespacesPerUser = 256;

// What one ordinary user's namespaces may hold together (DESIGN.md, decision 8: per-user
// bounds on every shared resource); pnsd's --user-* options change them. Root's changes are
// not bounded by them.
struct Quotas {
    // Entries: one full namespace's worth (kMaxEntries), however it is spread.
    std::size_t entries = 65536;
    // tmpfs entries: each a tmpfs of mnt::kTmpfsBytes, so 16 of them hold 1 GiB at most.
    std::size_t tmpfs = 16;
    // Mounts made in the primary views (a bind clones every mount below SRC; a DST that does
    // not exist takes a mount per entry of its nearest existing ancestor): twice the entries.
    std::size_t mounts = 131072;
};

// What a user's namespaces hold (or one namespace).
struct Holdings {
    std::size_t entries = 0;
    std::size_t tmpfs = 0;   // tmpfs entries
    std::size_t mounts = 0;  // mounts pnsd made in the primary view, beyond the host's
};
Holdings holdings_of(const Table& table);

// Whether a change by `caller` may leave one of `owner`'s namespaces holding `next`, when the
// owner's other namespaces hold `others`. Root's changes always may; EDQUOT with the reason.
Status within_quota(const Caller& caller, uid_t owner, const Holdings& others, const Holdings& next,
                    const Quotas& quotas);

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

// A process as a policy join sees it: its real, effective, saved and filesystem ids
// (/proc/PID/status) and whether it is dumpable (whether its owner could ptrace it).
struct ProcessIds {
    std::array<uid_t, 4> uids{};
    std::array<gid_t, 4> gids{};
    bool dumpable = true;
};

// Whether a cgroup policy may join `process` to `ns`: only if the namespace's owner could have
// moved it there with `pnsctl attach` (DESIGN.md, decision 8). Root's namespaces take any
// process. A user's take only processes whose every uid is the owner's, whose every gid is the
// owner's primary group `owner_gid` (what a caller's process must run with to be attached)
// and that are dumpable; so no process with uid 0 among its ids. Refused, with why:
//   EPERM   the process is not the owner's (a uid of another user, or root): not the owner's
//           to move, nor to hold or kill;
//   EACCES  it is the owner's, but not as a join needs it (another group, not dumpable).
Status may_join_by_policy(const Namespace& ns, const ProcessIds& process, gid_t owner_gid);

}  // namespace pns::agent::auth
