// The namespaces pnsd serves: their tables in memory, kept identical to the store on disk.
// Every request is authorized here, and every change is all-or-nothing: it is validated and
// written to disk before the in-memory table changes, so a failure anywhere leaves both as
// they were.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/auth.hpp"
#include "agent/guard.hpp"
#include "agent/namespace.hpp"
#include "agent/store.hpp"
#include "agent/views.hpp"
#include "pns/protocol.hpp"

namespace pns::agent {

class Registry {
  public:
    // `views` realizes every table as a live view; without it (tests of the registry alone)
    // tables are only stored.
    Registry(Store store, Views* views) : store_(std::move(store)), views_(views) {}

    // Reads every stored table; returns the files that were skipped, one line each.
    Result<std::vector<std::string>> load();

    // Brings every view in line with its table (creating missing ones, repairing any that
    // differ) and removes views whose table is gone, unless processes are still inside.
    // Returns one line per problem; a view that cannot be fixed does not stop the others.
    std::vector<std::string> adopt_views();

    // Handles one namespace request (ops "ns.*" and "entry.*").
    Result<nlohmann::json> handle(const Caller& caller, const protocol::Request& request);
    bool handles(std::string_view op) const;

    // The LSM guard, or why there is none: `deny` entries are refused without it.
    void use_guard(Guard* guard, std::string why_not) {
        guard_ = guard;
        guard_missing_ = std::move(why_not);
    }

    // What else goes with a namespace (its policies, pnsd's records of its members): called
    // by ns.rm once the table is off the disk, and if it fails the table is stored again and
    // the removal refused, so it is all or nothing. Returns what it took away (cgroups).
    using OnRemove = std::function<Result<std::vector<std::string>>(const Namespace&)>;
    void on_remove(OnRemove hook) { on_remove_ = std::move(hook); }

    // What one ordinary user's namespaces may hold together.
    void use_quotas(const auth::Quotas& quotas) { quotas_ = quotas; }
    const auth::Quotas& quotas() const { return quotas_; }

    std::size_t size() const { return namespaces_.size(); }
    // The namespace called `name`, or nullptr.
    const Namespace* lookup(const std::string& name) const {
        auto it = namespaces_.find(name);
        return it == namespaces_.end() ? nullptr : &it->second;
    }
    // The namespace with identity `id`, or nullptr: what policies name.
    const Namespace* find_id(const NamespaceId& id) const;
    const Store& store() const { return store_; }

  private:
    using Json = nlohmann::json;
    using Change = std::function<Status(Namespace&)>;

    Result<Json> create(const Caller& caller, const Json& args);
    Result<Json> remove(const Caller& caller, const Json& args);
    Result<Json> list(const Caller& caller, const Json& args) const;
    Result<Json> show(const Caller& caller, const Json& args) const;
    Result<Json> export_table(const Caller& caller, const Json& args) const;
    Result<Json> add_entry(const Caller& caller, const Json& args);
    Result<Json> remove_entries(const Caller& caller, const Json& args);
    Result<Json> apply(const Caller& caller, const Json& args);
    Result<Json> explain(const Caller& caller, const Json& args);
    Result<Json> view_info(const Caller& caller, const Json& args);

    // Makes the view show `next` and the guard enforce it (no-op without views), within the
    // owner's quota of mounts (`mounts`: what the view holds then). If the quota or the guard
    // refuses, the view goes back to `before` (when there is one).
    Status realize(const Namespace& next, const Caller& caller, const Namespace* before,
                   std::size_t& mounts);
    // Gives the guard `ns`'s rules, its deny entries looked up as `resolver`.
    Status guard(const Namespace& ns, const Resolver& resolver);
    // Drops the guard's rules for `name`'s view (before the view goes).
    void forget_guard(const std::string& name);
    // Processes inside any of the view's mount namespaces, as "PID (COMM)".
    std::vector<std::string> members(const std::string& name) const;

    // Looks up args["name"]; ENOENT with a clear message when absent.
    Result<std::map<std::string, Namespace>::iterator> find(const Json& args);
    Result<std::map<std::string, Namespace>::const_iterator> find(const Json& args) const;

    // Authorizes, checks args["generation"] if given, applies `change` to a copy, validates,
    // stores, and only then replaces the table in memory.
    Result<Json> edit(const Caller& caller, const Json& args, const Change& change);

    Json summary(const Caller& caller, const Namespace& ns) const;
    std::size_t count_owned_by(uid_t uid) const;
    // What the namespaces of `owner` hold together, but for the one called `except`.
    auth::Holdings held_by(uid_t owner, const std::string& except) const;

    Store store_;
    Views* views_;
    OnRemove on_remove_;
    Guard* guard_ = nullptr;
    std::string guard_missing_ = "not loaded";
    std::map<std::string, Namespace> namespaces_;
    // What each namespace holds (entries, tmpfs entries, mounts its view made), for the
    // per-user quotas; mounts are counted for namespaces of non-root owners only.
    std::map<std::string, auth::Holdings> held_;
    auth::Quotas quotas_;
};

}  // namespace pns::agent
