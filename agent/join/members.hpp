// Moving processes into views and out (DESIGN.md, decisions 4 and 5): the requests
// proc.join (pnsctl attach, pnsctl run), proc.detach and proc.ls (pnsctl ps), the rules
// about who may move which process where, and the record of every member pnsd moved.
//
// Rules, each checked before the process is touched (decided in agent/join/rules.hpp, from
// facts gathered here):
//   - the caller owns the process (all its user and group ids are the caller's, and it is
//     dumpable) or is root; a non-root caller moves processes only into namespaces it owns;
//   - a process with uid 0 among its ids joins only namespaces owned by root (their primary);
//     any other process joins the satellite of its uid;
//   - never PID 1, kernel threads, zombies, pnsd and its helpers, processes traced by another
//     tracer, processes in another pid or user namespace or chrooted, processes under a
//     seccomp filter (an injected system call could kill them), or non-root processes that
//     hold capabilities (a satellite user namespace would take them away).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/server/lanes.hpp"
#include "agent/namespaces/namespace.hpp"
#include "agent/namespaces/registry.hpp"
#include "agent/server/reply.hpp"
#include "agent/server/server.hpp"
#include "agent/join/tracer.hpp"
#include "agent/bpf/tracker.hpp"
#include "agent/views/views.hpp"
#include "common/protocol.hpp"

namespace pns::agent {

class Members {
  public:
    using Json = nlohmann::json;
    // Delivers the answer of a deferred request (on the main thread).
    using Answer = std::function<void(Server::Ticket, const Result<Json>&)>;
    // Sends one more line of a streaming request; false once its client is gone.
    using Push = std::function<bool(Server::Ticket, const Json&)>;

    // `tracker` may be null (pnsd runs without the BPF tracker).
    Members(const Registry& registry, Views& views, Tracer& tracer, Tracker* tracker, Answer answer,
            Push push);

    // Where satellites are made for joins (off the main thread).
    void use_lanes(Lanes* lanes) { lanes_ = lanes; }

    // Tells whether a request's client is still connected: event streams whose client left
    // are forgotten before the streams of a user are counted.
    void set_connected(std::function<bool(Server::Ticket)> connected) {
        connected_ = std::move(connected);
    }

    // The requests of processes (agent/server/requests.hpp routes them here). A join or a
    // detach is answered later, through `answer`, once the tracer is done; a refusal at once.
    Reply join(const Caller& caller, const Json& args, Server::Ticket ticket);     // proc.join
    Reply detach(const Caller& caller, const Json& args, Server::Ticket ticket);   // proc.detach
    Result<Json> list_processes(const Caller& caller, const Json& args);           // proc.ls
    // proc.events: the first line says the stream is on, then one line per event the caller
    // may see, until its client goes.
    Reply watch(const Caller& caller, Server::Ticket ticket);

    // Takes the tracer's events: answers deferred requests, updates the records.
    void on_tracer_events();

    // Members of namespace `name` for `ns show`: every process in one of its views.
    Json list(const Caller& caller, const std::string& name) const;

    // Joins `pid` for the policy of cgroup `cgroup` (which matched it for namespace `name`):
    // the namespace is the one that policy names now (use_policies), by identity. The process
    // joins only if the namespace's owner could have attached it (join::check_join); one that
    // is not the owner's at all is left where it is: not the policy owner's to hold or kill.
    // `held`: Held::kAtExec when the tracker stopped it at exec; it is continued once it is in
    // the view, or when it is left where it is, and killed if it is the owner's but cannot join
    // (no program it execs may run outside the view).
    // `pid` is opened as a pidfd at once; the second form takes the pidfd pnsd has already.
    void join_for_policy(pid_t pid, const std::string& name, std::uint64_t cgroup, Held held);
    void join_for_policy(std::shared_ptr<const UniqueFd> pidfd, pid_t pid, const std::string& name,
                         std::uint64_t cgroup, Held held);

    // How to find the namespace the policy of a cgroup (by id) names now; nullptr when the
    // cgroup has no policy any more.
    using PolicyLookup = std::function<const Namespace*(std::uint64_t cgroup)>;
    void use_policies(PolicyLookup lookup) { policy_namespace_ = std::move(lookup); }

    // Forgets what pnsd recorded about members of namespace `name`, which is gone: a later
    // namespace of that name must not list them as its own.
    void forget_namespace(const std::string& name);

    // Takes the tracker's events: processes entering policy cgroups, held at exec, exits,
    // escapes.
    void on_tracker_events();

    // At start, after the events that waited are taken: processes the map still marks held
    // (a previous pnsd took their event and died before letting them go) are joined now, or
    // killed if they cannot be; none stays stopped.
    void finish_holds();

    // Makes the tracker's map of views match the pinned views (after views come and go).
    void sync_views();

