#include "agent/policies/policies.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dirent.h>

#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "common/text.hpp"

namespace pns::agent {

namespace {

using nlohmann::json;

// The first cgroup2 mount in this process's mount table.
std::string cgroup2_mount() {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream after(line.substr(dash + 3));
        std::string fstype;
        after >> fstype;
        if (fstype != "cgroup2") continue;
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        fields >> id >> parent >> dev >> root >> mount_point;
        return mount_point;
    }
    return {};
}

Result<std::string> relative_cgroup(const std::string& root, std::string path) {
    if (path.empty()) return Error::invalid("the cgroup path is empty");
    if (path.front() == '/') {
        if (path == root) return std::string();
        if (!path.starts_with(root + "/"))
            return Error::invalid("cgroup " + quote(path) + " is not under the cgroup2 mount " +
                                  quote(root));
        path = path.substr(root.size() + 1);
    }
    while (!path.empty() && path.back() == '/') path.pop_back();
    std::istringstream parts(path);
    std::string part;
    while (std::getline(parts, part, '/'))
        if (part == ".." || part == ".")
            return Error::invalid("cgroup " + quote(path) + " may not contain '.' or '..'");
    return path;
}

void read_procs(int dirfd, int depth, std::vector<pid_t>& out) {
    int fd = ::openat(dirfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        std::string text;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
        ::close(fd);
        std::istringstream lines(text);
        pid_t pid;
        while (lines >> pid) out.push_back(pid);
    }
    if (depth >= PNS_MAX_CGROUP_DEPTH) return;
    int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    DIR* d = ::fdopendir(copy);
    if (!d) return;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
        int sub = ::openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) continue;
        read_procs(sub, depth + 1, out);
        ::close(sub);
    }
    ::closedir(d);
}

}  // namespace

Policies::Policies(const Registry& registry, Members& members, Tracker* tracker)
    : registry_(registry), members_(members), tracker_(tracker), root_(cgroup2_mount()) {
    members_.use_policies([this](std::uint64_t cgroup) { return namespace_of(cgroup); });
}

const Namespace* Policies::namespace_of(std::uint64_t cgroup) const {
    for (const auto& p : policies_)
        if (p.id == cgroup) return registry_.find_id(p.ns);
    return nullptr;
}

std::string Policies::name_of(const Policy& policy) const {
    const Namespace* ns = registry_.find_id(policy.ns);
    return ns ? ns->name : std::string();
}

