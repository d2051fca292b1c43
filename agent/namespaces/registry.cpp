#include "agent/namespaces/registry.hpp"

#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <vector>

#include <spdlog/spdlog.h>

#include "agent/namespaces/auth.hpp"
#include "agent/proc.hpp"
#include "common/ops.hpp"
#include "common/text.hpp"

namespace pns::agent {

namespace {

using nlohmann::json;
using protocol::get_bool;
using protocol::get_string;
namespace op = protocol::op;

// The work of adopting a view at start (Work::op), beside the changes requests make.
constexpr char kAdopt[] = "adopt";

// Resolves "owner" as a user name or a decimal uid.
Result<uid_t> resolve_owner(const json& value) {
    if (value.is_number_unsigned()) {
        auto uid = value.get<std::uint64_t>();
        if (uid >= UINT32_MAX)
            return Error::invalid("uid " + std::to_string(uid) + " is out of range");
        return static_cast<uid_t>(uid);
    }
    if (!value.is_string()) return Error{EPROTO, "\"owner\" is not a user name or a uid"};
    auto name = value.get<std::string>();
    if (name.empty()) return Error::invalid("owner is empty");
    if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (name.size() > 10) return Error::invalid("uid " + quote(name) + " is out of range");
        auto uid = std::stoull(name);
        if (uid >= UINT32_MAX) return Error::invalid("uid " + quote(name) + " is out of range");
        return static_cast<uid_t>(uid);
    }
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    int err = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (err != 0) return Error::from_errno(err, "look up user " + quote(name));
    if (!found) return Error::invalid("no user named " + quote(name));
    return pw.pw_uid;
}

std::string user_name(uid_t uid) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) return pw.pw_name;
    return std::to_string(uid);
}

// An optional "generation" the client expects the namespace to be at (compare-and-swap).
Status check_generation(const json& args, const Namespace& ns) {
    auto it = args.find("generation");
    if (it == args.end() || it->is_null()) return {};
    if (!it->is_number_unsigned()) return Error{EPROTO, "\"generation\" is not a number"};
    auto expected = it->get<std::uint64_t>();
    if (expected != ns.generation)
        return Error{ESTALE, "namespace " + quote(ns.name) + " is at generation " +
                                 std::to_string(ns.generation) + ", not " +
                                 std::to_string(expected) + "; nothing was changed"};
    return {};
}

Result<Table> parse_table_arg(const json& args) {
    auto text = get_string(args, "table");
    if (!text) return Error(std::move(text).error());
    return parse_table(*text);
}

// Sources are looked up as the requester, in its own view (DESIGN.md, decision 4).
Resolver resolver_of(const Caller& caller) {
    return Resolver{caller.uid, caller.gid, caller.pid, caller.pidfd ? caller.pidfd->get() : -1};
}

// Without a requester (pnsd starting), as the owner in the host's view.
Resolver owner_resolver(const Namespace& ns) {
    return Resolver{ns.owner, auth::primary_gid(ns.owner), 0, -1};
}

json edit_result(const Namespace& ns, bool changed) {
    return {{"name", ns.name},
            {"generation", ns.generation},
            {"entries", ns.table.entries.size()},
            {"changed", changed}};
}

}  // namespace

Result<std::vector<std::string>> Registry::load() {
    auto loaded = store_.load_all();
    if (!loaded) return Error(std::move(loaded).error());
    namespaces_.clear();
    held_.clear();
    for (auto& ns : loaded->namespaces) {
        held_[ns.name] = auth::holdings_of(ns.table);  // mounts: counted once its view is up
        namespaces_.emplace(ns.name, std::move(ns));
    }
    return std::move(loaded->skipped);
}

const Namespace* Registry::find_id(const NamespaceId& id) const {
    for (const auto& [name, ns] : namespaces_)
        if (ns.id == id) return &ns;
    return nullptr;
}

std::optional<Result<json>> Registry::when_free(
    const std::string& name, std::function<std::optional<Result<json>>()> start,
    Server::Ticket ticket) {
    if (!busy_.contains(name)) return start();
    // Behind the change under way, in order; started when it is over, and answered then.
    waiting_[name].push_back([this, start = std::move(start), ticket] {
        if (auto now = start()) answer_(ticket, *now);
    });
    return std::nullopt;
}

