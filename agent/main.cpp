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

#include "agent/daemon.hpp"
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

// Signals and limits of pnsd's own process.
void prepare_process() {
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
}

// The parts that pnsd cannot serve without: directories, store, socket, views, lanes, the
// tables and the tracer. Each failure is said as it is, in one line.
Status open_core(const Options& options, Parts& parts) {
    // The directories first, before anything is made or mounted in them (agent/trusted_dir.hpp).
    if (auto runtime =
            open_trusted_dir(options.runtime_dir, {.what = "runtime directory", .create = 0755});
        !runtime)
        return runtime.error();
    auto store = Store::open(options.state_dir);
    if (!store) return store.error();
    auto server = Server::listen(options.socket);
    if (!server) return server.error();
    parts.server = std::move(*server);
    auto views = Views::open(options.runtime_dir);
    if (!views) return Error{views.error().code, "views: " + views.error().message};
    parts.views = std::move(*views);
    if (parts.views->made_host_shared())
        spdlog::info(
            "views: the host's mounts were private; made them shared (as systemd does "
            "at boot) so that views see mounts made later");
    auto lanes = Lanes::open();
    if (!lanes) return lanes.error();
    parts.lanes = std::move(*lanes);
    parts.registry = std::make_unique<Registry>(std::move(*store), parts.views.get());
    parts.registry->use_quotas(options.quotas);
    parts.registry->use_lanes(parts.lanes.get());
    auto skipped = parts.registry->load();
    if (!skipped) return Error{skipped.error().code, "load tables: " + skipped.error().message};
    for (const auto& line : *skipped) spdlog::warn("store: {}", line);
    auto tracer = Tracer::start();
    if (!tracer) return Error{tracer.error().code, "tracer: " + tracer.error().message};
    parts.tracer = std::move(*tracer);
    return {};
}

// The BPF tracker (once pnsd can serve: a pnsd that cannot start pins nothing); without it
// pnsd still serves (no cgroup policies), and says why in parts.tracker_error. Fails only for
// a --bpf-dir that must not be used.
Status open_tracker(const Options& options, Parts& parts) {
    auto pin_dir = bpf::prepare_pin_dir(options.bpf_dir);
    if (!pin_dir) {
        if (pin_dir.error().code == EINVAL) return pin_dir.error();  // cannot hold pins
        parts.tracker_error = pin_dir.error().message;
        return {};
    }
    if (auto st = check_bpf_dir(options.bpf_dir); !st) return st;
    if (*pin_dir) {
        parts.mounted.push_back("bpffs at " + std::string(bpf::kBpffsMountPoint));
        spdlog::info(
            "pnsd: nothing was mounted at '{}'; mounted bpffs there (as systemd does at boot) "
            "for the pins",
            bpf::kBpffsMountPoint);
    }
    auto loaded = Tracker::open(options.bpf_dir);
    if (!loaded) {
        parts.tracker_error = loaded.error().message;
        return {};
    }
    auto& tracker = parts.tracker = std::move(*loaded);
    spdlog::info("tracker: {} under '{}'",
                 tracker->reused() ? "reusing the pinned tracker" : "loaded and pinned",
                 options.bpf_dir);
    if (tracker->members_capacity() < Tracker::members_for_kernel())
        spdlog::warn(
            "tracker: the pinned members map holds {} processes, fewer than the kernel now "
            "allows ({}; pid_max or threads-max were raised): children of members past it go "
            "untracked (status counts them) until the tracker is loaded anew (pnsd with the "
            "pins under '{}' removed), ignoring",
            tracker->members_capacity(), Tracker::members_for_kernel(), options.bpf_dir);
    return {};
}

// The LSM guard: only where the kernel runs BPF LSM programs; without it, deny entries are
// refused and locked namespaces are guarded by the tracker alone (escapes killed).
void open_guard(const Options& options, Parts& parts) {
    parts.guard_error =
        options.no_guard ? "disabled (--no-guard)" : "it needs the tracker, which is unavailable";
    if (parts.tracker && !options.no_guard) {
        if (auto loaded = Guard::open(*parts.tracker); loaded) {
            parts.guard = std::move(*loaded);
            parts.guard_error.clear();
            if (auto st = parts.guard->set_pnsd(::getpid()); !st)
                spdlog::error("guard: {}", st.error().message);
            spdlog::info("guard: {}", parts.guard->reused() ? "reusing the pinned LSM guard"
                                                            : "LSM guard loaded and pinned");
        } else {
            parts.guard_error = loaded.error().message;
        }
    }
    if (parts.tracker && options.no_guard) Guard::remove(*parts.tracker);
    // Expected on kernels without BPF LSM: said once, at info, and in pnsctl status.
    if (!parts.guard) spdlog::info("guard: unavailable: {}", parts.guard_error);
    parts.registry->use_guard(parts.guard.get(), parts.guard_error);
}

int serve(const Options& options) {
    if (::geteuid() != 0) {
        spdlog::error("pnsd: must run as root (it builds mount namespaces and joins processes)");
        return 1;
    }
    prepare_process();
    Parts parts;
    if (auto st = open_core(options, parts); !st) {
        spdlog::error("pnsd: {}", st.error().message);
        return 1;
    }
    if (auto st = open_tracker(options, parts); !st) {
        spdlog::error("pnsd: {}", st.error().message);
        return 1;
    }
    if (!parts.tracker) spdlog::error("tracker: unavailable: {}", parts.tracker_error);
    open_guard(options, parts);
    // Each view on its owner's lane; one that takes longer than this (a source that does not
    // answer) goes on while pnsd serves.
    parts.registry->adopt_views(std::chrono::seconds(30));

    Daemon daemon(options, std::move(parts));
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