    // Whether the tracker's map of views has room for one more view of `uid`'s: ordinary
    // users together leave the last kViewsRootReserve entries to root (EDQUOT otherwise).
    Status room_for_view(uid_t uid) const;
    static constexpr std::size_t kViewsRootReserve = PNS_MAX_VIEWS / 8;
    // `pnsctl events` streams one user may have open at once (each event is sent to every
    // stream that may see it).
    static constexpr std::size_t kMaxWatchersPerUser = 16;

    // The inode of the mount namespace of `name`'s primary view: how the tracker names it
    // (0 if it has no view).
    std::uint32_t primary_of(const std::string& name) const;

  private:
    struct Record {
        std::string ns;
        // "member"; "pending" (being joined); "held" (stopped at exec by the tracker until its
        // policy join is done); "supervised" (multithreaded: joins at its next exec).
        std::string state;
        std::chrono::system_clock::time_point since;
        std::uint64_t start_time = 0;
    };
    struct Outstanding {
        // What the request is, and whether anyone waits for its answer.
        enum class Kind {
            kJoin,    // proc.join (attach, run): its client waits
            kDetach,  // proc.detach: its client waits
            kPolicy,  // a policy join: nobody waits for an answer
        };
        Server::Ticket ticket;
        Kind kind = Kind::kJoin;
        pid_t pid = 0;
        std::string ns;
        std::shared_ptr<const UniqueFd> pidfd;  // the process; signals go through it
        Held held = Held::kNo;                  // held at exec: killed if the join fails
        std::uint64_t cgroup = 0;
        bool answered = false;
        bool let_go = false;  // held at exec and refused meanwhile: continued once this ends
    };

    Json processes(const Caller& caller, const std::string* only) const;

    void answer(std::uint64_t request, const Result<Json>& result);
    // The tracer's outcome of one join (on_tracer_events).
    void on_joined(TraceEvent& ev, const Outstanding& out, const std::string& ns,
                   const std::string& label);
    void on_failed(const TraceEvent& ev, const Outstanding& out, const std::string& ns,
                   const std::string& label);
    void set_record(pid_t pid, const std::string& ns, const std::string& state);
    // Forgets the records of processes that are gone.
    void prune();

    // Calls `then` with destination(): at once when the view exists, else once the uid's lane
    // has made its satellite, if `ns` (this namespace, not another of its name) is still there.
    void with_destination(const Namespace& ns, bool root, uid_t uid, gid_t gid,
                          std::function<void(Result<std::shared_ptr<Destination>>)> then);
    // Where a process of `uid`/`gid` goes in `name`: the primary for root, else the uid's
    // satellite (made if missing), and the tracker to tell.
    Result<std::shared_ptr<Destination>> destination(const std::string& name, bool root, uid_t uid,
                                                     gid_t gid);

    // The namespace whose primary view has mount namespace inode `ns` ("" if none).
    std::string name_of(std::uint32_t ns) const;

    // A pidfd of the process a tracker event names by its tgid, opened at once and checked to
    // be the process the event is about (see members.cpp); ESRCH when it is gone.
    Result<std::shared_ptr<const UniqueFd>> open_tracked(const pns_event& event) const;
    // The same for a tgid the members map holds in `state`.
    Result<std::shared_ptr<const UniqueFd>> open_tracked(pid_t tgid, std::uint32_t state) const;

    // A process a policy may not join (or whose policy is gone) stays where it is: a held one
    // is continued (after a join of it under way has ended), and the tracker's entry says
    // where it really is.
    void let_go(const UniqueFd& pidfd, pid_t pid, Held held, const std::string& name,
                const std::string& why);
    PolicyLookup policy_namespace_;

    const Registry& registry_;
    Views& views_;
    Tracer& tracer_;
    Tracker* tracker_;
    Lanes* lanes_ = nullptr;
    Answer answer_;
    Push push_;
    std::function<bool(Server::Ticket)> connected_;
    struct Watcher {
        Server::Ticket ticket;
        Caller caller;
    };
    std::vector<Watcher> watchers_;  // `pnsctl events`
    // Tells the watchers who may see it (root, the process's uid, the namespace's owner).
    void publish(const std::string& kind, pid_t pid, const std::string& comm, const std::string& ns,
                 const std::string& detail = {});
    std::uint64_t next_request_ = 0;
    std::map<std::uint64_t, Outstanding> outstanding_;
    std::map<pid_t, Record> records_;
    std::map<std::uint32_t, std::string> names_;  // primary's mount ns inode -> namespace
    // When a guard refusal was last logged at info, by namespace (primary's inode).
    std::map<std::uint32_t, std::chrono::steady_clock::time_point> last_refusal_logged_;
    std::size_t views_in_map_ = 0;                // views sync_views put in the tracker's map
};

}  // namespace pns::agent
