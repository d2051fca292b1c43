// pnsd: the pns daemon. Keeps the namespace tables and serves pnsctl over a Unix socket.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <CLI/CLI.hpp>

#include "agent/namespaces/auth.hpp"
#include "agent/bpf/bpf.hpp"
#include "agent/bpf/guard.hpp"
#include "agent/server/lanes.hpp"
#include "agent/log.hpp"
#include "agent/join/members.hpp"
#include "agent/policies/policies.hpp"
#include "agent/namespaces/registry.hpp"
#include "agent/server/server.hpp"
#include "agent/namespaces/store.hpp"
#include "agent/join/tracer.hpp"
#include "agent/bpf/tracker.hpp"
#include "agent/trusted_dir.hpp"
#include "common/protocol.hpp"
#include "common/text.hpp"

namespace {

using namespace pns;
using namespace pns::agent;
using nlohmann::json;

struct Options {
    std::string socket = "/run/pns/pnsd.sock";
    std::string state_dir = "/var/lib/pns";
    std::string runtime_dir = "/run/pns";
    std::string bpf_dir = "/sys/fs/bpf/pns";
    std::string log_level = "info";
    bool no_guard = false;
    auth::Quotas quotas;
};

// Requests that change something are worth a line in the log at info; reads only at debug.
bool is_change(std::string_view op) {
    return op == "ns.create" || op == "ns.rm" || op == "ns.apply" || op == "entry.add" ||
           op == "entry.rm" || op == "ns.view" || op == "proc.join" || op == "proc.detach" ||
           op == "policy.set" || op == "policy.rm";
}

class Daemon {
  public:
    Daemon(Options options, std::unique_ptr<Lanes> lanes, std::unique_ptr<Registry> registry,
           Views& views, std::unique_ptr<Tracer> tracer,
           std::unique_ptr<Tracker> tracker, std::string tracker_error,
           std::unique_ptr<Guard> guard, std::string guard_error, std::unique_ptr<Server> server,
           std::vector<std::string> mounted)
        : options_(std::move(options)),
          mounted_(std::move(mounted)),
          lanes_(std::move(lanes)),
          registry_(std::move(registry)),
          tracer_(std::move(tracer)),
          tracker_(std::move(tracker)),
          tracker_error_(std::move(tracker_error)),
          guard_(std::move(guard)),
          guard_error_(std::move(guard_error)),
          server_(std::move(server)),
          members_(
              *registry_, views, *tracer_, tracker_.get(),
              [this](Server::Ticket ticket, const Result<json>& result) {
                  server_->answer(ticket, result ? protocol::encode_success(*result)
                                                 : protocol::encode_failure(result.error()));
              },
              [this](Server::Ticket ticket, const json& line) {
                  return server_->push(ticket, protocol::encode_success(line));
              }),
          policies_(*registry_, members_, tracker_.get()) {
        // A namespace's policies and pnsd's records of its members go with it, in the same
        // all-or-nothing step as its table (DESIGN.md, decision 8).
        registry_->on_remove([this](const Namespace& ns) -> Result<std::vector<std::string>> {
            auto removed = policies_.forget_namespace(ns.id);
            if (removed) members_.forget_namespace(ns.name);
            return removed;
        });
        members_.set_connected([this](Server::Ticket t) { return server_->connected(t); });
        members_.use_lanes(lanes_.get());
        registry_->on_answers(
            [this](Server::Ticket ticket, const Result<json>& result) {
                server_->answer(ticket, result ? protocol::encode_success(*result)
                                               : protocol::encode_failure(result.error()));
            },
            // A namespace made or removed: the tracker's map of views follows.
            [this] { members_.sync_views(); });
    }

    // Whether views' work is still under way on some lane (a stuck one keeps pnsd's exit
    // from waiting for it).
    bool lanes_busy() const { return lanes_->pending() > 0; }