void Registry::release(const std::string& name) {
    busy_.erase(name);
    auto it = waiting_.find(name);
    while (it != waiting_.end() && !it->second.empty() && !busy_.contains(name)) {
        auto next = std::move(it->second.front());
        it->second.pop_front();
        next();  // may take the namespace again
        it = waiting_.find(name);
    }
    if (it != waiting_.end() && it->second.empty()) waiting_.erase(it);
}

void Registry::conclude(const WorkPtr& work, const Result<json>& result) {
    if (work->ticket) {
        if (result)
            spdlog::info("server: uid {} pid {} {} {}: ok", work->caller.uid, work->caller.pid,
                         quote(work->op), quote(work->name));
        else
            spdlog::log(result.error().code == EIO ? spdlog::level::err : spdlog::level::debug,
                        "server: uid {} pid {} {} {}: {}", work->caller.uid, work->caller.pid,
                        quote(work->op), quote(work->name), result.error().message);
        answer_(*work->ticket, result);
    } else if (!result) {
        spdlog::warn("views: view {}: {}", quote(work->name), result.error().message);
    }
    if (work->op == op::kNsCreate || work->op == op::kNsRm) changed_();
    release(work->name);
}

void Registry::realize(const WorkPtr& work, uid_t lane) {
    busy_.insert(work->name);
    lanes_->post(
        lane, [this, work] { return realize_on_lane(*work); },
        [this, work](Status st) { finish_realize(work, std::move(st)); });
}

Status Registry::realize_on_lane(Work& work) {
    const Resolver resolver =
        work.ticket ? resolver_of(work.caller) : owner_resolver(work.next);
    auto undo = [&] {
        if (work.before)
            (void)views_->realize(*work.before, owner_resolver(*work.before));
        else if (work.op == op::kNsCreate)
            (void)views_->destroy(work.name);
    };
    if (work.op == kAdopt) {
        // A view pinned for another namespace of this name (the runtime directory outlived a
        // state directory that was replaced, say) is not this one's: its processes keep it,
        // unmanaged, as after 'ns rm --force', and this namespace gets a view of its own.
        auto made_for = views_->identity(work.name);
        if (made_for && *made_for != work.next.id.hex()) {
            work.note = "the view was made for another namespace of that name (" + *made_for +
                        "); left to its processes, unmanaged";
            if (auto st = views_->destroy(work.name); !st) return st;
        }
        if (auto st = views_->realize(work.next, resolver); !st) return st;
        // Views made before namespaces had identities are this namespace's from now on.
        if (!made_for || *made_for != work.next.id.hex())
            if (auto st = views_->set_identity(work.name, work.next.id); !st) return st;
    } else {
        if (work.replace_left_view)
            if (auto st = views_->destroy(work.name); !st) return st;
        if (auto st = views_->realize(work.next, resolver); !st) {
            if (work.op == op::kNsCreate) (void)views_->destroy(work.name);
            return st;
        }
        if (work.op == op::kNsCreate)
            if (auto st = views_->set_identity(work.name, work.next.id); !st) {
                undo();
                return st;
            }
    }
    if (work.next.owner != 0) {
        // Mounts are known only once they are made: a table of few entries may clone large
        // trees. Counted in the kernel; the main thread takes them back if over the quota.
        auto made = views_->mounts_made(work.name);
        if (!made) {
            if (work.op != kAdopt) undo();
            return made.error();
        }
        work.mounts = *made;
    }
    if (guard_) {
        // Deny entries' files are looked up as the editor, in the view (at start: as the
        // owner, again, for an inode may have changed meanwhile).
        auto facts = views_->guard_facts(work.next, resolver);
        if (!facts) {
            if (work.op != kAdopt) undo();
            return facts.error();
        }
        work.facts = std::move(*facts);
    }
    return {};
}

void Registry::fail(const WorkPtr& work, Error error) {
    if (work->op != op::kNsCreate && work->op != kAdopt && work->before) {
        // The stored table goes back to what it was (it was stored before the view followed).
        if (auto back = store_.save(*work->before); !back)
            error = Error{EIO, error.message + "; and restoring the stored table failed: " +
                                   back.error().message};
    }
    conclude(work, Result<json>(std::move(error)));
}

