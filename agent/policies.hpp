// Cgroup-level policy (DESIGN.md, decision 6): every process born in, or moved into, a cgroup
// (or a cgroup below it) joins a namespace. The tracker matches processes in BPF; this keeps
// the policies (stored in <state-dir>/policies.json), puts them in the tracker's map, and
// joins the processes already in a cgroup when its policy is set or pnsd starts.
//
// Requests: policy.set {cgroup, name}, policy.rm {cgroup}, policy.ls. CGROUP is a path
// relative to the cgroup2 mount (found in mountinfo) or absolute under it. Root may set any;
// a user may set one for a namespace they own on a cgroup directory they own (delegated).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/members.hpp"
#include "agent/namespace.hpp"
#include "agent/registry.hpp"
#include "agent/store.hpp"
#include "agent/tracker.hpp"
#include "pns/protocol.hpp"

namespace pns::agent {

class Policies {
  public:
    Policies(const Registry& registry, Members& members, Tracker* tracker);

    // Reads the stored policies, puts them in the tracker and joins who is in their cgroups.
    // Returns one line per problem.
    std::vector<std::string> load();

    bool handles(std::string_view op) const { return op.starts_with("policy."); }
    Result<nlohmann::json> handle(const Caller& caller, const protocol::Request& request);

  private:
    struct Policy {
        std::string cgroup;  // relative to the cgroup2 mount, no leading '/'
        std::string ns;
        std::uint64_t id = 0;  // the cgroup's id (its directory's inode)
        uid_t owner = 0;       // owner of the cgroup directory
    };

    Result<nlohmann::json> set(const Caller& caller, const nlohmann::json& args);
    Result<nlohmann::json> remove(const Caller& caller, const nlohmann::json& args);
    nlohmann::json list(const Caller& caller) const;

    // Resolves a cgroup path below the cgroup2 mount, never following a symbolic link.
    Result<Policy> resolve(const std::string& path) const;
    Status save() const;
    // Joins every process in the cgroup of `policy` and below it.
    void join_present(const Policy& policy);

    const Registry& registry_;
    Members& members_;
    Tracker* tracker_;
    std::string root_;  // the cgroup2 mount point, "" if there is none
    std::vector<Policy> policies_;
};

}  // namespace pns::agent