    std::optional<std::string> handle(const Caller& caller, std::string_view line,
                                      Server::Ticket ticket) {
        auto request = protocol::decode_request(line);
        if (!request) {
            spdlog::debug("server: uid {} pid {}: {}", caller.uid, caller.pid,
                          request.error().message);
            return protocol::encode_failure(request.error());
        }
        auto result = dispatch(caller, *request, ticket);
        if (!result) return std::nullopt;  // answered when the tracer is done
        if (!*result) {
            auto log_level =
                result->error().code == EIO ||
                        protocol::code_from_errno(result->error().code) == protocol::Code::kInternal
                    ? spdlog::level::err
                    : spdlog::level::debug;
            spdlog::log(log_level, "server: uid {} pid {} {}: {}", caller.uid, caller.pid,
                        quote(request->op), result->error().message);
            return protocol::encode_failure(result->error());
        }
        spdlog::log(is_change(request->op) ? spdlog::level::info : spdlog::level::debug,
                    "server: uid {} pid {} {} {}: ok", caller.uid, caller.pid, quote(request->op),
                    request->args.contains("name") && request->args["name"].is_string()
                        ? quote(request->args["name"].get<std::string>())
                        : "");
        return protocol::encode_success(**result);
    }

    Status run() {
        if (auto st = server_->watch(tracer_->event_fd(), [this] { members_.on_tracer_events(); });
            !st)
            return st;
        if (auto st = server_->watch(lanes_->event_fd(), [this] { lanes_->finish(); }); !st)
            return st;
        if (tracker_) {
            if (auto st =
                    server_->watch(tracker_->event_fd(), [this] { members_.on_tracker_events(); });
                !st)
                return st;
            members_.sync_views();
        }
        // Without the tracker too: the policies of namespaces removed meanwhile are dropped
        // from the file, and ns.rm finds the others (policies_.forget_namespace) to keep them.
        for (const auto& line : policies_.load()) spdlog::warn("policy: {}", line);
        if (tracker_) {
            // Events that came while pnsd was down (processes held since) are taken now.
            members_.on_tracker_events();
            members_.finish_holds();
        }
        return server_->run([this](const Caller& caller, std::string_view line,
                                   Server::Ticket ticket) { return handle(caller, line, ticket); },
                            [this] {
                                spdlog::info("pnsd: serving {} namespaces on '{}'",
                                             registry_->size(), server_->path());
                                sd_notifyf(0, "READY=1\nSTATUS=Serving %zu namespaces\nMAINPID=%d",
                                           registry_->size(), static_cast<int>(::getpid()));
                            });
    }

  private:
    std::optional<Result<json>> dispatch(const Caller& caller, const protocol::Request& request,
                                         Server::Ticket ticket) {
        if (request.op == "status") return Result<json>(status(caller));
        if (members_.handles(request.op)) return members_.handle(caller, request, ticket);
        if (policies_.handles(request.op)) return policies_.handle(caller, request);
        if (registry_->handles(request.op)) {
            // A new namespace is a new view for the tracker's map, of which ordinary users
            // leave a share to root.
            if (request.op == "ns.create")
                if (auto st = members_.room_for_view(caller.uid); !st)
                    return Result<json>(st.error());
            // Changes of views are answered when their lane is done (and the tracker's map
            // follows then, Registry::on_answers).
            auto result = registry_->handle(caller, request, ticket);
            if (!result) return std::nullopt;
            if (*result && request.op == "ns.view") members_.sync_views();
            // `ns show` lists the members to those who may see the entries.
            if (*result && request.op == "ns.show" && (*result)->contains("entries"))
                (**result)["members"] =
                    members_.list(caller, (**result)["name"].get<std::string>());
            return result;
        }
        return Result<json>(Error{EOPNOTSUPP, "unknown operation " + quote(request.op)});
    }