void Registry::undo_and_fail(const WorkPtr& work, Error error) {
    if (work->op == op::kNsCreate) forget_guard(work->name);
    lanes_->post(
        work->caller.uid,
        [this, work]() -> Status {
            if (work->before)
                return views_->realize(*work->before, owner_resolver(*work->before));
            if (work->op == op::kNsCreate) return views_->destroy(work->name);
            return {};
        },
        [this, work, error = std::move(error)](Status undone) mutable {
            if (!undone)
                error = Error{EIO, error.message + "; and putting the view back failed: " +
                                       undone.error().message};
            fail(work, std::move(error));
        });
}

void Registry::finish_realize(const WorkPtr& work, Status status) {
    Work& w = *work;
    if (!status) {
        if (w.op == kAdopt)
            return conclude(work, Result<json>(Error(std::move(status).error())));
        return fail(work, std::move(status).error());
    }
    if (!w.note.empty()) spdlog::warn("views: view {}: {}", quote(w.name), w.note);
    const bool adopting = w.op == kAdopt;
    if (w.next.owner != 0 && !adopting) {
        auth::Holdings holds = auth::holdings_of(w.next.table);
        holds.mounts = w.mounts;
        if (auto st = auth::within_quota(w.caller, w.next.owner, held_by(w.next.owner, w.name),
                                         holds, quotas_);
            !st)
            return undo_and_fail(work, std::move(st).error());
    }
    if (w.facts) {
        if (auto st = guard(w.next, *w.facts); !st) {
            if (adopting)
                return conclude(work, Result<json>(Error{st.error().code,
                                                         "guard: " + st.error().message}));
            return undo_and_fail(work, std::move(st).error());
        }
    }
    if (w.op == op::kNsCreate) {
        // Stored last: a table pnsd cannot realize is refused before it is stored.
        if (auto st = store_.save(w.next); !st) return undo_and_fail(work, std::move(st).error());
        held_[w.name] = auth::holdings_of(w.next.table);
        held_[w.name].mounts = w.mounts;
        json result = summary(w.caller, w.next);
        namespaces_.emplace(w.name, w.next);
        return conclude(work, result);
    }
    auto it = namespaces_.find(w.name);
    if (it == namespaces_.end())  // cannot be: a removal waits for this change
        return conclude(work, Result<json>(Error{EIO, "namespace " + quote(w.name) + " vanished"}));
    if (adopting) {
        if (w.next.owner != 0) held_[w.name].mounts = w.mounts;
        return conclude(work, json::object());
    }
    it->second = w.next;
    held_[w.name] = auth::holdings_of(w.next.table);
    held_[w.name].mounts = w.mounts;
    conclude(work, edit_result(it->second, true));
}

void Registry::forget_guard(const std::string& name) {
    if (!guard_ || !views_) return;
    auto inode = views_->primary_inode(name);
    if (!inode) return;
    if (auto forgot = guard_->forget(*inode); !forgot)
        spdlog::warn("guard: forget {}: {}", quote(name), forgot.error().message);
}

Status Registry::guard_can_enforce(const Table& table) const {
    bool denies = std::any_of(table.entries.begin(), table.entries.end(),
                              [](const Entry& e) { return e.kind == EntryKind::kDeny; });
    if (denies && !guard_)
        return Error{EOPNOTSUPP,
                     "deny entries need the LSM guard, which is unavailable: " + guard_missing_};
    return {};
}

Status Registry::guard(const Namespace& ns, const Views::GuardFacts& facts) {
    if (!guard_) return {};
    std::uint32_t flags = 0;
    if (ns.locked) flags |= PNS_GUARD_LOCKED;
    if (facts.user_controlled) flags |= PNS_GUARD_NO_PRIVILEGE;
    if (!facts.denied.empty()) flags |= PNS_GUARD_DENIES;
    return guard_->set_rules(facts.ns, ns.owner, flags, facts.denied, facts.denied_names);
}

std::vector<std::string> Registry::members(const std::string& name) const {
    std::vector<std::string> found;
    if (!views_) return found;
    auto inodes = views_->namespace_inodes(name);
    if (!inodes || inodes->empty()) return found;
    for (const auto& process : proc::processes_by_mount_namespace()) {
        if (std::find(inodes->begin(), inodes->end(), process.mnt) == inodes->end()) continue;
        std::ifstream comm("/proc/" + std::to_string(process.pid) + "/comm");
        std::string name_of;
        std::getline(comm, name_of);
        found.push_back(std::to_string(process.pid) + " (" + name_of + ")");
    }
    return found;
}

