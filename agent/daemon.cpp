#include "agent/daemon.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "common/ops.hpp"
#include "common/protocol.hpp"

namespace pns::agent {

using nlohmann::json;
namespace op = protocol::op;

Daemon::Daemon(Options options, Parts parts)
    : options_(std::move(options)),
      parts_(std::move(parts)),
      lanes_(parts_.lanes.get()),
      registry_(parts_.registry.get()),
      server_(parts_.server.get()),
      members_(
          *registry_, *parts_.views, *parts_.tracer, parts_.tracker.get(),
          [this](Server::Ticket ticket, const Result<json>& result) { answer(ticket, result); },
          [this](Server::Ticket ticket, const json& line) {
              return server_->push(ticket, protocol::encode_success(line));
          }),
      policies_(*registry_, members_, parts_.tracker.get()) {
    // A namespace's policies and pnsd's records of its members go with it, in the same
    // all-or-nothing step as its table (DESIGN.md, decision 8).
    registry_->on_remove([this](const Namespace& ns) -> Result<std::vector<std::string>> {
        auto removed = policies_.forget_namespace(ns.id);
        if (removed) members_.forget_namespace(ns.name);
        return removed;
    });
    members_.set_connected([this](Server::Ticket t) { return server_->connected(t); });
    members_.use_lanes(lanes_);
    registry_->on_answers(
        [this](Server::Ticket ticket, const Result<json>& result) { answer(ticket, result); },
        // A namespace made or removed: the tracker's map of views follows.
        [this] { members_.sync_views(); });
    auto requests = Requests::make(routes());
    if (!requests) {  // a bug of pnsd's, found by every test that starts it
        spdlog::critical("pnsd: {}", requests.error().message);
        std::abort();
    }
    requests_.emplace(std::move(*requests));
}

void Daemon::answer(Server::Ticket ticket, const Result<json>& result) {
    server_->answer(ticket, result ? protocol::encode_success(*result)
                                   : protocol::encode_failure(result.error()));
}

// The request table: every operation, who serves it, and what follows.
std::vector<Route> Daemon::routes() {
    using R = const protocol::Request&;
    using T = Server::Ticket;
    const auto reads = Effect::kReads;
    const auto changes = Effect::kChanges;
    // Changes of a namespace's table are answered when its lane is done; the tracker's map of
    // views follows then (Registry::on_answers).
    auto change = [this](const Caller& c, R r, T t) {
        return Reply::from(registry_->change(c, r, t));
    };
    return {
        {op::kStatus, reads, [this](const Caller& c, R, T) { return Reply(status(c)); }, {}},
        {op::kNsCreate, changes,
         [this](const Caller& c, R r, T t) {
             // A new namespace is a new view for the tracker's map, of which ordinary users
             // leave a share to root.
             if (auto st = members_.room_for_view(c.uid); !st) return Reply(st.error());
             return Reply::from(registry_->change(c, r, t));
         },
         {}},
        {op::kNsRm, changes, change, {}},
        {op::kNsApply, changes, change, {}},
        {op::kEntryAdd, changes, change, {}},
        {op::kEntryRm, changes, change, {}},
        {op::kNsLs, reads, [this](const Caller& c, R r, T) { return Reply(registry_->list(c, r.args)); },
         {}},
        {op::kNsShow, reads,
         [this](const Caller& c, R r, T) { return Reply(registry_->show(c, r.args)); },
         // Members are listed to those who may see the entries.
         [this](const Caller& c, R, json& shown) {
             if (shown.contains("entries"))
                 shown["members"] = members_.list(c, shown["name"].get<std::string>());
         }},
        {op::kNsExport, reads,
         [this](const Caller& c, R r, T) { return Reply(registry_->export_table(c, r.args)); },
         {}},
        {op::kNsExplain, reads,
         [this](const Caller& c, R r, T) { return Reply(registry_->explain(c, r.args)); }, {}},
        // A satellite may have been made: the tracker's map of views follows.
        {op::kNsView, changes,
         [this](const Caller& c, R r, T) { return Reply(registry_->view_info(c, r.args)); },
         [this](const Caller&, R, json&) { members_.sync_views(); }},
        {op::kProcJoin, changes,
         [this](const Caller& c, R r, T t) { return members_.join(c, r.args, t); }, {}},
        {op::kProcDetach, changes,
         [this](const Caller& c, R r, T t) { return members_.detach(c, r.args, t); }, {}},
        {op::kProcLs, reads,
         [this](const Caller& c, R r, T) { return Reply(members_.list_processes(c, r.args)); },
         {}},
        {op::kProcEvents, reads, [this](const Caller& c, R, T t) { return members_.watch(c, t); },
         {}},
        {op::kPolicySet, changes,
         [this](const Caller& c, R r, T) { return Reply(policies_.set(c, r.args)); }, {}},
        {op::kPolicyRm, changes,
         [this](const Caller& c, R r, T) { return Reply(policies_.remove(c, r.args)); }, {}},
        {op::kPolicyLs, reads, [this](const Caller& c, R, T) { return Reply(policies_.list(c)); },
         {}},
    };
}

Status Daemon::run() {
    Tracker* tracker = parts_.tracker.get();
    if (auto st = server_->watch(parts_.tracer->event_fd(),
                                 [this] { members_.on_tracer_events(); });
        !st)
        return st;
    if (auto st = server_->watch(lanes_->event_fd(), [this] { lanes_->finish(); }); !st) return st;
    if (tracker) {
        if (auto st = server_->watch(tracker->event_fd(), [this] { members_.on_tracker_events(); });
            !st)
            return st;
        members_.sync_views();
    }
    // Without the tracker too: the policies of namespaces removed meanwhile are dropped
    // from the file, and ns.rm finds the others (policies_.forget_namespace) to keep them.
    for (const auto& line : policies_.load()) spdlog::warn("policy: {}", line);
    if (tracker) {
        // Events that came while pnsd was down (processes held since) are taken now.
        members_.on_tracker_events();
        members_.finish_holds();
    }
    return server_->run(
        [this](const Caller& caller, std::string_view line, Server::Ticket ticket) {
            return requests_->serve(caller, line, ticket);
        },
        [this] {
            spdlog::info("pnsd: serving {} namespaces on '{}'", registry_->size(),
                         server_->path());
            sd_notifyf(0, "READY=1\nSTATUS=Serving %zu namespaces\nMAINPID=%d", registry_->size(),
                       static_cast<int>(::getpid()));
        });
}

json Daemon::status(const Caller& caller) const {
    auto uptime =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
    return {{"version", PNS_VERSION},
            {"protocol", protocol::kVersion},
            {"pid", ::getpid()},
            {"uptime_seconds", uptime.count()},
            {"socket", options_.socket},
            {"state_dir", options_.state_dir},
            {"runtime_dir", options_.runtime_dir},
            {"mounted", parts_.mounted},
            {"namespaces", registry_->size()},
            {"lanes", {{"running", lanes_->lanes()}, {"pending", lanes_->pending()}}},
            {"clients", server_->connections()},
            {"requests", server_->requests_served()},
            {"tracker", tracker_status()},
            {"guard", guard_status()},
            {"caller", {{"uid", caller.uid}, {"gid", caller.gid}, {"pid", caller.pid}}}};
}

json Daemon::guard_status() const {
    const Guard* guard = parts_.guard.get();
    if (!guard) return {{"state", "unavailable"}, {"reason", parts_.guard_error}};
    return {{"state", "active"},
            {"reused", guard->reused()},
            {"upgraded", guard->upgraded()},
            {"guarded_namespaces", guard->guarded()},
            {"denied_files", guard->denied()},
            {"refusals", guard->refusals()}};
}

json Daemon::tracker_status() const {
    const Tracker* tracker = parts_.tracker.get();
    if (!tracker) return {{"state", "unavailable"}, {"reason", parts_.tracker_error}};
    auto c = tracker->counters();
    return {{"state", "active"},
            {"pin_dir", tracker->pin_dir()},
            {"reused", tracker->reused()},
            {"upgraded", tracker->upgraded()},
            {"members", tracker->members().size()},
            {"members_capacity", tracker->members_capacity()},
            {"untracked_children", c[PNS_COUNTER_UNTRACKED]},
            {"policies", tracker->policies().size()},
            {"views", tracker->views().size()},
            {"held_at_exec", c[PNS_COUNTER_HELD]},
            {"entered_policy_cgroups", c[PNS_COUNTER_ENTERED]},
            {"escapes", c[PNS_COUNTER_ESCAPES]},
            {"lost_events", c[PNS_COUNTER_LOST_EVENTS]}};
}

}  // namespace pns::agent