Result<Policies::Policy> Policies::resolve(const std::string& path) const {
    if (root_.empty()) return Error{EOPNOTSUPP, "this machine has no cgroup2 mount"};
    auto rel = relative_cgroup(root_, path);
    if (!rel) return Error(std::move(rel).error());
    UniqueFd root(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return sys_error("open the cgroup2 mount " + quote(root_));
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    const char* at = rel->empty() ? "." : rel->c_str();
    UniqueFd dir(static_cast<int>(::syscall(SYS_openat2, root.get(), at, &how, sizeof how)));
    if (!dir) return Error::from_errno(errno, "no cgroup " + quote(path));
    struct statfs fs {};
    struct stat st {};
    if (::fstatfs(dir.get(), &fs) != 0 || ::fstat(dir.get(), &st) != 0)
        return sys_error("stat cgroup " + quote(path));
    if (fs.f_type != CGROUP2_SUPER_MAGIC)
        return Error::invalid(quote(path) + " is not a cgroup2 directory");
    return Policy{*rel, {}, static_cast<std::uint64_t>(st.st_ino), st.st_uid};
}

std::vector<std::string> Policies::load() {
    std::vector<std::string> problems;
    policies_.clear();
    auto text = registry_.store().load_policies();
    if (!text) return {text.error().message};
    bool rewrite = false;
    if (!text->empty()) {
        json doc = json::parse(*text, nullptr, false);
        if (!doc.is_object() || !doc["policies"].is_array())
            return {"policies.json is not what pnsd writes; ignored"};
        for (const auto& p : doc["policies"]) {
            if (!p.is_object() || !p["cgroup"].is_string()) continue;
            const std::string cgroup = p["cgroup"].get<std::string>();
            auto policy = resolve(cgroup);
            if (!policy) {
                problems.push_back("policy for " + quote(cgroup) + ": " + policy.error().message);
                continue;
            }
            const Namespace* ns = nullptr;
            if (p.contains("ns_id")) {
                auto id = p["ns_id"].is_string() ? NamespaceId::parse(p["ns_id"].get<std::string>())
                                                 : std::nullopt;
                ns = id ? registry_.find_id(*id) : nullptr;
                if (!ns) {
                    problems.push_back("policy for " + quote(cgroup) +
                                       ": its namespace is gone; dropped");
                    rewrite = true;
                    continue;
                }
            } else if (p["ns"].is_string()) {
                // Stored by name, by a pnsd from before namespaces had identities: the namespace
                // of that name now may be a later one that took the name. It is bound to it only
                // if its owner could have set this policy (root's namespace, or a user's on a
                // cgroup that user owns); otherwise it is dropped, and root sets it again.
                const std::string name = p["ns"].get<std::string>();
                ns = registry_.lookup(name);
                rewrite = true;
                if (!ns) {
                    problems.push_back("policy for " + quote(cgroup) + ": no namespace " +
                                       quote(name) + "; dropped");
                    continue;
                }
                if (ns->owner != 0 && ns->owner != policy->owner) {
                    problems.push_back(
                        "policy for " + quote(cgroup) + " was stored by name, and namespace " +
                        quote(name) + " (uid " + std::to_string(ns->owner) +
                        ") could not have set it on a cgroup of uid " +
                        std::to_string(policy->owner) +
                        ": it may be a later namespace of that name; dropped (set it again)");
                    continue;
                }
                problems.push_back("policy for " + quote(cgroup) +
                                   " was stored by name; bound to namespace " + quote(name) +
                                   " (uid " + std::to_string(ns->owner) + ") from now on");
            } else {
                continue;
            }
            policy->ns = ns->id;
            policies_.push_back(*policy);
        }
    }
    if (rewrite)
        if (auto st = save(); !st) problems.push_back(st.error().message);
    if (tracker_) {
        // The tracker's map is made to match: stale entries (a cgroup removed, a namespace
        // gone) go.
        for (const auto& [id, ns] : tracker_->policies()) (void)tracker_->remove_policy(id);
        for (const auto& policy : policies_) {
            const std::string name = name_of(policy);
            auto primary = members_.primary_of(name);
            if (!primary) {
                problems.push_back("policy for " + quote(policy.cgroup) + ": no view of " +
                                   quote(name));
                continue;
            }
            (void)tracker_->set_policy(policy.id, primary);
            join_present(policy);
        }
    }
    return problems;
}

Status Policies::save() const {
    // The name is for people reading the file; pnsd goes by the identity. (A pnsd from before
    // identities reads only "ns", so it drops these policies rather than bind them by name.)
    json all = json::array();
    for (const auto& p : policies_)
        all.push_back({{"cgroup", p.cgroup}, {"ns_id", p.ns.hex()}, {"ns_name", name_of(p)}});
    return registry_.store().save_policies(json{{"policies", all}}.dump(2) + "\n");
}

Result<std::vector<std::string>> Policies::forget_namespace(const NamespaceId& id) {
    std::vector<Policy> gone;
    for (const auto& p : policies_)
        if (p.ns == id) gone.push_back(p);
    if (gone.empty()) return std::vector<std::string>{};
    auto before = policies_;
    std::erase_if(policies_, [&](const Policy& p) { return p.ns == id; });
    if (auto st = save(); !st) {
        policies_ = std::move(before);
        return st.error();
    }
    std::vector<std::string> cgroups;
    for (const auto& p : gone) {
        if (tracker_)
            if (auto st = tracker_->remove_policy(p.id); !st)
                spdlog::error("tracker: {}", st.error().message);
        cgroups.push_back(p.cgroup);
    }
    return cgroups;
}

void Policies::join_present(const Policy& policy) {
    const std::string name = name_of(policy);
    if (name.empty()) return;
    UniqueFd root(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return;
    open_how how{};
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    const char* at = policy.cgroup.empty() ? "." : policy.cgroup.c_str();
    UniqueFd dir(static_cast<int>(::syscall(SYS_openat2, root.get(), at, &how, sizeof how)));
    if (!dir) return;
    std::vector<pid_t> pids;
    read_procs(dir.get(), 0, pids);
    for (pid_t pid : pids) members_.join_for_policy(pid, name, policy.id, Held::kNo);
}

Result<json> Policies::set(const Caller& caller, const json& args) {
    if (!tracker_) return Error{EOPNOTSUPP, "pnsd runs without its BPF tracker; no policies"};
    auto path = protocol::get_string(args, "cgroup");
    if (!path) return Error(std::move(path).error());
    auto name = protocol::get_string(args, "name");
    if (!name) return Error(std::move(name).error());
    const Namespace* ns = registry_.lookup(*name);
    if (!ns) return Error{ENOENT, "no namespace " + quote(*name)};
    auto policy = resolve(*path);
    if (!policy) return Error(std::move(policy).error());
    if (!caller.is_root()) {
        if (ns->owner != caller.uid)
            return Error{EACCES, "namespace " + quote(*name) + " is not yours"};
        if (policy->owner != caller.uid)
            return Error{EACCES, "cgroup " + quote(*path) +
                                     " is not delegated to you (its directory is not yours)"};
    }
    // A policy of a namespace the caller does not own is not theirs to replace, even on a
    // cgroup of theirs: policy.rm would refuse them, and so does this.
    if (!caller.is_root())
        for (const auto& p : policies_)
            if (p.id == policy->id)
                if (const Namespace* other = registry_.find_id(p.ns);
                    other && other->owner != caller.uid)
                    return Error{EACCES, "cgroup " + quote(*path) + " has a policy for namespace " +
                                             quote(other->name) + " of uid " +
                                             std::to_string(other->owner) +
                                             "; only root or that user may replace it"};
    // The tracker's map of policies is shared: one user's share is bounded, and ordinary
    // users together leave a quarter of it to root's.
    if (!caller.is_root()) {
        std::size_t mine = 0, users = 0;
        for (const auto& p : policies_) {
            if (p.id == policy->id) continue;  // replaced
            const Namespace* of = registry_.find_id(p.ns);
            if (of && of->owner != 0) ++users;
            if (of && of->owner == caller.uid) ++mine;
        }
        if (mine >= kMaxPoliciesPerUser)
            return Error{EDQUOT, "uid " + std::to_string(caller.uid) + " already has " +
                                     std::to_string(mine) +
                                     " policies, the most one user may have"};
        if (users >= PNS_MAX_POLICIES - PNS_MAX_POLICIES / 4)
            return Error{EDQUOT,
                         "the tracker's map of policies is full for ordinary users (the "
                         "rest is kept for root)"};
    }
    policy->ns = ns->id;
    auto primary = members_.primary_of(*name);
    if (!primary) return Error{EIO, "namespace " + quote(*name) + " has no view"};
    auto before = policies_;
    std::erase_if(policies_, [&](const Policy& p) { return p.id == policy->id; });
    policies_.push_back(*policy);
    if (auto st = save(); !st) {
        policies_ = before;
        return st.error();
    }
    if (auto st = tracker_->set_policy(policy->id, primary); !st) {
        policies_ = before;
        (void)save();
        return st.error();
    }
    join_present(*policy);
    return json{{"cgroup", policy->cgroup}, {"name", *name}, {"cgroup_id", policy->id}};
}

Result<json> Policies::remove(const Caller& caller, const json& args) {
    auto path = protocol::get_string(args, "cgroup");
    if (!path) return Error(std::move(path).error());
    auto rel = relative_cgroup(root_, *path);
    if (!rel) return Error(std::move(rel).error());
    auto it = std::find_if(policies_.begin(), policies_.end(),
                           [&](const Policy& p) { return p.cgroup == *rel; });
    if (it == policies_.end()) return Error{ENOENT, "no policy for cgroup " + quote(*path)};
    const Namespace* ns = registry_.find_id(it->ns);
    if (!caller.is_root() && !(ns && ns->owner == caller.uid && it->owner == caller.uid))
        return Error{EACCES, "the policy for " + quote(*path) + " is not yours"};
    Policy gone = *it;
    const std::string name = name_of(gone);
    auto before = policies_;
    policies_.erase(it);
    if (auto st = save(); !st) {
        policies_ = before;
        return st.error();
    }
    if (tracker_) (void)tracker_->remove_policy(gone.id);
    return json{{"cgroup", gone.cgroup}, {"name", name}};
}

json Policies::list(const Caller& caller) const {
    json all = json::array();
    for (const auto& p : policies_) {
        const Namespace* ns = registry_.find_id(p.ns);
        if (!ns) continue;  // gone with its namespace (forget_namespace); never shown by name
        if (!caller.is_root() && p.owner != caller.uid && ns->owner != caller.uid) continue;
        all.push_back({{"cgroup", p.cgroup}, {"name", ns->name}, {"cgroup_id", p.id}});
    }
    return json{{"policies", all}, {"cgroup_root", root_}};
}

}  // namespace pns::agent