void Registry::adopt_views(std::chrono::milliseconds patience) {
    if (!views_) return;
    for (const auto& [name, ns] : namespaces_) {
        if (auto st = guard_can_enforce(ns.table); !st)
            spdlog::warn("views: namespace {} has entries that are not enforced: {}", quote(name),
                         st.error().message);
        auto work = std::make_shared<Work>();
        work->op = kAdopt;
        work->caller = Caller{ns.owner, auth::primary_gid(ns.owner), 0, nullptr};
        work->name = name;
        work->before = ns;
        work->next = ns;
        realize(work, ns.owner);
    }
    if (guard_) {
        std::vector<std::uint32_t> live;
        for (const auto& [name, ns] : namespaces_) {
            if (auto inode = views_->primary_inode(name); inode) live.push_back(*inode);
        }
        guard_->keep_only(live);
    }
    if (auto pinned = views_->pinned(); !pinned) {
        spdlog::warn("views: {}", pinned.error().message);
    } else {
        for (const auto& name : *pinned) {
            if (namespaces_.contains(name)) continue;
            auto inside = members(name);
            if (!inside.empty()) {
                spdlog::warn("views: view {} has no table but {} processes inside; keeping it",
                             quote(name), inside.size());
                continue;
            }
            if (auto st = views_->destroy(name); !st)
                spdlog::warn("views: view {}: {}", quote(name), st.error().message);
        }
    }
    if (!lanes_->wait(patience))
        for (const auto& name : busy_)
            spdlog::warn(
                "views: the view of {} is still being made after {} ms (a source that does not "
                "answer?); pnsd serves meanwhile, and requests for it wait",
                quote(name), patience.count());
}

std::optional<Result<json>> Registry::change(const Caller& caller,
                                             const protocol::Request& request,
                                             Server::Ticket ticket) {
    auto name = get_string(request.args, "name");
    if (!name) return Result<json>(Error(std::move(name).error()));
    if (auto st = validate_name(*name); !st) return Result<json>(Error(st.error()));
    return when_free(
        *name,
        [this, caller, request, ticket]() -> std::optional<Result<json>> {
            const auto& a = request.args;
            if (request.op == op::kNsCreate) return create(caller, a, ticket);
            if (request.op == op::kNsRm) return remove(caller, a, ticket);
            if (request.op == op::kNsApply) return apply(caller, a, ticket);
            if (request.op == op::kEntryAdd) return add_entry(caller, a, ticket);
            return remove_entries(caller, a, ticket);
        },
        ticket);
}

Result<std::map<std::string, Namespace>::iterator> Registry::find(const json& args) {
    auto name = get_string(args, "name");
    if (!name) return Error(std::move(name).error());
    if (auto st = validate_name(*name); !st) return Error(st.error());
    auto it = namespaces_.find(*name);
    if (it == namespaces_.end()) return Error{ENOENT, "no namespace " + quote(*name)};
    return it;
}

Result<std::map<std::string, Namespace>::const_iterator> Registry::find(const json& args) const {
    auto it = const_cast<Registry*>(this)->find(args);
    if (!it) return Error(std::move(it).error());
    return std::map<std::string, Namespace>::const_iterator(*it);
}

std::size_t Registry::count_owned_by(uid_t uid) const {
    return static_cast<std::size_t>(
        std::count_if(namespaces_.begin(), namespaces_.end(),
                      [uid](const auto& p) { return p.second.owner == uid; }));
}

auth::Holdings Registry::held_by(uid_t owner, const std::string& except) const {
    auth::Holdings sum;
    for (const auto& [name, ns] : namespaces_) {
        if (ns.owner != owner || name == except) continue;
        auto it = held_.find(name);
        if (it == held_.end()) continue;
        sum.entries += it->second.entries;
        sum.tmpfs += it->second.tmpfs;
        sum.mounts += it->second.mounts;
    }
    return sum;
}

json Registry::summary(const Caller& caller, const Namespace& ns) const {
    json j = {{"name", ns.name},
              {"owner", ns.owner},
              {"owner_name", user_name(ns.owner)},
              {"locked", ns.locked},
              {"generation", ns.generation}};
    if (auth::may_see_entries(caller, ns)) j["entry_count"] = ns.table.entries.size();
    if (ns.locked && !guard_)
        j["warning"] = "namespace " + quote(ns.name) + " is locked without the LSM guard (" +
                       guard_missing_ +
                       "): a member that leaves is killed after the fact, and descriptors or "
                       "/proc links from outside are not refused (README: What \"locked\" "
                       "promises)";
    return j;
}

