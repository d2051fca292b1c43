#include "agent/views/explain.hpp"

namespace pns::agent {

namespace {

// Whether the mount of an entry at `target` is at or above `path`.
bool covers(const std::string& target, const std::string& path) {
    return path == target || target == "/" ||
           (path.starts_with(target) && path[target.size()] == '/');
}

}  // namespace

Explanation explain_path(const Table& table, const std::string& path) {
    const auto& entries = table.entries;
    Explanation out;
    out.path = path;
    // A deny entry serves nothing; it only says that members may not open the file.
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        if (e.kind == EntryKind::kDeny && e.target == path) out.denied_by_entry = i + 1;
    }
    // The last entry at or above `path` decides; its DST prefix is replaced by its SRC.
    for (std::size_t index = entries.size(); index > 0; --index) {
        const Entry& e = entries[index - 1];
        if (e.kind == EntryKind::kDeny || !covers(e.target, path)) continue;
        out.entry = index;
        std::string rest = e.target == "/" ? path : path.substr(e.target.size());
        switch (e.kind) {
            case EntryKind::kBind: {
                std::string from = e.source == "/" ? (rest.empty() ? "/" : rest) : e.source + rest;
                out.resolves_to = from;
                // A union searches its layers in order; the first that has the name serves it.
                if (e.mode == UnionMode::kBefore) out.layers = {from, path};
                if (e.mode == UnionMode::kAfter) {
                    out.layers = {path, from};
                    out.resolves_to = path;
                }
                out.is_union = e.mode != UnionMode::kReplace;
                break;
            }
            case EntryKind::kHide:
                out.hidden = true;
                break;
            case EntryKind::kReadOnly:
                out.read_only = true;
                out.resolves_to = path;
                break;
            case EntryKind::kTmpfs:
                out.private_tmpfs = true;
                break;
            case EntryKind::kDeny:
                break;
        }
        return out;
    }
    out.resolves_to = path;
    return out;
}

nlohmann::json to_json(const Explanation& x, const Table& table) {
    nlohmann::json j = {{"path", x.path}};
    if (x.entry) {
        j["entry"] = *x.entry;
        j["line"] = format_entry(table.entries.at(*x.entry - 1));
    } else {
        j["entry"] = nullptr;
    }
    if (x.denied_by_entry) j["denied_by_entry"] = *x.denied_by_entry;
    if (x.resolves_to) j["resolves_to"] = *x.resolves_to;
    if (!x.layers.empty()) j["layers"] = x.layers;
    if (x.is_union) j["union"] = true;
    if (x.hidden) j["hidden"] = true;
    if (x.read_only) j["read_only"] = true;
    if (x.private_tmpfs) j["private_tmpfs"] = true;
    return j;
}

}  // namespace pns::agent