    json status(const Caller& caller) const {
        auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::steady_clock::now() - started_);
        return {{"version", PNS_VERSION},
                {"protocol", protocol::kVersion},
                {"pid", ::getpid()},
                {"uptime_seconds", uptime.count()},
                {"socket", options_.socket},
                {"state_dir", options_.state_dir},
                {"runtime_dir", options_.runtime_dir},
                {"mounted", mounted_},
                {"namespaces", registry_->size()},
                {"lanes", {{"running", lanes_->lanes()}, {"pending", lanes_->pending()}}},
                {"clients", server_->connections()},
                {"requests", server_->requests_served()},
                {"tracker", tracker_status()},
                {"guard", guard_status()},
                {"caller", {{"uid", caller.uid}, {"gid", caller.gid}, {"pid", caller.pid}}}};
    }

    json guard_status() const {
        if (!guard_) return {{"state", "unavailable"}, {"reason", guard_error_}};
        return {{"state", "active"},
                {"reused", guard_->reused()},
                {"upgraded", guard_->upgraded()},
                {"guarded_namespaces", guard_->guarded()},
                {"denied_files", guard_->denied()},
                {"refusals", guard_->refusals()}};
    }

    json tracker_status() const {
        if (!tracker_) return {{"state", "unavailable"}, {"reason", tracker_error_}};
        auto c = tracker_->counters();
        return {{"state", "active"},
                {"pin_dir", tracker_->pin_dir()},
                {"reused", tracker_->reused()},
                {"upgraded", tracker_->upgraded()},
                {"members", tracker_->members().size()},
                {"members_capacity", tracker_->members_capacity()},
                {"untracked_children", c[PNS_COUNTER_UNTRACKED]},
                {"policies", tracker_->policies().size()},
                {"views", tracker_->views().size()},
                {"held_at_exec", c[PNS_COUNTER_HELD]},
                {"entered_policy_cgroups", c[PNS_COUNTER_ENTERED]},
                {"escapes", c[PNS_COUNTER_ESCAPES]},
                {"lost_events", c[PNS_COUNTER_LOST_EVENTS]}};
    }

    Options options_;
    std::vector<std::string> mounted_;
    std::unique_ptr<Lanes> lanes_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<Tracer> tracer_;
    std::unique_ptr<Tracker> tracker_;
    std::string tracker_error_;
    std::unique_ptr<Guard> guard_;
    std::string guard_error_;
    std::unique_ptr<Server> server_;
    Members members_;
    Policies policies_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// systemd starts services with a soft limit of 1024 open files, too few for
// Server::kMaxConnections clients, each of which takes up to two (its socket, and the pidfd of
// its process unless another connection of that process holds it); the hard limit is there to
// be raised to (pnsd never uses select(), which is what the low soft limit protects).
void raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised{limit.rlim_max, limit.rlim_max};
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    if (limit.rlim_cur < 2 * Server::kMaxConnections + 64)
        spdlog::warn("pnsd: open-file limit {} allows fewer than {} clients, ignoring",
                     static_cast<unsigned long long>(limit.rlim_cur), Server::kMaxConnections);
}

