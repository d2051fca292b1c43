#include "agent/namespaces/store.hpp"
#include "agent/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "agent/trusted_dir.hpp"
#include "common/protocol.hpp"
#include "common/text.hpp"

namespace pns::agent {

namespace {

using nlohmann::json;

constexpr std::string_view kFormat = "pns-namespace";
constexpr int kFormatVersion = 1;
constexpr std::string_view kSuffix = ".json";
constexpr std::string_view kTempSuffix = ".tmp";
// Larger than any valid table's file (kMaxEntries entries of two kMaxPathLength paths).
constexpr off_t kMaxFileBytes = 1100u << 20;

Result<std::string> read_file_at(int dir_fd, const std::string& name) {
    // O_NONBLOCK: a FIFO left in the directory must be reported, not block pnsd's start.
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) return sys_error("open");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("stat");
    if (!S_ISREG(st.st_mode)) return Error{EINVAL, "not a regular file"};
    if (st.st_size > kMaxFileBytes) return Error{EFBIG, "file is too large"};
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("read");
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    return data;
}

}  // namespace

Result<Store> Store::open(const std::string& state_dir) {
    auto state = open_trusted_dir(state_dir, {.what = "state directory", .create = 0700});
    if (!state) return Error(std::move(state).error());
    // O_NOFOLLOW: a link planted at the lock's name would have root create or open its target.
    // O_NONBLOCK: a FIFO there must be refused, not block pnsd's start.
    const std::string lock_path = state_dir + "/lock";
    UniqueFd lock(::openat(state->get(), "lock",
                           O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
    if (!lock) {
        if (errno == ELOOP)
            return Error{ELOOP, "'" + lock_path +
                                    "' is a symbolic link; pnsd does not follow links in its "
                                    "state directory: remove it"};
        return sys_error("open the lock file '" + lock_path + "'");
    }
    struct stat st {};
    if (::fstat(lock.get(), &st) != 0) return sys_error("stat '" + lock_path + "'");
    if (!S_ISREG(st.st_mode))
        return Error{EINVAL, "'" + lock_path + "' is not a regular file: remove it"};
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return Error{EBUSY, "state directory '" + state_dir + "' is in use by another pnsd"};
        return sys_error("lock '" + lock_path + "'");
    }
    std::string dir_path = state_dir + "/namespaces";
    auto dir = open_trusted_subdir(state->get(), state_dir, "namespaces", 0700);
    if (!dir) return Error(std::move(dir).error());
    return Store(std::move(lock), std::move(*dir), std::move(dir_path), std::move(*state),
                 state_dir);
}

std::string Store::serialize(const Namespace& ns) {
    json entries = json::array();
    for (const auto& entry : ns.table.entries) entries.push_back(protocol::entry_to_json(entry));
    json j = {{"format", kFormat},
              {"version", kFormatVersion},
              {"name", ns.name},
              {"owner", ns.owner},
              {"locked", ns.locked},
              {"generation", ns.generation},
              {"entries", std::move(entries)}};
    if (!ns.id.empty()) j["id"] = ns.id.hex();
    return j.dump(1) + "\n";
}

Result<Namespace> Store::deserialize(std::string_view text) {
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Error::invalid("not a JSON object");
    auto format = j.find("format");
    if (format == j.end() || *format != kFormat) return Error::invalid("not a pns namespace file");
    auto version = j.find("version");
    if (version == j.end() || *version != kFormatVersion)
        return Error::invalid("unknown format version");

    Namespace ns;
    auto name = j.find("name");
    auto owner = j.find("owner");
    auto locked = j.find("locked");
    auto generation = j.find("generation");
    auto entries = j.find("entries");
    if (name == j.end() || !name->is_string() || owner == j.end() || !owner->is_number_unsigned() ||
        owner->get<std::uint64_t>() >= UINT32_MAX || locked == j.end() || !locked->is_boolean() ||
        generation == j.end() || !generation->is_number_unsigned() || entries == j.end() ||
        !entries->is_array())
        return Error::invalid("missing or malformed fields");
    ns.name = name->get<std::string>();
    if (auto st = validate_name(ns.name); !st) return Error(st.error());
    // Tables stored before namespaces had identities have none: load_all gives them one.
    if (auto id = j.find("id"); id != j.end()) {
        auto parsed = id->is_string() ? NamespaceId::parse(id->get<std::string>()) : std::nullopt;
        if (!parsed) return Error::invalid("malformed id");
        ns.id = *parsed;
    }
    ns.owner = owner->get<uid_t>();
    ns.locked = locked->get<bool>();
    ns.generation = generation->get<std::uint64_t>();
    ns.table.entries.reserve(entries->size());
    for (const auto& e : *entries) {
        auto entry = protocol::entry_from_json(e);
        if (!entry)
            return Error::invalid("entry " + std::to_string(ns.table.entries.size() + 1) + ": " +
                                  entry.error().message);
        ns.table.entries.push_back(std::move(*entry));
    }
    if (auto st = validate_table(ns.table); !st) return Error(st.error());
    return ns;
}

Result<Store::Loaded> Store::load_all() const {
    int dup = ::dup(dir_.get());
    if (dup < 0) return sys_error("dup");
    DIR* dir = ::fdopendir(dup);
    if (!dir) {
        ::close(dup);
        return sys_error("read '" + dir_path_ + "'");
    }
    ::rewinddir(dir);
    Loaded loaded;
    std::vector<std::string> temporaries;
    // readdir(3) tells the end from an error only by errno, which the loop body may have set
    // (a symlink's ELOOP, ...): clear it before every call.
    for (;;) {
        errno = 0;
        struct dirent* d = ::readdir(dir);
        if (!d) break;
        std::string file = d->d_name;
        if (file == "." || file == "..") continue;
        if (file.starts_with('.') && file.ends_with(kTempSuffix)) {
            temporaries.push_back(file);
            continue;
        }
        auto skip = [&](std::string_view why) {
            loaded.skipped.push_back("'" + dir_path_ + "/" + file + "': " + std::string(why));
        };
        if (!file.ends_with(kSuffix)) {
            skip("not a namespace file (name does not end in .json), ignoring");
            continue;
        }
        auto text = read_file_at(dir_.get(), file);
        if (!text) {
            skip(text.error().message + ", skipping");
            continue;
        }
        auto ns = deserialize(*text);
        if (!ns) {
            skip(ns.error().message + ", skipping");
            continue;
        }
        if (ns->name + std::string(kSuffix) != file) {
            skip("holds namespace " + quote(ns->name) + ", not the one its name says, skipping");
            continue;
        }
        loaded.namespaces.push_back(std::move(*ns));
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) return Error::from_errno(err, "read '" + dir_path_ + "'");
    identify(loaded);
    // Leftovers of a write interrupted before its rename; the table they were to replace is
    // intact, so they carry nothing of value.
    for (const auto& file : temporaries) ::unlinkat(dir_.get(), file.c_str(), 0);
    return loaded;
}

void Store::identify(Loaded& loaded) const {
    // In name order, so which of two files with one identity keeps it does not depend on
    // readdir's order.
    std::sort(loaded.namespaces.begin(), loaded.namespaces.end(),
              [](const Namespace& a, const Namespace& b) { return a.name < b.name; });
    std::set<NamespaceId> seen;
    for (auto& ns : loaded.namespaces) {
        std::string why;
        if (ns.id.empty())
            why = "had no identity (stored by an older pnsd)";
        else if (seen.contains(ns.id))
            why = "had the identity of another table (a copied file?)";
        else {
            seen.insert(ns.id);
            continue;
        }
        auto id = NamespaceId::random();
        if (!id) {
            loaded.skipped.push_back(
                "'" + dir_path_ + "/" + ns.name + std::string(kSuffix) + "': " + why +
                " and none could be made: " + id.error().message + ", skipping");
            ns.name.clear();
            continue;
        }
        ns.id = *id;
        seen.insert(ns.id);
        // Stored at once: what refers to it from now on (a policy) must find it after a restart.
        if (auto st = save(ns); !st)
            loaded.skipped.push_back(quote(ns.name) + " " + why +
                                     "; its new one could not be "
                                     "stored (" +
                                     st.error().message +
                                     "), so what refers to it will not outlive a restart");
    }
    std::erase_if(loaded.namespaces, [](const Namespace& ns) { return ns.name.empty(); });
}

Status Store::save(const Namespace& ns) const {
    // The name becomes a file name: never let one reach outside the directory.
    if (auto st = validate_name(ns.name); !st) return st;
    return write_file_atomically(dir_.get(), dir_path_, ns.name + std::string(kSuffix),
                                 serialize(ns));
}

Result<std::string> Store::load_policies() const {
    auto text = read_file_at(state_.get(), "policies.json");
    if (!text && text.error().code == ENOENT) return std::string();
    if (!text)
        return Error{text.error().code,
                     "read '" + state_path_ + "/policies.json': " + text.error().message};
    return text;
}

Status Store::save_policies(std::string_view text) const {
    return write_file_atomically(state_.get(), state_path_, "policies.json", text);
}

Status Store::remove(const std::string& name) const {
    if (auto st = validate_name(name); !st) return st;
    std::string file = name + std::string(kSuffix);
    if (::unlinkat(dir_.get(), file.c_str(), 0) != 0 && errno != ENOENT)
        return sys_error("remove '" + dir_path_ + "/" + file + "'");
    if (::fsync(dir_.get()) != 0) return sys_error("fsync '" + dir_path_ + "'");
    return {};
}

}  // namespace pns::agent
