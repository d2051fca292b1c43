// What pnsd keeps beside a view's pins (views.hpp): the state (the entries applied, with the
// mount ID of each), the journal of an edit under way, and the identity of the namespace the
// view was made for.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/views/files.hpp"
#include "agent/views/views.hpp"
#include "common/protocol.hpp"

namespace pns::agent {

using detail::read_text;
using detail::write_text;
using nlohmann::json;

Result<std::vector<Views::Applied>> Views::load_state(const std::string& name) const {
    std::string path = view_dir(name) + "/state.json";
    auto text = read_text(path);
    if (!text) {
        if (text.error().code == ENOENT) return std::vector<Applied>{};
        return Error(std::move(text).error());
    }
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("applied") || !j["applied"].is_array())
        return Error{EIO, "'" + path + "' is corrupt"};
    std::vector<Applied> applied;
    for (const auto& a : j["applied"]) {
        auto entry = protocol::entry_from_json(a.value("entry", json::object()));
        if (!entry || !a.contains("mount_id") || !a["mount_id"].is_number_unsigned() ||
            !a.contains("path") || !a["path"].is_string())
            return Error{EIO, "'" + path + "' is corrupt"};
        std::string at = a["path"].get<std::string>();
        // Older pnsds wrote no "skeleton": theirs were the entries not mounted at DST.
        bool skeleton = a.value("skeleton", at != entry->target);
        applied.push_back({std::move(*entry), std::move(at), a["mount_id"].get<std::uint64_t>(),
                           a.value("under_id", std::uint64_t{0}), skeleton});
    }
    return applied;
}

Status Views::save_state(const std::string& name, const std::vector<Applied>& applied) const {
    json list = json::array();
    for (const auto& a : applied)
        list.push_back({{"entry", protocol::entry_to_json(a.entry)},
                        {"path", a.path},
                        {"mount_id", a.mount_id},
                        {"under_id", a.under_id},
                        {"skeleton", a.skeleton}});
    return write_text(view_dir(name) + "/state.json", json{{"applied", list}}.dump() + "\n");
}

std::vector<Views::JournalRecord> Views::load_journal(const std::string& name) const {
    std::vector<JournalRecord> records;
    std::ifstream in(view_dir(name) + "/journal");
    std::string line;
    while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        // A line cut short by a crash is the one record that was never acted on.
        if (j.is_discarded() || !j.is_object() || !j.contains("path") || !j["path"].is_string())
            continue;
        records.push_back({j["path"].get<std::string>(), j.value("under_id", std::uint64_t{0}),
                           j.value("mount_id", std::uint64_t{0})});
    }
    return records;
}

Status Views::append_journal(int journal, const JournalRecord& record) {
    std::string line =
        json{{"path", record.path}, {"under_id", record.under_id}, {"mount_id", record.mount_id}}
            .dump() +
        "\n";
    if (::write(journal, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return sys_error("write the journal");
    return {};
}

void Views::clear_journal(const std::string& name) const {
    ::unlink((view_dir(name) + "/journal").c_str());
}

Result<std::string> Views::identity(const std::string& name) const {
    auto text = read_text(view_dir(name) + "/id");
    if (!text) return Error(std::move(text).error());
    while (!text->empty() && text->back() == '\n') text->pop_back();
    return text;
}

Status Views::set_identity(const std::string& name, const NamespaceId& id) const {
    return write_text(view_dir(name) + "/id", id.hex() + "\n");
}

}  // namespace pns::agent