std::optional<Result<json>> Registry::create(const Caller& caller, const json& args,
                                             Server::Ticket ticket) {
    auto name = get_string(args, "name");
    if (!name) return Result<json>(Error(std::move(name).error()));
    if (auto st = validate_name(*name); !st) return Result<json>(Error(st.error()));

    uid_t owner = caller.uid;
    if (auto it = args.find("owner"); it != args.end() && !it->is_null()) {
        auto resolved = resolve_owner(*it);
        if (!resolved) return Result<json>(Error(std::move(resolved).error()));
        owner = *resolved;
    }
    if (auto st = auth::may_create(caller, owner, count_owned_by(owner)); !st)
        return Result<json>(st.error());
    if (namespaces_.contains(*name))
        return Result<json>(Error{EEXIST, "namespace " + quote(*name) + " exists"});

    auto locked = get_bool(args, "locked", false);
    if (!locked) return Result<json>(Error(std::move(locked).error()));

    auto id = NamespaceId::random();
    if (!id) return Result<json>(Error(std::move(id).error()));
    auto work = std::make_shared<Work>();
    work->op = op::kNsCreate;
    work->caller = caller;
    work->ticket = ticket;
    work->name = *name;
    work->next = Namespace{*name, *id, owner, *locked, 1, {}};
    if (args.contains("table")) {
        auto table = parse_table_arg(args);
        if (!table) return Result<json>(Error(std::move(table).error()));
        work->next.table = std::move(*table);
    }
    if (auto st = auth::within_quota(caller, owner, held_by(owner, *name),
                                     auth::holdings_of(work->next.table), quotas_);
        !st)
        return Result<json>(st.error());
    if (auto st = guard_can_enforce(work->next.table); !st) return Result<json>(st.error());
    if (!views_) {
        if (auto st = store_.save(work->next); !st) return Result<json>(st.error());
        json result = summary(caller, work->next);
        held_[*name] = auth::holdings_of(work->next.table);
        namespaces_.emplace(*name, std::move(work->next));
        return Result<json>(result);
    }
    // A view still pinned under this name belongs to a namespace that is gone (its table was
    // removed but not its view: a crash in between, or processes were inside at start): never
    // this new one's, whose owner would then edit what those processes see. They keep it,
    // unmanaged, as after 'ns rm --force'.
    struct stat left {};
    if (::lstat(views_->view_dir(*name).c_str(), &left) == 0) {
        spdlog::warn(
            "views: {} still had the view of an earlier namespace of that name; "
            "leaving it to its processes, unmanaged",
            quote(*name));
        forget_guard(*name);
        work->replace_left_view = true;
    }
    realize(work, caller.uid);
    return std::nullopt;
}

std::optional<Result<json>> Registry::remove(const Caller& caller, const json& args,
                                             Server::Ticket ticket) {
    auto it = find(args);
    if (!it) return Result<json>(Error(std::move(it).error()));
    const Namespace& ns = (*it)->second;
    if (auto st = auth::may_edit(caller, ns); !st) return Result<json>(st.error());
    if (auto st = check_generation(args, ns); !st) return Result<json>(st.error());
    auto force = get_bool(args, "force", false);
    if (!force) return Result<json>(Error(std::move(force).error()));
    auto inside = members(ns.name);
    if (!inside.empty()) {
        std::string list;
        for (std::size_t i = 0; i < inside.size() && i < 10; ++i)
            list += (i ? ", " : "") + inside[i];
        if (inside.size() > 10) list += ", ...";
        if (!*force)
            return Result<json>(Error{
                EBUSY, "namespace " + quote(ns.name) + " has " + std::to_string(inside.size()) +
                           " members: " + list +
                           (caller.is_root() ? "; --force removes it anyway (members keep the view "
                                               "as it is now, no longer managed by pnsd)"
                                             : "")});
        if (!caller.is_root())
            return Result<json>(
                Error{EACCES, "only root may remove a namespace that has members"});
    }
    // The table goes first: once it is off the disk, whatever still names the namespace (a
    // policy) finds nothing at the next start and is dropped. What goes with it is taken away
    // next; if that cannot be done, the table is stored again and nothing has changed.
    if (auto st = store_.remove(ns.name); !st) return Result<json>(st.error());
    std::vector<std::string> removed;
    if (on_remove_) {
        auto gone = on_remove_(ns);
        if (!gone) {
            if (auto back = store_.save(ns); !back)
                return Result<json>(
                    Error{EIO, gone.error().message + "; and storing the table again failed: " +
                                   back.error().message});
            return Result<json>(Error(std::move(gone).error()));
        }
        removed = std::move(*gone);
    }
    forget_guard(ns.name);
    // Members of a forced removal keep the view as it is now, no longer managed by pnsd.
    json result = {
        {"name", ns.name}, {"members_left_behind", inside}, {"policies_removed", removed}};
    auto work = std::make_shared<Work>();
    work->op = op::kNsRm;
    work->caller = caller;
    work->ticket = ticket;
    work->name = ns.name;
    held_.erase(ns.name);
    namespaces_.erase(*it);
    if (!views_) return Result<json>(result);
    // The namespace is gone whatever happens to its view: pins left behind are cleared by the
    // next 'ns create' of this name, or at start. Until they are, that create waits.
    busy_.insert(work->name);
    lanes_->post(
        caller.uid, [this, work] { return views_->destroy(work->name); },
        [this, work, result](Status st) {
            if (!st)
                spdlog::warn("views: remove the view of {}: {}", quote(work->name),
                             st.error().message);
            conclude(work, result);
        });
    return std::nullopt;
}