// The BPF pins (once their parent is on bpffs): whoever could write in their directory could
// pin a map of theirs under a name pnsd reuses. The directory, if it exists, must be root's
// alone; its parent may be sticky, as bpffs' own root is (1777) unless mounted with mode=
// (pnsd mounts it 0700 where it mounts it).
Status check_bpf_dir(const std::string& path) {
    auto slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "."
                         : slash == 0               ? "/"
                                                    : path.substr(0, slash);
    auto parent_fd =
        open_trusted_dir(parent, {.what = "parent of the BPF pin directory", .sticky_ok = true});
    if (!parent_fd) return parent_fd.error();
    struct stat st {};
    std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
    if (::fstatat(parent_fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
        return {};
    auto dir = open_trusted_subdir(parent_fd->get(), parent, name, 0);
    if (!dir) return Error{dir.error().code, "BPF pin directory: " + dir.error().message};
    return {};
}

int serve(const Options& options) {
    if (::geteuid() != 0) {
        spdlog::error("pnsd: must run as root (it builds mount namespaces and joins processes)");
        return 1;
    }
    // SIGTERM and SIGINT are taken from a signalfd in the event loop; SIGPIPE never matters
    // because every send uses MSG_NOSIGNAL, but a library write must not kill pnsd either.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    // SIGCHLD: tracee stops and helpers' exits are read by the tracer thread alone.
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    umask(022);
    raise_fd_limit();

    // The directories first, before anything is made or mounted in them (agent/trusted_dir.hpp).
    if (auto runtime =
            open_trusted_dir(options.runtime_dir, {.what = "runtime directory", .create = 0755});
        !runtime) {
        spdlog::error("pnsd: {}", runtime.error().message);
        return 1;
    }
    auto store = Store::open(options.state_dir);
    if (!store) {
        spdlog::error("pnsd: {}", store.error().message);
        return 1;
    }
    auto server = Server::listen(options.socket);
    if (!server) {
        spdlog::error("pnsd: {}", server.error().message);
        return 1;
    }
    auto views = Views::open(options.runtime_dir);
    if (!views) {
        spdlog::error("views: {}", views.error().message);
        return 1;
    }
    if ((*views)->made_host_shared())
        spdlog::info(
            "views: the host's mounts were private; made them shared (as systemd does "
            "at boot) so that views see mounts made later");
    auto lanes = Lanes::open();
    if (!lanes) {
        spdlog::error("pnsd: {}", lanes.error().message);
        return 1;
    }
    auto registry = std::make_unique<Registry>(std::move(*store), views->get());
    registry->use_quotas(options.quotas);
    registry->use_lanes(lanes->get());
    auto skipped = registry->load();
    if (!skipped) {
        spdlog::error("pnsd: load tables: {}", skipped.error().message);
        return 1;
    }
    for (const auto& line : *skipped) spdlog::warn("store: {}", line);
    auto tracer = Tracer::start();
    if (!tracer) {
        spdlog::error("tracer: {}", tracer.error().message);
        return 1;
    }
    // The BPF tracker (once pnsd can serve: a pnsd that cannot start pins nothing); without
    // it pnsd still serves (no cgroup policies), and says why.
    std::unique_ptr<Tracker> tracker;
    std::string tracker_error;
    std::vector<std::string> mounted;  // what pnsd mounted on the host, for `pnsctl status`
    if (auto pin_dir = bpf::prepare_pin_dir(options.bpf_dir); !pin_dir) {
        if (pin_dir.error().code == EINVAL) {  // a --bpf-dir that cannot hold pins
            spdlog::error("pnsd: {}", pin_dir.error().message);
            return 1;
        }
        tracker_error = pin_dir.error().message;
    } else {
        if (auto st = check_bpf_dir(options.bpf_dir); !st) {
            spdlog::error("pnsd: {}", st.error().message);
            return 1;
        }
        if (*pin_dir) {
            mounted.push_back("bpffs at " + std::string(bpf::kBpffsMountPoint));
            spdlog::info(
                "pnsd: nothing was mounted at '{}'; mounted bpffs there (as systemd does "
                "at boot) for the pins",
                bpf::kBpffsMountPoint);
        }
        if (auto loaded = Tracker::open(options.bpf_dir); loaded) {
            tracker = std::move(*loaded);
            spdlog::info("tracker: {} under '{}'",
                         tracker->reused() ? "reusing the pinned tracker" : "loaded and pinned",
                         options.bpf_dir);
            if (tracker->members_capacity() < Tracker::members_for_kernel())
                spdlog::warn(
                    "tracker: the pinned members map holds {} processes, fewer than the kernel "
                    "now allows ({}; pid_max or threads-max were raised): children of members "
                    "past it go untracked (status counts them) until the tracker is loaded anew "
                    "(pnsd with the pins under '{}' removed), ignoring",
                    tracker->members_capacity(), Tracker::members_for_kernel(), options.bpf_dir);
        } else {
            tracker_error = loaded.error().message;
        }
    }
    if (!tracker) spdlog::error("tracker: unavailable: {}", tracker_error);
    // The LSM guard: only where the kernel runs BPF LSM programs; without it, deny entries are
    // refused and locked namespaces are guarded by the tracker alone (escapes killed).
    std::unique_ptr<Guard> guard;
    std::string guard_error =
        options.no_guard ? "disabled (--no-guard)" : "it needs the tracker, which is unavailable";
    if (tracker && !options.no_guard) {
        if (auto loaded = Guard::open(*tracker); loaded) {
            guard = std::move(*loaded);
            guard_error.clear();
            if (auto st = guard->set_pnsd(::getpid()); !st)
                spdlog::error("guard: {}", st.error().message);
            spdlog::info("guard: {}", guard->reused() ? "reusing the pinned LSM guard"
                                                      : "LSM guard loaded and pinned");
        } else {
            guard_error = loaded.error().message;
        }
    }
    if (tracker && options.no_guard) Guard::remove(*tracker);
    // Expected on kernels without BPF LSM: said once, at info, and in pnsctl status.
    if (!guard) spdlog::info("guard: unavailable: {}", guard_error);
    registry->use_guard(guard.get(), guard_error);
    // Each view on its owner's lane; one that takes longer than this (a source that does not
    // answer) goes on while pnsd serves.
    registry->adopt_views(std::chrono::seconds(30));

    Daemon daemon(options, std::move(*lanes), std::move(registry), **views, std::move(*tracer),
                  std::move(tracker), std::move(tracker_error), std::move(guard),
                  std::move(guard_error), std::move(*server), std::move(mounted));
    auto st = daemon.run();
    sd_notify(0, "STOPPING=1");
    if (!st) spdlog::error("pnsd: {}", st.error().message);
    else spdlog::info("pnsd: stopped");
    if (daemon.lanes_busy()) {
        // A lane stuck in a lookup that does not return still uses what the daemon owns: end
        // the process here rather than take it apart under that thread.
        spdlog::warn("pnsd: a view's work was still under way; not waiting for it");
        spdlog::shutdown();
        std::_Exit(st ? 0 : 1);
    }
    return st ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    CLI::App app{"pnsd: per-process file namespaces daemon"};
    app.add_option("--socket", options.socket, "Unix socket to serve on")->capture_default_str();
    app.add_option("--state-dir", options.state_dir, "where namespace tables are stored")
        ->capture_default_str();
    app.add_option("--runtime-dir", options.runtime_dir, "where views and runtime state live")
        ->capture_default_str();
    app.add_option("--bpf-dir", options.bpf_dir, "where the BPF tracker is pinned (on bpffs)")
        ->capture_default_str();
    app.add_flag("--no-guard", options.no_guard,
                 "run without the LSM guard: one pinned by an earlier pnsd is removed, deny "
                 "entries are refused");
    app.add_option("--user-entries", options.quotas.entries,
                   "most entries one ordinary user's namespaces may hold together")
        ->capture_default_str();
    app.add_option("--user-tmpfs", options.quotas.tmpfs,
                   "most tmpfs entries one ordinary user's namespaces may hold together (each "
                   "of 64 MiB at most)")
        ->capture_default_str();
    app.add_option("--user-mounts", options.quotas.mounts,
                   "most mounts one ordinary user's namespaces may make pnsd create together")
        ->capture_default_str();
    app.add_option("--log-level", options.log_level, "trace, debug, info, warn or error")
        ->capture_default_str();
    app.set_version_flag("--version", PNS_VERSION);
    CLI11_PARSE(app, argc, argv);

    if (auto st = setup_logging(options.log_level); !st) {
        std::fprintf(stderr, "pnsd: %s\n", st.error().message.c_str());
        return 2;
    }
    return serve(options);
}
