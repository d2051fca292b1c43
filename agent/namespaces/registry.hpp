// The namespaces pnsd serves: their tables in memory, kept identical to the store on disk.
// Every request is authorized here, and every change is all-or-nothing: it is validated and
// written to disk before the in-memory table changes, so a failure anywhere leaves both as
// they were.
//
// A change's work on its view (lookups as the requester, mounts) runs on the requester's lane
// (agent/server/lanes.hpp), never on the main thread: the request is answered when it is done. Two
// changes of one namespace never run at once: a request for a namespace whose change is under
// way waits for it, in order (`busy_`, `waiting_`). Reads answer at once, from the tables as
// the last completed change left them.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/namespaces/auth.hpp"
#include "agent/bpf/guard.hpp"
#include "agent/server/lanes.hpp"
#include "agent/namespaces/namespace.hpp"
#include "agent/server/server.hpp"
#include "agent/namespaces/store.hpp"
#include "agent/views/views.hpp"
#include "common/protocol.hpp"

namespace pns::agent {

class Registry {
  public:
    // `views` realizes every table as a live view; without it (tests of the registry alone)
    // tables are only stored.
    Registry(Store store, Views* views) : store_(std::move(store)), views_(views) {}

    // Reads every stored table; returns the files that were skipped, one line each.
    Result<std::vector<std::string>> load();

    // Where views' work runs, and how answers given later reach their clients (set before
    // anything is served). `changed` runs
    // after a namespace was created or removed (the tracker's map of views follows).
    using Answer = std::function<void(Server::Ticket, const Result<nlohmann::json>&)>;
    void use_lanes(Lanes* lanes) { lanes_ = lanes; }
    void on_answers(Answer answer, std::function<void()> changed) {
        answer_ = std::move(answer);
        changed_ = std::move(changed);
    }

    // Brings every view in line with its table (creating missing ones, repairing any that
    // differ), each on its owner's lane, and removes views whose table is gone, unless
    // processes are still inside. Waits up to `patience` for the views; one that takes longer
    // (a source that does not answer) goes on being made while pnsd serves, and requests for
    // its namespace wait for it. Problems are logged, one line each; a view that cannot be
    // fixed does not stop the others.
    void adopt_views(std::chrono::milliseconds patience);

    // The requests of namespaces (agent/server/requests.hpp routes them here).
    //
    // A change of a namespace's table and view (ns.create, ns.rm, ns.apply, entry.add,
    // entry.rm): the answer now (a refusal), or nothing when it comes later through the Answer
    // of on_answers, once its lane is done.
    std::optional<Result<nlohmann::json>> change(const Caller& caller,
                                                 const protocol::Request& request,
                                                 Server::Ticket ticket);
    // Reads, answered at once from the tables as the last completed change left them.
    Result<nlohmann::json> list(const Caller& caller, const nlohmann::json& args) const;
    Result<nlohmann::json> show(const Caller& caller, const nlohmann::json& args) const;
    Result<nlohmann::json> export_table(const Caller& caller, const nlohmann::json& args) const;
    Result<nlohmann::json> explain(const Caller& caller, const nlohmann::json& args);
    // Where a view's pins are, making the uid's satellite if missing (root and the tests).
    Result<nlohmann::json> view_info(const Caller& caller, const nlohmann::json& args);

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

    // A change of a view under way: what it started from and goes to, and what its lane found.
    struct Work {
        std::string op;
        Caller caller;
        std::optional<Server::Ticket> ticket;  // none: pnsd's own (adopting a view at start)
        std::string name;
        std::optional<Namespace> before;  // none: a namespace being created
        Namespace next;
        bool replace_left_view = false;  // create: a view of a gone namespace is pinned there
        // Found on the lane:
        std::size_t mounts = 0;
        std::optional<Views::GuardFacts> facts;
        std::string note;  // adoption: what was found and done about it
    };
    using WorkPtr = std::shared_ptr<Work>;

    // Runs a request that changes `name`'s view now, or queues it behind the change under way.
    std::optional<Result<Json>> when_free(const std::string& name,
                                          std::function<std::optional<Result<Json>>()> start,
                                          Server::Ticket ticket);
    // The change of `name` is over: the next request waiting for it starts.
    void release(const std::string& name);
    // Ends a change: answers, logs for pnsd's own, releases the namespace.
    void conclude(const WorkPtr& work, const Result<Json>& result);

    // Takes the namespace and makes its view show work.next on `lane` (realize_on_lane), then
    // finishes on the main thread (finish_realize).
    void realize(const WorkPtr& work, uid_t lane);
    // On a lane: makes the view show work.next, counts its mounts, looks up its guard facts.
    // If anything after the view was made fails, the view goes back as it was.
    Status realize_on_lane(Work& work);
    // On the main thread, once the lane is done: quotas, the guard's rules, the store, memory.
    void finish_realize(const WorkPtr& work, Status status);
    // Takes the view back to work.before (or away, for a create) on the lane, then fails.
    void undo_and_fail(const WorkPtr& work, Error error);
    // The change did not happen: the stored table is put back (an edit), and the error told.
    void fail(const WorkPtr& work, Error error);

    std::optional<Result<Json>> create(const Caller& caller, const Json& args,
                                       Server::Ticket ticket);
    std::optional<Result<Json>> remove(const Caller& caller, const Json& args,
                                       Server::Ticket ticket);
    std::optional<Result<Json>> add_entry(const Caller& caller, const Json& args,
                                          Server::Ticket ticket);
    std::optional<Result<Json>> remove_entries(const Caller& caller, const Json& args,
                                               Server::Ticket ticket);
    std::optional<Result<Json>> apply(const Caller& caller, const Json& args,
                                      Server::Ticket ticket);

    // Deny entries need the guard: refused without it.
    Status guard_can_enforce(const Table& table) const;
    // Gives the guard `ns`'s rules from what its lane found.
    Status guard(const Namespace& ns, const Views::GuardFacts& facts);
    // Drops the guard's rules for `name`'s view (before the view goes).
    void forget_guard(const std::string& name);
    // Processes inside any of the view's mount namespaces, as "PID (COMM)".
    std::vector<std::string> members(const std::string& name) const;

    // Looks up args["name"]; ENOENT with a clear message when absent.
    Result<std::map<std::string, Namespace>::iterator> find(const Json& args);
    Result<std::map<std::string, Namespace>::const_iterator> find(const Json& args) const;

    // Authorizes, checks args["generation"] if given, applies `change` to a copy, validates,
    // stores, realizes it on the requester's lane, and only then replaces the table in memory.
    std::optional<Result<Json>> edit(const char* op, const Caller& caller, const Json& args,
                                     const Change& change, Server::Ticket ticket);

    Json summary(const Caller& caller, const Namespace& ns) const;
    std::size_t count_owned_by(uid_t uid) const;
    // What the namespaces of `owner` hold together, but for the one called `except`.
    auth::Holdings held_by(uid_t owner, const std::string& except) const;

    Store store_;
    Views* views_;
    Lanes* lanes_ = nullptr;
    Answer answer_;
    std::function<void()> changed_;
    std::set<std::string> busy_;  // namespaces with a change under way
    std::map<std::string, std::deque<std::function<void()>>> waiting_;  // requests behind it
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