Result<json> Registry::list(const Caller& caller, const json&) const {
    json all = json::array();
    for (const auto& [name, ns] : namespaces_) all.push_back(summary(caller, ns));
    return json{{"namespaces", std::move(all)}};
}

Result<json> Registry::show(const Caller& caller, const json& args) const {
    auto it = find(args);
    if (!it) return Error(std::move(it).error());
    const Namespace& ns = (*it)->second;
    json result = summary(caller, ns);
    if (auth::may_see_entries(caller, ns)) {
        json entries = json::array();
        for (const auto& entry : ns.table.entries)
            entries.push_back(protocol::entry_to_json(entry));
        result["entries"] = std::move(entries);
    } else {
        result["entries_hidden"] = true;
    }
    return result;
}

Result<json> Registry::export_table(const Caller& caller, const json& args) const {
    auto it = find(args);
    if (!it) return Error(std::move(it).error());
    const Namespace& ns = (*it)->second;
    if (auto st = auth::may_read_table(caller, ns); !st) return st.error();
    return json{
        {"name", ns.name}, {"generation", ns.generation}, {"table", format_table(ns.table)}};
}

std::optional<Result<json>> Registry::edit(const char* op, const Caller& caller, const json& args,
                                           const Change& change, Server::Ticket ticket) {
    auto it = find(args);
    if (!it) return Result<json>(Error(std::move(it).error()));
    Namespace& current = (*it)->second;
    if (auto st = auth::may_edit(caller, current); !st) return Result<json>(st.error());
    if (auto st = check_generation(args, current); !st) return Result<json>(st.error());

    Namespace next = current;
    if (auto st = change(next); !st) return Result<json>(st.error());
    if (next.table == current.table) return Result<json>(edit_result(current, false));
    if (auto st = validate_table(next.table); !st) return Result<json>(st.error());
    if (auto st = auth::within_quota(caller, next.owner, held_by(next.owner, next.name),
                                     auth::holdings_of(next.table), quotas_);
        !st)
        return Result<json>(st.error());
    if (auto st = guard_can_enforce(next.table); !st) return Result<json>(st.error());
    ++next.generation;
    // Stored first: if pnsd dies before the view follows, it realizes the stored table when
    // it starts. If the view cannot follow, the stored table goes back to what it was.
    if (auto st = store_.save(next); !st) return Result<json>(st.error());
    if (!views_) {
        current = std::move(next);
        held_[current.name] = auth::holdings_of(current.table);
        return Result<json>(edit_result(current, true));
    }
    auto work = std::make_shared<Work>();
    work->op = op;
    work->caller = caller;
    work->ticket = ticket;
    work->name = current.name;
    work->before = current;
    work->next = std::move(next);
    realize(work, caller.uid);
    return std::nullopt;
}

