#include "agent/namespaces/auth.hpp"

#include <pwd.h>

#include <string>
#include <vector>

#include "common/text.hpp"

namespace pns::agent::auth {

namespace {

Error denied(std::string message) {
    return Error{EACCES, std::move(message)};
}

std::string uid_str(uid_t uid) {
    return std::to_string(uid);
}

}  // namespace

gid_t primary_gid(uid_t uid) {
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) return pw.pw_gid;
    return static_cast<gid_t>(uid);
}

Status may_create(const Caller& caller, uid_t owner, std::size_t owned) {
    if (caller.is_root()) return {};
    if (owner != caller.uid)
        return denied("only root may create a namespace owned by another user (you are uid " +
                      uid_str(caller.uid) + ", owner would be uid " + uid_str(owner) + ")");
    if (owned >= kMaxNamespacesPerUser)
        return Error{EDQUOT, "uid " + uid_str(caller.uid) + " already owns " +
                                 std::to_string(owned) + " namespaces, the most allowed"};
    return {};
}

Holdings holdings_of(const Table& table) {
    Holdings h;
    h.entries = table.entries.size();
    for (const auto& e : table.entries)
        if (e.kind == EntryKind::kTmpfs) ++h.tmpfs;
    return h;
}

Status within_quota(const Caller& caller, uid_t owner, const Holdings& others, const Holdings& next,
                    const Quotas& quotas) {
    if (caller.is_root()) return {};
    auto over = [&](std::size_t have, std::size_t limit, const std::string& what) -> Status {
        if (have <= limit) return {};
        return Error{EDQUOT, "uid " + uid_str(owner) + "'s namespaces would hold " +
                                 std::to_string(have) + " " + what + "; at most " +
                                 std::to_string(limit) + " are allowed for one user"};
    };
    if (auto st = over(others.entries + next.entries, quotas.entries, "entries"); !st) return st;
    if (auto st = over(others.tmpfs + next.tmpfs, quotas.tmpfs, "tmpfs entries"); !st) return st;
    return over(others.mounts + next.mounts, quotas.mounts, "mounts");
}

Status may_edit(const Caller& caller, const Namespace& ns) {
    if (caller.is_root() || caller.uid == ns.owner) return {};
    return denied("namespace " + quote(ns.name) + " is owned by uid " + uid_str(ns.owner) +
                  "; only its owner or root may change it");
}

bool may_see_entries(const Caller& caller, const Namespace& ns) {
    return caller.is_root() || caller.uid == ns.owner;
}

Status may_read_table(const Caller& caller, const Namespace& ns) {
    if (may_see_entries(caller, ns)) return {};
    return denied("namespace " + quote(ns.name) + " is owned by uid " + uid_str(ns.owner) +
                  "; only its owner or root may read its entries");
}

Status may_join_by_policy(const Namespace& ns, const ProcessIds& process, gid_t owner_gid) {
    if (ns.owner == 0) return {};
    auto refuse = [&](int code, const std::string& why) {
        return Error{code, why + "; namespace " + quote(ns.name) + " belongs to uid " +
                               uid_str(ns.owner) +
                               ", and a policy joins only processes its owner could attach"};
    };
    for (uid_t id : process.uids)
        if (id == 0) return refuse(EPERM, "it runs as root (a uid of 0)");
    for (uid_t id : process.uids)
        if (id != ns.owner) return refuse(EPERM, "it belongs to uid " + uid_str(id));
    for (gid_t id : process.gids)
        if (id != owner_gid)
            return refuse(EACCES, "it runs with group " + std::to_string(id) + ", not " +
                                      std::to_string(owner_gid));
    if (!process.dumpable) return refuse(EACCES, "it is not dumpable (it changed its privileges)");
    return {};
}

}  // namespace pns::agent::auth
