// Moving processes into views and out (DESIGN.md, decisions 4 and 5): the requests
// proc.join (pnsctl attach, pnsctl run), proc.detach and proc.ls (pnsctl ps), the rules
// about who may move which process where, and the record of every member pnsd moved.
//
// Rules, each checked before the process is touched:
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

#include "agent/namespace.hpp"
#include "agent/registry.hpp"
#include "agent/server.hpp"
#include "agent/tracer.hpp"
#include "agent/views.hpp"
#include "pns/protocol.hpp"

namespace pns::agent {

class Members {
  public:
    using Json = nlohmann::json;
    // Delivers the answer of a deferred request (on the main thread).
    using Answer = std::function<void(Server::Ticket, const Result<Json>&)>;

    Members(const Registry& registry, Views& views, Tracer& tracer, Answer answer);

    bool handles(std::string_view op) const { return op.starts_with("proc."); }

    // The answer now, or nothing when it comes later through `answer`.
    std::optional<Result<Json>> handle(const Caller& caller, const protocol::Request& request,
                                       Server::Ticket ticket);

    // Takes the tracer's events: answers deferred requests, updates the records.
    void on_tracer_events();

    // Members of namespace `name` for `ns show`: every process in one of its views.
    Json list(const Caller& caller, const std::string& name) const;

  private:
    struct Record {
        std::string ns;
        std::string state;  // "member", "supervised", "pending"
        std::chrono::system_clock::time_point since;
        std::uint64_t start_time = 0;
    };
    struct Outstanding {
        Server::Ticket ticket;
        pid_t pid = 0;
        std::string ns;
        bool detach = false;
        bool answered = false;
    };

    Result<Json> join(const Caller& caller, const Json& args, Server::Ticket ticket);
    Result<Json> detach(const Caller& caller, const Json& args, Server::Ticket ticket);
    Json processes(const Caller& caller, const std::string* only) const;

    void answer(std::uint64_t request, const Result<Json>& result);
    void set_record(pid_t pid, const std::string& ns, const std::string& state);
    // Forgets the records of processes that are gone.
    void prune();

    const Registry& registry_;
    Views& views_;
    Tracer& tracer_;
    Answer answer_;
    std::uint64_t next_request_ = 0;
    std::map<std::uint64_t, Outstanding> outstanding_;
    std::map<pid_t, Record> records_;
};

}  // namespace pns::agent
