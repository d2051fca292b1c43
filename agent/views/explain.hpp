// Which entry of a table decides what a view shows at a path, and what that is: a function of
// the table and the path alone (`pnsctl explain`, Views::explain). It reads the table as the
// editor stacks it (agent/views/plan.hpp): each entry one mount at its DST, a later entry on
// top of the earlier ones, so the last entry at or above the path serves it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/table.hpp"

namespace pns::agent {

struct Explanation {
    std::string path;
    std::optional<std::size_t> entry;            // 1-based; none: the host's own file shows
    std::optional<std::size_t> denied_by_entry;  // the last `deny` of exactly this path
    std::optional<std::string> resolves_to;      // where the name leads; none for hide, tmpfs
    std::vector<std::string> layers;             // a union's, searched in this order
    bool is_union = false;
    bool hidden = false;
    bool read_only = false;
    bool private_tmpfs = false;
};

// `path` must be as tables store paths (validate_path): prefixes are compared as strings,
// component by component, with no lookup.
Explanation explain_path(const Table& table, const std::string& path);

// The answer of `ns.explain`: {"path", "entry" (null for none), "line" (the entry as a table
// line), "resolves_to", "layers", "union", "hidden", "read_only", "private_tmpfs",
// "denied_by_entry"}, each only where it applies.
nlohmann::json to_json(const Explanation& explanation, const Table& table);

}  // namespace pns::agent