std::optional<Result<json>> Registry::add_entry(const Caller& caller, const json& args,
                                                Server::Ticket ticket) {
    auto it = args.find("entry");
    if (it == args.end()) return Result<json>(Error{EPROTO, "missing \"entry\""});
    auto entry = protocol::entry_from_json(*it);
    if (!entry) return Result<json>(Error(std::move(entry).error()));
    return edit(
        op::kEntryAdd, caller, args,
        [&](Namespace& ns) -> Status {
            auto& entries = ns.table.entries;
            if (std::find(entries.begin(), entries.end(), *entry) != entries.end())
                return Error{EEXIST, "namespace " + quote(ns.name) + " already has '" +
                                         format_entry(*entry) + "'"};
            if (entries.size() >= kMaxEntries)
                return Error{EDQUOT, "namespace " + quote(ns.name) + " already has " +
                                         std::to_string(kMaxEntries) +
                                         " entries, the most allowed"};
            entries.push_back(*entry);
            return {};
        },
        ticket);
}

std::optional<Result<json>> Registry::remove_entries(const Caller& caller, const json& args,
                                                     Server::Ticket ticket) {
    auto target = get_string(args, "dst");
    if (!target) return Result<json>(Error(std::move(target).error()));
    if (auto st = validate_path(*target); !st) return Result<json>(st.error());
    std::string source;
    if (args.contains("src")) {
        auto s = get_string(args, "src");
        if (!s) return Result<json>(Error(std::move(s).error()));
        if (auto st = validate_path(*s); !st) return Result<json>(st.error());
        source = std::move(*s);
    }
    return edit(
        op::kEntryRm, caller, args,
        [&](Namespace& ns) -> Status {
            auto& entries = ns.table.entries;
            auto removed = std::erase_if(entries, [&](const Entry& e) {
                return e.target == *target && (source.empty() || e.source == source);
            });
            if (removed == 0)
                return Error{ENOENT, "namespace " + quote(ns.name) + " has no entry for " +
                                         quote(*target) +
                                         (source.empty() ? "" : " from " + quote(source))};
            return {};
        },
        ticket);
}

Result<json> Registry::explain(const Caller& caller, const json& args) {
    auto it = find(args);
    if (!it) return Error(std::move(it).error());
    const Namespace& ns = (*it)->second;
    if (auto st = auth::may_read_table(caller, ns); !st) return st.error();
    auto path = get_string(args, "path");
    if (!path) return Error(std::move(path).error());
    if (auto st = validate_path(*path); !st) return st.error();
    if (!views_) return Error{EOPNOTSUPP, "pnsd runs without views"};
    return views_->explain(ns, *path);
}

// Where a view is pinned, and for a non-root uid its satellite (made if missing): for root
// only, as it names the kernel objects behind a namespace.
Result<json> Registry::view_info(const Caller& caller, const json& args) {
    if (!caller.is_root()) return Error{EACCES, "only root may look at the pins of a view"};
    auto it = find(args);
    if (!it) return Error(std::move(it).error());
    const Namespace& ns = (*it)->second;
    if (!views_) return Error{EOPNOTSUPP, "pnsd runs without views"};
    std::string dir = views_->view_dir(ns.name);
    json result = {{"name", ns.name}, {"primary", dir + "/mnt"}};
    if (auto uid = args.find("uid"); uid != args.end() && !uid->is_null()) {
        if (!uid->is_number_unsigned()) return Error{EPROTO, "\"uid\" is not a number"};
        auto id = uid->get<std::uint64_t>();
        if (id == 0 || id >= UINT32_MAX)
            return Error::invalid("no satellite for uid " + std::to_string(id));
        auto sat = views_->satellite(ns.name, static_cast<uid_t>(id),
                                     auth::primary_gid(static_cast<uid_t>(id)));
        if (!sat) return Error(std::move(sat).error());
        std::string users = dir + "/users/" + std::to_string(id);
        result["satellite"] = {{"uid", id}, {"user", users + "/user"}, {"mnt", users + "/mnt"}};
    }
    result["members"] = members(ns.name);
    return result;
}

std::optional<Result<json>> Registry::apply(const Caller& caller, const json& args,
                                            Server::Ticket ticket) {
    auto table = parse_table_arg(args);
    if (!table) return Result<json>(Error(std::move(table).error()));
    return edit(
        op::kNsApply, caller, args,
        [&](Namespace& ns) -> Status {
            ns.table = std::move(*table);
            return {};
        },
        ticket);
}

}  // namespace pns::agent
