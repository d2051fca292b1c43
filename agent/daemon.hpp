// pnsd's parts put together: the server, the namespaces and their views, the joins, the
// policies, the BPF tracker and guard. Daemon owns them, wires their callbacks to one another,
// and holds the request table (agent/server/requests.hpp) that routes every operation.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/bpf/guard.hpp"
#include "agent/bpf/tracker.hpp"
#include "agent/join/members.hpp"
#include "agent/join/tracer.hpp"
#include "agent/namespaces/auth.hpp"
#include "agent/namespaces/registry.hpp"
#include "agent/policies/policies.hpp"
#include "agent/server/lanes.hpp"
#include "agent/server/requests.hpp"
#include "agent/server/server.hpp"
#include "agent/views/views.hpp"

namespace pns::agent {

// pnsd's command line.
struct Options {
    std::string socket = "/run/pns/pnsd.sock";
    std::string state_dir = "/var/lib/pns";
    std::string runtime_dir = "/run/pns";
    std::string bpf_dir = "/sys/fs/bpf/pns";
    std::string log_level = "info";
    bool no_guard = false;
    auth::Quotas quotas;
};

// What pnsd started with, each part made by main.cpp's start-up steps.
struct Parts {
    std::unique_ptr<Views> views;  // first: the others use it until they are gone
    std::unique_ptr<Lanes> lanes;
    std::unique_ptr<Registry> registry;
    // Before the tracer, so it is gone after it: the tracer thread, when it stops, finishes
    // the injections in progress and tells the tracker of each (Destination::tracker).
    std::unique_ptr<Tracker> tracker;  // null: unavailable, for tracker_error
    std::string tracker_error;
    std::unique_ptr<Tracer> tracer;
    std::unique_ptr<Guard> guard;      // null: unavailable, for guard_error
    std::string guard_error;
    std::unique_ptr<Server> server;
    std::vector<std::string> mounted;  // what pnsd mounted on the host, for `pnsctl status`
};

class Daemon {
  public:
    Daemon(Options options, Parts parts);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Serves until SIGTERM or SIGINT.
    Status run();

    // Whether views' work is still under way on some lane (a stuck one keeps pnsd's exit
    // from waiting for it).
    bool lanes_busy() const { return lanes_->pending() > 0; }

  private:
    std::vector<Route> routes();
    nlohmann::json status(const Caller& caller) const;
    nlohmann::json guard_status() const;
    nlohmann::json tracker_status() const;
    // Delivers an answer that came later.
    void answer(Server::Ticket ticket, const Result<nlohmann::json>& result);

    Options options_;
    Parts parts_;
    // Shorthands for parts_'s members, which every handler uses.
    Lanes* lanes_;
    Registry* registry_;
    Server* server_;
    Members members_;
    Policies policies_;
    std::optional<Requests> requests_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace pns::agent
