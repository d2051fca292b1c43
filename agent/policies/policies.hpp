// Cgroup-level policy (DESIGN.md, decision 6): every process born in, or moved into, a cgroup
// (or a cgroup below it) joins a namespace. The tracker matches processes in BPF; this keeps
// the policies (stored in <state-dir>/policies.json), puts them in the tracker's map, and
// joins the processes already in a cgroup when its policy is set or pnsd starts.
//
// Requests: policy.set {cgroup, name}, policy.rm {cgroup}, policy.ls. CGROUP is a path
// relative to the cgroup2 mount (found in mountinfo) or absolute under it. Root may set any;
// a user may set one for a namespace they own on a cgroup directory they own (delegated).
//
// A policy names its namespace by identity (NamespaceId), never by name: it goes when its
// namespace goes (forget_namespace, from ns.rm), one whose namespace is gone at start is
// dropped, and a later namespace of the same name never inherits it. Requests and answers
// still show names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/join/members.hpp"
#include "agent/namespaces/namespace.hpp"
#include "agent/namespaces/registry.hpp"
#include "agent/namespaces/store.hpp"
#include "agent/bpf/tracker.hpp"
#include "common/protocol.hpp"

namespace pns::agent {

class Policies {
  public:
    Policies(const Registry& registry, Members& members, Tracker* tracker);

    // Reads the stored policies and, with the tracker, puts them in it and joins who is in
    // their cgroups. Policies of namespaces that are gone are dropped (and the file rewritten).
    // Returns one line per problem.
    std::vector<std::string> load();

    // Takes away every policy of namespace `id`, from the file first (nothing changes if that
    // fails), then from memory and the tracker. Returns their cgroups.
    Result<std::vector<std::string>> forget_namespace(const NamespaceId& id);

    // The namespace the policy of cgroup `cgroup` (its id) joins processes to now, or nullptr.
    const Namespace* namespace_of(std::uint64_t cgroup) const;

    // Policies one ordinary user's namespaces may have (each a cgroup delegated to the user).
    static constexpr std::size_t kMaxPoliciesPerUser = 64;

    // The requests of policies (agent/server/requests.hpp routes them here): policy.set,
    // policy.rm, policy.ls.
    Result<nlohmann::json> set(const Caller& caller, const nlohmann::json& args);
    Result<nlohmann::json> remove(const Caller& caller, const nlohmann::json& args);
    nlohmann::json list(const Caller& caller) const;

  private:
    struct Policy {
        std::string cgroup;  // relative to the cgroup2 mount, no leading '/'
        NamespaceId ns;
        std::uint64_t id = 0;  // the cgroup's id (its directory's inode)
        uid_t owner = 0;       // owner of the cgroup directory
    };

    // Resolves a cgroup path below the cgroup2 mount, never following a symbolic link.
    Result<Policy> resolve(const std::string& path) const;
    Status save() const;
    // Joins every process in the cgroup of `policy` and below it.
    void join_present(const Policy& policy);
    // The name of the policy's namespace ("" if it is gone).
    std::string name_of(const Policy& policy) const;

    const Registry& registry_;
    Members& members_;
    Tracker* tracker_;
    std::string root_;  // the cgroup2 mount point, "" if there is none
    std::vector<Policy> policies_;
};

}  // namespace pns::agent
