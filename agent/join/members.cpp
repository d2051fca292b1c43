#include "agent/join/members.hpp"
#include "agent/join/rules.hpp"
#include "agent/namespaces/auth.hpp"
#include "agent/bpf/guard.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "agent/proc.hpp"
#include "common/text.hpp"

namespace pns::agent {

namespace {

using nlohmann::json;

// A process pnsd is asked to move: the pidfd that names it for good, and the facts the rules
// (agent/join/rules.hpp) decide from, read while it did (checked after reading).
struct Target {
    std::shared_ptr<const UniqueFd> pidfd;
    join::JoinTarget facts;
};

// Gathers the facts about the process `pidfd` names (whose pid is `pid`); the rules decide.
// What cannot be read is left empty, with why in `unreadable`: a kernel thread has no
// program, a zombie no mount namespace or root any more, and the rules name them first.
Target inspect(pid_t pid, std::shared_ptr<const UniqueFd> pidfd) {
    Target target;
    target.pidfd = std::move(pidfd);
    join::JoinTarget& t = target.facts;
    t.pid = pid;
    std::string name = std::to_string(pid);
    auto unreadable = [&](const Error& error) {
        t.unreadable = error.code == ESRCH ? Error{ESRCH, "no process " + name} : error;
        return target;
    };
    if (pid <= 0 || pid == 1) return target;  // refused before anything is read
    if (!target.pidfd || !*target.pidfd) return unreadable(Error{ESRCH, ""});
    auto stat = proc::read_stat(pid);
    if (!stat) return unreadable(stat.error());
    t.kernel_thread = proc::is_kernel_thread(*stat);
    auto status = proc::read_status(pid);
    if (!status) return unreadable(status.error());
    auto identity = proc::read_identity(pid);
    if (!identity) return unreadable(Error{ESRCH, ""});
    t.label = name + " (" + status->name + ")";
    t.identity = *identity;
    t.state = status->state;
    t.tgid = status->tgid;
    t.ppid = status->ppid;
    t.seccomp = status->seccomp;
    t.pnsd_pid = ::getpid();

    // pnsd itself traces the processes it supervises (they may be detached). TracerPid names
    // the tracing thread. While a tracer detaches, TracerPid can briefly name the process's
    // real parent (the kernel resets the parent before it clears the ptrace flag): a tracer
    // other than pnsd counts only if it is still there a moment later.
    t.tracer = status->tracer;
    auto tracer_status = t.tracer ? proc::read_status(t.tracer) : Error{ESRCH, ""};
    t.traced_by_pnsd = tracer_status && tracer_status->tgid == ::getpid();
    for (int again = 0; again < 5 && t.tracer != 0 && !t.traced_by_pnsd; ++again) {
        ::usleep(200);
        auto reread = proc::read_status(pid);
        if (!reread) break;
        t.tracer = reread->tracer;
        tracer_status = t.tracer ? proc::read_status(t.tracer) : Error{ESRCH, ""};
        t.traced_by_pnsd = tracer_status && tracer_status->tgid == ::getpid();
    }
    if (tracer_status) t.tracer_name = tracer_status->name;

    auto optional = [](auto read) -> std::optional<std::decay_t<decltype(*read)>> {
        if (!read) return std::nullopt;
        return *read;
    };
    t.pnsd_pid_ns = optional(proc::namespace_inode(::getpid(), "pid"));
    t.pnsd_user_ns = optional(proc::namespace_inode(::getpid(), "user"));
    t.pid_ns = optional(proc::namespace_inode(pid, "pid"));
    t.root = optional(proc::read_link(pid, "root"));
    t.mnt = optional(proc::namespace_inode(pid, "mnt"));
    // All of the above was read while `pid` named the process of the pidfd.
    t.alive = proc::pidfd_alive(target.pidfd->get());
    return target;
}

// What a join needs to know besides: where the index of views places the process (the view
// its mount namespace is, the satellite whose user namespace it is in), and its user's
// primary group (from the user database).
void add_join_facts(join::JoinTarget& t, const Views::Index& index) {
    if (!join::runs_as_root(t.identity)) t.primary_gid = auth::primary_gid(t.identity.uids[1]);
    if (auto loc = t.mnt ? index.mnt.find(*t.mnt) : index.mnt.end(); loc != index.mnt.end())
        t.view = join::ViewPlace{loc->second.name, loc->second.uid};
    if (auto sat = index.user.find(t.identity.user_ns); sat != index.user.end())
        t.user_view = join::ViewPlace{sat->second.name, sat->second.uid};
}

std::string comm_of(pid_t pid) {
    auto status = proc::read_status(pid);
    return status ? status->name : std::string();
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

Members::Members(const Registry& registry, Views& views, Tracer& tracer, Tracker* tracker,
                 Answer answer, Push push)
    : registry_(registry),
      views_(views),
      tracer_(tracer),
      tracker_(tracker),
      answer_(std::move(answer)),
      push_(std::move(push)) {}

void Members::publish(const std::string& kind, pid_t pid, const std::string& comm,
                      const std::string& ns, const std::string& detail) {
    if (watchers_.empty()) return;
    auto status = proc::read_status(pid);
    uid_t uid = status ? status->uids[1] : static_cast<uid_t>(-1);
    const Namespace* n = ns.empty() ? nullptr : registry_.lookup(ns);
    json event = {{"event", kind},
                  {"pid", pid},
                  {"comm", comm},
                  {"namespace", ns},
                  {"time", unix_seconds(std::chrono::system_clock::now())}};
    if (!detail.empty()) event["detail"] = detail;
    std::erase_if(watchers_, [&](const Watcher& w) {
        bool may = w.caller.is_root() || w.caller.uid == uid || (n && n->owner == w.caller.uid);
        return may && !push_(w.ticket, event);
    });
}

void Members::sync_views() {
    auto index = views_.index();
    std::map<std::string, std::uint32_t> primary;
    names_.clear();
    for (const auto& [ino, loc] : index.mnt) {
        if (loc.uid != 0) continue;
        primary[loc.name] = static_cast<std::uint32_t>(ino);
        names_[static_cast<std::uint32_t>(ino)] = loc.name;
    }
    if (!tracker_) return;
    std::map<std::uint32_t, std::uint32_t> want;
    for (const auto& [ino, loc] : index.mnt)
        if (auto p = primary.find(loc.name); p != primary.end())
            want[static_cast<std::uint32_t>(ino)] = p->second;
    for (const auto& [mnt, ns] : tracker_->views())
        if (!want.contains(mnt)) (void)tracker_->remove_view(mnt);
    views_in_map_ = 0;
    for (const auto& [mnt, ns] : want) {
        if (auto st = tracker_->set_view(mnt, ns); !st)
            spdlog::error("tracker: {}", st.error().message);
        else
            ++views_in_map_;
    }
}

Status Members::room_for_view(uid_t uid) const {
    if (!tracker_) return {};
    std::size_t limit = uid == 0 ? PNS_MAX_VIEWS : PNS_MAX_VIEWS - kViewsRootReserve;
    if (views_in_map_ < limit) return {};
    return Error{EDQUOT, "the tracker's map of views is full" +
                             (uid == 0 ? std::string()
                                       : " for ordinary users (" + std::to_string(limit) + " of " +
                                             std::to_string(PNS_MAX_VIEWS) +
                                             " views; the rest is kept for root)")};
}

Result<std::shared_ptr<Destination>> Members::destination(const std::string& name, bool root,
                                                          uid_t uid, gid_t gid) {
    auto dest = std::make_shared<Destination>();
    dest->ns = name;
    dest->tracker = tracker_;
    dest->tracker_ns = primary_of(name);
    if (root) {
        auto mnt = views_.primary(name);
        if (!mnt) return Error(std::move(mnt).error());
        dest->mnt = std::move(*mnt);
        if (tracker_ && !tracker_->has_view(dest->tracker_ns))
            return Error{EDQUOT, "the tracker cannot take the view of " + quote(name) +
                                     " (its map of views is full)"};
        return dest;
    }
    if (!views_.has_satellite(name, uid))
        if (auto st = room_for_view(uid); !st) return st.error();
    auto sat = views_.satellite(name, uid, gid);
    if (!sat) return Error(std::move(sat).error());
    dest->user = std::move(sat->user);
    dest->mnt = std::move(sat->mnt);
    sync_views();  // the satellite may be new: the tracker must know its mount namespace
    // A member in a view the tracker does not know would look escaped at its first fork.
    struct stat st {};
    if (tracker_ && (::fstat(dest->mnt.get(), &st) != 0 ||
                     !tracker_->has_view(static_cast<std::uint32_t>(st.st_ino))))
        return Error{EDQUOT, "the tracker cannot take the view of " + quote(name) + " for uid " +
                                 std::to_string(uid) + " (its map of views is full)"};
    return dest;
}

void Members::with_destination(const Namespace& ns, bool root, uid_t uid, gid_t gid,
                               std::function<void(Result<std::shared_ptr<Destination>>)> then) {
    const std::string name = ns.name;
    if (root || !lanes_ || views_.has_satellite(name, uid))
        return then(destination(name, root, uid, gid));
    if (auto st = room_for_view(uid); !st) return then(Error(st.error()));
    // A satellite is made by a child that enters a user namespace the member's uid owns, so
    // that uid may stop it (kill_ok_by_cred: CAP_KILL in the namespace): made on the uid's own
    // lane, a stopped one holds up only that user's joins (and for a limited time at that).
    // Meanwhile the namespace may go and another of its name come (names are not identities):
    // the join was authorized for this one, and goes nowhere else.
    const std::string id = ns.id.hex();
    auto gone = [name] {
        return Error{ENOENT, "namespace " + quote(name) + " was removed meanwhile; not joined"};
    };
    lanes_->post(
        uid,
        [this, name, id, uid, gid, gone]() -> Status {
            if (auto made_for = views_.identity(name); !made_for || *made_for != id) return gone();
            auto sat = views_.satellite(name, uid, gid);
            if (!sat) return sat.error();
            return {};
        },
        [this, name, id, root, uid, gid, gone, then = std::move(then)](Status st) {
            if (!st) return then(Error(std::move(st).error()));
            const Namespace* now = registry_.lookup(name);
            if (!now || now->id.hex() != id) return then(gone());
            then(destination(name, root, uid, gid));
        });
}

std::uint32_t Members::primary_of(const std::string& name) const {
    auto inode = views_.primary_inode(name);
    return inode ? *inode : 0;
}

std::string Members::name_of(std::uint32_t ns) const {
    // Kept by sync_views, which runs whenever views come and go: tracker events are many, and
    // scanning every view's pins for each would cost in proportion to the namespaces.
    auto it = names_.find(ns);
    return it == names_.end() ? std::string() : it->second;
}

void Members::let_go(const UniqueFd& pidfd, pid_t pid, Held held, const std::string& name,
                     const std::string& why) {
    spdlog::info("policy: {} left where it is, not joined to {}: {}", pid, quote(name), why);
    bool under_way = false;
    for (auto& [request, out] : outstanding_)
        if (out.kind == Outstanding::Kind::kPolicy && out.pid == pid) {
            // The tracer sends the held SIGSTOP again when it detaches: the SIGCONT must come
            // after that, when this join ends (on_tracer_events), or the process stays stopped.
            out.let_go = out.let_go || held == Held::kAtExec;
            under_way = true;
        }
    if (tracker_) {
        auto index = views_.index();
        auto mnt = proc::namespace_inode(pid, "mnt");
        auto loc = mnt ? index.mnt.find(*mnt) : index.mnt.end();
        if (loc != index.mnt.end()) {
            pns_member member{primary_of(loc->second.name), PNS_STATE_MEMBER, 0};
            if (auto st = tracker_->set_member(pid, member); !st)
                spdlog::error("tracker: {}", st.error().message);
        } else {
            (void)tracker_->remove_member(pid);
        }
    }
    if (held == Held::kAtExec && !under_way) (void)proc::signal_pidfd(pidfd.get(), SIGCONT);
    publish("refused", pid, comm_of(pid), name, "cgroup policy: " + why);
}

void Members::forget_namespace(const std::string& name) {
    std::erase_if(records_, [&](const auto& entry) { return entry.second.ns == name; });
}

void Members::join_for_policy(pid_t pid, const std::string& matched, std::uint64_t cgroup,
                              Held held) {
    // A pid read from cgroup.procs: the process is named by a pidfd from now on.
    auto pidfd = proc::open_pidfd(pid);
    if (!pidfd) {
        spdlog::debug("policy: {} not joined to {}: it is gone", pid, quote(matched));
        return;
    }
    join_for_policy(std::make_shared<const UniqueFd>(std::move(*pidfd)), pid, matched, cgroup,
                    held);
}

void Members::join_for_policy(std::shared_ptr<const UniqueFd> pidfd, pid_t pid,
                              const std::string& matched, std::uint64_t cgroup, Held held) {
    // The policy's namespace as it is now, by identity: a policy that went with its namespace
    // never joins anyone to a later namespace of the same name.
    const Namespace* ns = policy_namespace_ ? policy_namespace_(cgroup) : registry_.lookup(matched);
    if (!ns) return let_go(*pidfd, pid, held, matched, "the policy that matched it is gone");
    const std::string name = ns->name;
    auto give_up = [pidfd, pid, held, name](const std::string& why) {
        if (held == Held::kAtExec) {
            // It exec'd in a policy cgroup and cannot be joined: it must not run outside.
            (void)proc::signal_pidfd(pidfd->get(), SIGKILL);
            spdlog::warn("policy: {} killed: held at exec for {} and {}", pid, quote(name), why);
        } else {
            spdlog::warn("policy: {} not joined to {}: {}", pid, quote(name), why);
        }
    };
    Target target = inspect(pid, pidfd);
    join::JoinTarget& t = target.facts;
    add_join_facts(t, views_.index());
    // A join of it under way (it entered the cgroup, then exec'd) may have made it enter the
    // view already, but the tracer has not let it go: that join must send the SIGCONT, after
    // it has detached (and sent again the SIGSTOP it held), or the process stays stopped.
    t.policy_join_under_way =
        std::any_of(outstanding_.begin(), outstanding_.end(), [&](const auto& entry) {
            return entry.second.kind == Outstanding::Kind::kPolicy && entry.second.pid == pid;
        });
    // A process not the owner's at all is left where it is (held: let go); the owner's own
    // that cannot join as it is falls under the policy's promise to its owner, as any join
    // that cannot be made (held: killed).
    const join::JoinCaller by{.purpose = join::JoinCaller::Purpose::kPolicy,
                              .owner_gid = auth::primary_gid(ns->owner)};
    auto plan = join::check_join(t, *ns, by);
    if (!plan) return give_up(plan.error().message);
    if (plan->kind == join::JoinPlan::Kind::kLeave)
        return let_go(*pidfd, pid, held, name, plan->why);
    if (plan->kind == join::JoinPlan::Kind::kAlready) {
        set_record(pid, name, "member");
        if (held == Held::kAtExec && tracker_) {
            // Already in the view (joined by other means between its exec and now): the map's
            // entry goes from held to member before it is let go.
            pns_member member{primary_of(name), PNS_STATE_MEMBER, cgroup};
            if (auto st = tracker_->set_member(pid, member); !st)
                spdlog::error("tracker: {}", st.error().message);
        }
        // Only if it is stopped: a pnsd killed right after it let the process go leaves the
        // map saying held, and a running process gets no SIGCONT it did not ask for.
        if (held == Held::kAtExec && t.state == 'T')
            (void)proc::signal_pidfd(pidfd->get(), SIGCONT);
        return;
    }
    const bool root = plan->kind == join::JoinPlan::Kind::kPrimary;
    with_destination(
        *ns, root, plan->uid, plan->gid,
        [this, give_up, pid, name, held, cgroup, target_pidfd = target.pidfd,
         identity = t.identity](Result<std::shared_ptr<Destination>> made) {
            if (!made) return give_up(made.error().message);
            auto dest = std::move(*made);
            // A join already under way for it (it entered the cgroup, then exec'd): the tracer
            // merges the two; only the later request is reported.
            std::erase_if(outstanding_, [&](const auto& entry) {
                return entry.second.kind == Outstanding::Kind::kPolicy && entry.second.pid == pid;
            });
            std::uint64_t request = ++next_request_;
            outstanding_[request] = Outstanding{.kind = Outstanding::Kind::kPolicy,
                                                .pid = pid,
                                                .ns = name,
                                                .pidfd = target_pidfd,
                                                .held = held,
                                                .cgroup = cgroup};
            dest->cgroup = cgroup;
            set_record(pid, name, held == Held::kAtExec ? "held" : "pending");
            tracer_.join(request, pid, target_pidfd, identity, std::move(dest), held);
        });
}

// A tracker event names a process by its tgid only, and pnsd reads it later: by then that
// process may have exited and its pid been given to another. So a pidfd is opened at once and
// checked to name the very process of the event: by its start time, which the event carries
// (bpf/tracker.bpf.c). An event without one (from another build's programs, while pnsd
// upgrades them) is checked against the members map instead.
Result<std::shared_ptr<const UniqueFd>> Members::open_tracked(const pns_event& event) const {
    auto tgid = static_cast<pid_t>(event.tgid);
    if (event.start_time == 0) {
        std::uint32_t state = event.kind == PNS_EVENT_HELD     ? PNS_STATE_HELD
                              : event.kind == PNS_EVENT_ESCAPE ? PNS_STATE_ESCAPED
                                                               : PNS_STATE_PENDING;
        return open_tracked(tgid, state);
    }
    auto pidfd = proc::open_pidfd_started(tgid, event.start_time);
    if (!pidfd) return Error(std::move(pidfd).error());
    return std::make_shared<const UniqueFd>(std::move(*pidfd));
}

// The tracker deletes a tgid's entry when that process exits (bpf/tracker.bpf.c: on_exit,
// before its pid can be reused), and a process that takes the pid afterwards has an entry only
// if it became tracked itself: an entry still there once the pidfd is open is about the
// process the pidfd names.
Result<std::shared_ptr<const UniqueFd>> Members::open_tracked(pid_t tgid,
                                                              std::uint32_t state) const {
    auto pidfd = proc::open_pidfd(tgid);
    if (!pidfd) return Error(std::move(pidfd).error());
    auto entry = tracker_ ? tracker_->member(tgid) : std::nullopt;
    if (!entry || entry->state != state)
        return Error{ESRCH, "process " + std::to_string(tgid) + " is gone"};
    return std::make_shared<const UniqueFd>(std::move(*pidfd));
}

void Members::on_tracker_events() {
    if (!tracker_) return;
    std::vector<pns_event> events;
    tracker_->drain([&](const pns_event& e) { events.push_back(e); });
    for (const auto& e : events) {
        auto tgid = static_cast<pid_t>(e.tgid);
        std::string comm(e.comm, strnlen(e.comm, sizeof e.comm));
        switch (e.kind) {
            case PNS_EVENT_ENTERED:
            case PNS_EVENT_HELD: {
                // The view the tracker matched, for the log: which namespace the process
                // joins is the one the cgroup's policy names now (join_for_policy), so an event
                // that waited while its namespace went, or whose view's inode a later view got,
                // joins nobody to the wrong namespace (a held one is let go).
                std::string name = name_of(e.ns);
                auto pidfd = open_tracked(e);
                if (!pidfd) {
                    // Gone (a held process can only have been killed): nothing to join, and
                    // whatever has its pid now is left alone.
                    spdlog::debug("policy: {} ({}) is gone before pnsd could join it", tgid, comm);
                    break;
                }
                spdlog::debug("policy: {} ({}) {} {}", tgid, comm,
                              e.kind == PNS_EVENT_HELD ? "held at exec for" : "entered a cgroup of",
                              quote(name));
                publish(e.kind == PNS_EVENT_HELD ? "held" : "entered", tgid, comm, name);
                join_for_policy(std::move(*pidfd), tgid, name, e.cgroup,
                                e.kind == PNS_EVENT_HELD ? Held::kAtExec : Held::kNo);
                break;
            }
            case PNS_EVENT_REFUSED: {
                std::string name = name_of(e.ns);
                std::string what = refusal_name(e.refused);
                if (e.refused == PNS_REFUSED_OPEN || e.refused == PNS_REFUSED_PRIVILEGE ||
                    e.refused == PNS_REFUSED_OUTSIDE || e.refused == PNS_REFUSED_RECEIVE)
                    what += " of inode " + std::to_string(e.inode);
                // A member looping on a refused call must not fill the journal: one line a
                // second per namespace at info, the rest at debug (status counts them all, and
                // `pnsctl events` shows each).
                auto now = std::chrono::steady_clock::now();
                auto& last = last_refusal_logged_[e.ns];
                bool loud = now - last >= std::chrono::seconds(1);
                if (loud) last = now;
                spdlog::log(loud ? spdlog::level::info : spdlog::level::debug,
                            "guard: {} ({}), member of {}: refused {}", tgid, comm, quote(name),
                            what);
                publish("refused", tgid, comm, name, what);
                break;
            }
            case PNS_EVENT_EXIT:
                // The record of a later process with the same pid stays.
                if (auto rec = records_.find(tgid);
                    rec != records_.end() &&
                    (e.start_time == 0 ||
                     rec->second.start_time == proc::start_ticks(e.start_time)))
                    records_.erase(rec);
                publish("exit", tgid, comm, "");
                break;

            case PNS_EVENT_ESCAPE: {
                std::string name = name_of(e.ns);
                const Namespace* ns = name.empty() ? nullptr : registry_.lookup(name);
                if (ns && ns->locked) {
                    auto pidfd = open_tracked(e);
                    if (!pidfd) {
                        // It exited: whatever has its pid now is not what escaped.
                        spdlog::warn(
                            "members: {} ({}) left the view of locked namespace {} and is gone",
                            tgid, comm, quote(name));
                        publish("escape", tgid, comm, name, "gone");
                        break;
                    }
                    (void)proc::signal_pidfd((*pidfd)->get(), SIGKILL);
                    spdlog::warn("members: {} ({}) left the view of locked namespace {}: killed",
                                 tgid, comm, quote(name));
                    publish("escape", tgid, comm, name, "killed: the namespace is locked");
                } else {
                    spdlog::warn("members: {} ({}) left the view of {} by itself", tgid, comm,
                                 quote(name));
                    publish("escape", tgid, comm, name);
                }
                records_.erase(tgid);
                break;
            }
            default:
                break;
        }
    }
}

void Members::finish_holds() {
    if (!tracker_) return;
    for (const auto& entry : tracker_->members()) {
        const pid_t tgid = entry.first;  // (a structured binding cannot be captured in C++20)
        const pns_member& member = entry.second;
        if (member.state != PNS_STATE_HELD) continue;
        bool under_way = std::any_of(outstanding_.begin(), outstanding_.end(), [&](const auto& e) {
            return e.second.kind == Outstanding::Kind::kPolicy && e.second.pid == tgid;
        });
        if (under_way) continue;
        auto pidfd = open_tracked(tgid, PNS_STATE_HELD);
        if (!pidfd) continue;                   // exited since the map was read
        std::string name = name_of(member.ns);  // the policy decides (join_for_policy)
        spdlog::info("policy: {} still held at exec for {}: joining it", tgid, quote(name));
        join_for_policy(std::move(*pidfd), tgid, name, member.cgroup, Held::kAtExec);
    }
}

Reply Members::watch(const Caller& caller, Server::Ticket ticket) {
    if (connected_)
        std::erase_if(watchers_, [&](const Watcher& w) { return !connected_(w.ticket); });
    if (!caller.is_root() &&
        std::count_if(watchers_.begin(), watchers_.end(), [&](const Watcher& w) {
            return w.caller.uid == caller.uid;
        }) >= static_cast<std::ptrdiff_t>(kMaxWatchersPerUser))
        return Error{EDQUOT, "uid " + std::to_string(caller.uid) + " already has " +
                                 std::to_string(kMaxWatchersPerUser) +
                                 " event streams open, the most one user may have"};
    watchers_.push_back(Watcher{ticket, caller});
    if (!push_(ticket, json{{"watching", true}})) watchers_.pop_back();
    return Reply::later();
}

Result<json> Members::list_processes(const Caller& caller, const json& args) {
    prune();
    if (auto it = args.find("name"); it != args.end() && !it->is_null()) {
        auto name = protocol::get_string(args, "name");
        if (!name) return Error(std::move(name).error());
        if (!registry_.lookup(*name)) return Error{ENOENT, "no namespace " + quote(*name)};
        return json{{"processes", processes(caller, &*name)}};
    }
    return json{{"processes", processes(caller, nullptr)}};
}

namespace {

// The process a request names, as a pidfd from now on: the caller's own (taken when it
// connected), or the one `pid` names now.
Result<std::shared_ptr<const UniqueFd>> pidfd_for(const Caller& caller, pid_t pid) {
    if (pid == caller.pid) {
        if (!caller.pidfd) return Error{ESRCH, "the caller is gone"};
        return caller.pidfd;
    }
    auto pidfd = proc::open_pidfd(pid);
    if (!pidfd) return Error(std::move(pidfd).error());
    return std::make_shared<const UniqueFd>(std::move(*pidfd));
}

}  // namespace

Reply Members::join(const Caller& caller, const json& args, Server::Ticket ticket) {
    prune();
    pid_t pid = caller.pid;
    if (auto it = args.find("pid"); it != args.end() && !it->is_null()) {
        if (!it->is_number_integer()) return Error{EPROTO, "\"pid\" is not a number"};
        auto value = it->get<std::int64_t>();
        if (value <= 0 || value > INT32_MAX) return Error::invalid("no process " + it->dump());
        pid = static_cast<pid_t>(value);
    }
    auto pidfd = pidfd_for(caller, pid);
    if (!pidfd) return Error(std::move(pidfd).error());
    Target target = inspect(pid, std::move(*pidfd));
    join::JoinTarget& t = target.facts;
    if (auto rec = records_.find(pid); rec != records_.end()) t.record = rec->second.state;
    const join::JoinCaller by{
        .purpose = join::JoinCaller::Purpose::kAttach, .uid = caller.uid, .gid = caller.gid};
    // The process's refusals come before any about the namespace named (check_join checks
    // them again, from the same facts).
    if (auto st = join::check_process(t, by); !st) return st.error();

    auto index = views_.index();
    std::string name;
    if (auto it = args.find("name"); it != args.end() && !it->is_null()) {
        auto given = protocol::get_string(args, "name");
        if (!given) return Error(std::move(given).error());
        name = *given;
    } else {
        // Without a name: the namespace the caller itself is in.
        auto own = proc::namespace_inode(caller.pid, "mnt");
        if (own && !caller.alive()) own = Error{ESRCH, "the caller is gone"};
        auto loc = own ? index.mnt.find(*own) : index.mnt.end();
        if (loc == index.mnt.end())
            return Error::invalid("the caller is not in a pns namespace; name one (--ns NAME)");
        name = loc->second.name;
    }
    if (auto st = validate_name(name); !st) return st.error();
    const Namespace* ns = registry_.lookup(name);
    if (!ns) return Error{ENOENT, "no namespace " + quote(name)};

    add_join_facts(t, index);
    auto plan = join::check_join(t, *ns, by);
    if (!plan) return Error(std::move(plan).error());
    if (plan->kind == join::JoinPlan::Kind::kAlready) {
        set_record(pid, name, "member");
        return json{{"pid", pid}, {"name", name}, {"state", "member"}, {"already", true}};
    }
    const bool root = plan->kind == join::JoinPlan::Kind::kPrimary;
    with_destination(
        *ns, root, plan->uid, plan->gid,
        [this, ticket, pid, name, target_pidfd = target.pidfd,
         identity = t.identity](Result<std::shared_ptr<Destination>> made) {
            if (!made) return answer_(ticket, Error(std::move(made).error()));
            std::uint64_t request = ++next_request_;
            outstanding_[request] = Outstanding{.ticket = ticket,
                                                .kind = Outstanding::Kind::kJoin,
                                                .pid = pid,
                                                .ns = name,
                                                .pidfd = target_pidfd};
            tracer_.join(request, pid, target_pidfd, identity, std::move(*made));
        });
    return Reply::later();
}

Reply Members::detach(const Caller& caller, const json& args, Server::Ticket ticket) {
    prune();
    auto it = args.find("pid");
    if (it == args.end() || !it->is_number_integer()) return Error{EPROTO, "\"pid\" is missing"};
    auto value = it->get<std::int64_t>();
    if (value <= 0 || value > INT32_MAX) return Error::invalid("no process " + it->dump());
    auto pid = static_cast<pid_t>(value);
    auto pidfd = pidfd_for(caller, pid);
    if (!pidfd) return Error(std::move(pidfd).error());
    Target target = inspect(pid, std::move(*pidfd));
    const join::JoinTarget& t = target.facts;
    const join::JoinCaller by{
        .purpose = join::JoinCaller::Purpose::kDetach, .uid = caller.uid, .gid = caller.gid};
    if (auto st = join::check_process(t, by); !st) return st.error();

    if (auto rec = records_.find(pid); rec != records_.end() && rec->second.state != "member") {
        // Not in the view yet: supervision ends, the process goes on where it is.
        tracer_.release(pid);
        records_.erase(rec);
        return json{{"pid", pid}, {"state", "released"}};
    }
    auto index = views_.index();
    auto loc = index.mnt.find(*t.mnt);
    if (loc == index.mnt.end()) return Error{ENOENT, t.label + " is not in a pns namespace"};
    if (!join::runs_as_root(t.identity))
        return Error{EPERM, t.label + " is in " +
                                join::describe({loc->second.name, loc->second.uid}) +
                                ", inside a user namespace of its own, which the kernel lets "
                                "no process leave; start the program again outside the "
                                "namespace instead"};
    auto dest = std::make_shared<Destination>();
    dest->ns = "(host)";
    dest->mnt.reset(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
    if (!dest->mnt) return sys_error("open pnsd's mount namespace");
    std::uint64_t request = ++next_request_;
    outstanding_[request] = Outstanding{.ticket = ticket,
                                        .kind = Outstanding::Kind::kDetach,
                                        .pid = pid,
                                        .ns = loc->second.name,
                                        .pidfd = target.pidfd};
    tracer_.join(request, pid, target.pidfd, t.identity, std::move(dest));
    return Reply::later();
}

void Members::answer(std::uint64_t request, const Result<json>& result) {
    auto it = outstanding_.find(request);
    if (it == outstanding_.end() || it->second.answered) return;
    it->second.answered = true;
    answer_(it->second.ticket, result);
}

void Members::prune() {
    std::erase_if(records_, [](const auto& entry) {
        auto stat = proc::read_stat(entry.first);
        return !stat || stat->start_time != entry.second.start_time;
    });
}

void Members::set_record(pid_t pid, const std::string& ns, const std::string& state) {
    auto stat = proc::read_stat(pid);
    Record& rec = records_[pid];
    if (rec.ns != ns || rec.state != state) rec.since = std::chrono::system_clock::now();
    rec.ns = ns;
    rec.state = state;
    rec.start_time = stat ? stat->start_time : 0;
}

// A join (or detach) the tracer completed: records, events and the answer.
void Members::on_joined(TraceEvent& ev, const Outstanding& out, const std::string& ns,
                    const std::string& label) {
    json result = {{"pid", ev.pid}, {"name", ns}};
    if (out.kind == Outstanding::Kind::kPolicy) {
        // It joined as it was when this join was authorized; refused since (an
        // exec, held again): continued now that the tracer has let it go.
        if (out.let_go && out.pidfd)
            (void)proc::signal_pidfd(out.pidfd->get(), SIGCONT);
        set_record(ev.pid, ns, "member");
        const bool held = out.held == Held::kAtExec;
        spdlog::info("policy: {} joined {}{}", label, quote(ns),
                     held ? " (it was held at exec)" : "");
        publish(held ? "joined-held" : "joined", ev.pid, comm_of(ev.pid), ns,
                "cgroup policy");
        outstanding_.erase(ev.request);
        return;
    }
    if (out.kind == Outstanding::Kind::kDetach) {
        if (tracker_) (void)tracker_->remove_member(ev.pid);
        records_.erase(ev.pid);
        result["state"] = "detached";
        spdlog::info("members: {} left {} for the host view", label, quote(ns));
    } else {
        set_record(ev.pid, ns, "member");
        result["state"] = "member";
        spdlog::info("members: {} joined {}", label, quote(ns));
        publish("joined", ev.pid, comm_of(ev.pid), ns);
        // Said, not swallowed: a member the tracker does not know is not guarded
        // and its escapes go unseen.
        if (tracker_ && !tracker_->has_member(ev.pid) && ::kill(ev.pid, 0) == 0) {
            ev.message += std::string(ev.message.empty() ? "" : "; ") +
                          "the tracker could not record it (its members map is "
                          "full?): it is in the view but not tracked";
        }
    }
    if (!ev.message.empty()) {
        result["warning"] = ev.message;
        spdlog::warn("members: {}: {}", label, ev.message);
    }
    answer(ev.request, result);
    outstanding_.erase(ev.request);
}

// A join the tracer could not make: a process held at exec for a policy is continued (refused
// meanwhile) or killed (it may run nothing outside the view); the caller is told why.
void Members::on_failed(const TraceEvent& ev, const Outstanding& out, const std::string& ns,
                    const std::string& label) {
    if (out.kind == Outstanding::Kind::kPolicy && out.let_go && out.pidfd) {
        // refused meanwhile: left where it is
        (void)proc::signal_pidfd(out.pidfd->get(), SIGCONT);
    } else if (out.kind == Outstanding::Kind::kPolicy && out.held == Held::kAtExec &&
               out.pidfd) {
        (void)proc::signal_pidfd(out.pidfd->get(), SIGKILL);
        spdlog::warn("policy: {} killed: held at exec for {} and could not join: {}",
                     label, quote(ns), ev.message);
    }
    if (auto rec = records_.find(ev.pid);
        rec != records_.end() && rec->second.state != "member")
        records_.erase(rec);
    spdlog::info("members: {} did not join {}: {}", label, quote(ns), ev.message);
    publish("failed", ev.pid, comm_of(ev.pid), ns, ev.message);
    answer(ev.request, Error{ev.code ? ev.code : EIO, label + ": " + ev.message});
    outstanding_.erase(ev.request);
}

void Members::on_tracer_events() {
    using Kind = TraceEvent::Kind;
    for (auto& ev : tracer_.take_events()) {
        auto it = outstanding_.find(ev.request);
        Outstanding* out = it == outstanding_.end() ? nullptr : &it->second;
        std::string ns = out ? out->ns : std::string();
        if (ns.empty())
            if (auto rec = records_.find(ev.pid); rec != records_.end()) ns = rec->second.ns;
        std::string label = std::to_string(ev.pid);
        if (auto st = proc::read_status(ev.pid); st) label += " (" + st->name + ")";
        switch (ev.kind) {
            case Kind::kJoined:
                if (out) on_joined(ev, *out, ns, label);  // else merged into a later request
                break;
            case Kind::kSupervising:
                set_record(ev.pid, ns, "supervised");
                spdlog::info(
                    "members: {} is multithreaded: supervised for {}; it joins at its "
                    "next exec",
                    label, quote(ns));
                publish("supervising", ev.pid, comm_of(ev.pid), ns);
                answer(ev.request, json{{"pid", ev.pid}, {"name", ns}, {"state", "supervised"}});
                break;
            case Kind::kPending:
                set_record(ev.pid, ns, "pending");
                answer(ev.request, json{{"pid", ev.pid},
                                        {"name", ns},
                                        {"state", "pending"},
                                        {"warning", ev.message}});
                break;
            case Kind::kFailed:
                if (out) on_failed(ev, *out, ns, label);
                break;
            case Kind::kExecJoined:
                set_record(ev.pid, ns, "member");
                spdlog::info("members: {} joined {} at its exec", label, quote(ns));
                publish("joined", ev.pid, comm_of(ev.pid), ns, "at its exec");
                outstanding_.erase(ev.request);
                break;
            case Kind::kEnded:
                records_.erase(ev.pid);
                spdlog::info("members: supervision of {} for {} ended: {}", label, quote(ns),
                             ev.message);
                publish("supervision-ended", ev.pid, comm_of(ev.pid), ns, ev.message);
                outstanding_.erase(ev.request);
                break;
            case Kind::kChildJoined:
                if (!ev.message.empty())
                    spdlog::warn("members: {}: {}", label, ev.message);
                else
                    spdlog::debug("members: child {} joined {}", label, quote(ns));
                break;
            case Kind::kChildFailed:
                spdlog::warn("members: child {} could not join {}: {}", label, quote(ns),
                             ev.message);
                break;
        }
    }
}

json Members::processes(const Caller& caller, const std::string* only) const {
    auto index = views_.index();
    json rows = json::array();
    std::map<pid_t, bool> seen;
    auto visible = [&](const std::string& ns, uid_t uid) {
        if (only && ns != *only) return false;
        if (caller.is_root() || uid == caller.uid) return true;
        const Namespace* n = registry_.lookup(ns);
        return n && n->owner == caller.uid;
    };
    for (const auto& process : proc::processes_by_mount_namespace()) {
        const pid_t pid = process.pid;
        auto loc = index.mnt.find(process.mnt);
        auto rec = records_.find(pid);
        bool recorded = rec != records_.end();
        if (loc == index.mnt.end() && !recorded) continue;
        auto status = proc::read_status(pid);
        auto stat = proc::read_stat(pid);
        if (!status || !stat) continue;
        if (recorded && rec->second.start_time != stat->start_time) recorded = false;
        if (loc == index.mnt.end() && !recorded) continue;
        std::string ns = loc != index.mnt.end() ? loc->second.name : rec->second.ns;
        if (!visible(ns, status->uids[1])) continue;
        json row = {{"pid", pid},
                    {"comm", status->name},
                    {"uid", status->uids[1]},
                    {"namespace", ns},
                    {"cgroup", proc::cgroup_path(pid)}};
        if (loc != index.mnt.end()) {
            row["view"] = loc->second.uid == 0 ? std::string("primary")
                                               : "uid " + std::to_string(loc->second.uid);
            row["state"] = "member";
        } else {
            row["view"] = nullptr;
            row["state"] = rec->second.state;
        }
        if (recorded) {
            if (loc == index.mnt.end() || rec->second.ns == ns)
                row["since"] = unix_seconds(rec->second.since);
            row["joined_by_pnsd"] = true;
        } else {
            row["joined_by_pnsd"] = false;  // inherited the view from its parent
        }
        rows.push_back(std::move(row));
        seen[pid] = true;
    }
    if (!tracker_) return rows;
    // The tracker knows members pnsd has not joined itself (children, policy cgroups) and
    // the ones on their way in (pending, held at exec) or out (escaped).
    std::map<pid_t, pns_member> tracked;
    for (const auto& [tgid, m] : tracker_->members()) tracked[tgid] = m;
    for (auto& row : rows) {
        auto it = tracked.find(row["pid"].get<pid_t>());
        row["tracked"] = it != tracked.end();
        if (it != tracked.end() && it->second.cgroup) row["cgroup_id"] = it->second.cgroup;
    }
    for (const auto& [tgid, m] : tracked) {
        if (seen.contains(tgid) || m.state == PNS_STATE_MEMBER) continue;
        std::string ns = name_of(m.ns);
        auto status = proc::read_status(tgid);
        if (!status || ns.empty() || !visible(ns, status->uids[1])) continue;
        const char* state = m.state == PNS_STATE_PENDING ? "pending"
                            : m.state == PNS_STATE_HELD  ? "held"
                                                         : "escaped";
        json row = {{"pid", tgid},     {"comm", status->name},   {"uid", status->uids[1]},
                    {"namespace", ns}, {"view", nullptr},        {"state", state},
                    {"tracked", true}, {"joined_by_pnsd", false}};
        if (m.cgroup) row["cgroup_id"] = m.cgroup;
        row["cgroup"] = proc::cgroup_path(tgid);
        rows.push_back(std::move(row));
    }
    return rows;
}

json Members::list(const Caller& caller, const std::string& name) const {
    return processes(caller, &name);
}

}  // namespace pns::agent
