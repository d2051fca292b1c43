#include "cli/output.hpp"

#include <algorithm>
#include <ctime>
#include <string>

#include "common/protocol.hpp"
#include "common/table.hpp"

namespace pns::cli {

namespace {

using nlohmann::json;

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "?";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string owner_of(const json& ns) {
    std::string name = str(ns, "owner_name");
    std::string uid = str(ns, "owner");
    return name == uid ? uid : name + " (" + uid + ")";
}

std::string yes_no(const json& j, const char* key) {
    return j.value(key, false) ? "yes" : "no";
}

}  // namespace

void print_status(std::FILE* out, const json& status) {
    std::fprintf(out, "pnsd %s, pid %s, up %s s, protocol %s\n", str(status, "version").c_str(),
                 str(status, "pid").c_str(), str(status, "uptime_seconds").c_str(),
                 str(status, "protocol").c_str());
    std::fprintf(out, "socket:      %s\n", str(status, "socket").c_str());
    std::fprintf(out, "state dir:   %s\n", str(status, "state_dir").c_str());
    std::fprintf(out, "runtime dir: %s\n", str(status, "runtime_dir").c_str());
    if (auto m = status.find("mounted"); m != status.end() && m->is_array() && !m->empty()) {
        std::string all;
        for (const auto& what : *m) all += (all.empty() ? "" : ", ") + what.get<std::string>();
        std::fprintf(out, "mounted:     %s (nothing was there)\n", all.c_str());
    }
    std::fprintf(out, "namespaces:  %s\n", str(status, "namespaces").c_str());
    std::fprintf(out, "clients:     %s\n", str(status, "clients").c_str());
    std::fprintf(out, "requests:    %s\n", str(status, "requests").c_str());
    if (auto t = status.find("tracker"); t != status.end() && t->is_object()) {
        if (str(*t, "state") == "active")
            std::fprintf(out,
                         "tracker:     active (%s), %s members, %s policies, %s held at exec\n",
                         str(*t, "pin_dir").c_str(), str(*t, "members").c_str(),
                         str(*t, "policies").c_str(), str(*t, "held_at_exec").c_str());
        else
            std::fprintf(out, "tracker:     unavailable (%s)\n", str(*t, "reason").c_str());
    }
    if (auto g = status.find("guard"); g != status.end() && g->is_object()) {
        if (str(*g, "state") == "active")
            std::fprintf(out,
                         "lsm guard:   active, %s namespaces guarded, %s denied files, %s "
                         "refusals\n",
                         str(*g, "guarded_namespaces").c_str(), str(*g, "denied_files").c_str(),
                         str(*g, "refusals").c_str());
        else
            std::fprintf(out, "lsm guard:   unavailable (%s)\n", str(*g, "reason").c_str());
    }
    if (auto caller = status.find("caller"); caller != status.end() && caller->is_object())
        std::fprintf(out, "you are:     uid %s, pid %s\n", str(*caller, "uid").c_str(),
                     str(*caller, "pid").c_str());
}

void print_namespace_list(std::FILE* out, const json& list) {
    auto it = list.find("namespaces");
    if (it == list.end() || !it->is_array()) return;
    std::size_t name_width = 4, owner_width = 5;
    for (const auto& ns : *it) {
        name_width = std::max(name_width, str(ns, "name").size());
        owner_width = std::max(owner_width, owner_of(ns).size());
    }
    std::fprintf(out, "%-*s  %-*s  %-6s  %10s  %7s\n", static_cast<int>(name_width), "NAME",
                 static_cast<int>(owner_width), "OWNER", "LOCKED", "GENERATION", "ENTRIES");
    for (const auto& ns : *it) {
        std::string entries = ns.contains("entry_count") ? str(ns, "entry_count") : "-";
        std::fprintf(out, "%-*s  %-*s  %-6s  %10s  %7s\n", static_cast<int>(name_width),
                     str(ns, "name").c_str(), static_cast<int>(owner_width), owner_of(ns).c_str(),
                     yes_no(ns, "locked").c_str(), str(ns, "generation").c_str(), entries.c_str());
    }
}

void print_namespace(std::FILE* out, const json& ns) {
    std::fprintf(out, "name:       %s\n", str(ns, "name").c_str());
    std::fprintf(out, "owner:      %s\n", owner_of(ns).c_str());
    std::fprintf(out, "locked:     %s\n", yes_no(ns, "locked").c_str());
    std::fprintf(out, "generation: %s\n", str(ns, "generation").c_str());
    auto entries = ns.find("entries");
    if (entries == ns.end() || !entries->is_array()) {
        std::fprintf(out, "entries:    (hidden: only the owner and root see them)\n");
        return;
    }
    std::fprintf(out, "entries:    %zu\n", entries->size());
    std::size_t n = 0;
    int width = static_cast<int>(std::to_string(entries->size()).size());
    for (const auto& e : *entries) {
        ++n;
        auto entry = protocol::entry_from_json(e);
        std::string line = entry ? format_entry(*entry) : "(unreadable: " + e.dump() + ")";
        std::fprintf(out, "  %*zu  %s\n", width, n, line.c_str());
    }
    auto members = ns.find("members");
    if (members == ns.end() || !members->is_array()) return;
    std::fprintf(out, "members:    %zu\n", members->size());
    for (const auto& m : *members)
        std::fprintf(out, "  %s (%s), %s, %s\n", str(m, "pid").c_str(), str(m, "comm").c_str(),
                     str(m, "state").c_str(),
                     m.contains("view") && m["view"].is_string()
                         ? ("view: " + m["view"].get<std::string>()).c_str()
                         : "not in the view yet");
}

namespace {
std::string since(const json& row) {
    auto it = row.find("since");
    if (it == row.end() || !it->is_number_integer()) return "-";
    auto t = static_cast<std::time_t>(it->get<std::int64_t>());
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    return buf;
}
}  // namespace

void print_processes(std::FILE* out, const json& list) {
    auto it = list.find("processes");
    if (it == list.end() || !it->is_array()) return;
    std::size_t ns_width = 9, view_width = 7;
    for (const auto& row : *it) {
        ns_width = std::max(ns_width, str(row, "namespace").size());
        view_width = std::max(view_width, str(row, "view").size());
    }
    std::fprintf(out, "%7s  %-*s  %-*s  %-10s  %-8s  %-16s  %s\n", "PID",
                 static_cast<int>(ns_width), "NAMESPACE", static_cast<int>(view_width), "VIEW",
                 "STATE", "SINCE", "COMMAND", "CGROUP");
    for (const auto& row : *it) {
        std::string view = row.contains("view") && row["view"].is_string() ? str(row, "view") : "-";
        std::fprintf(out, "%7s  %-*s  %-*s  %-10s  %-8s  %-16s  %s\n", str(row, "pid").c_str(),
                     static_cast<int>(ns_width), str(row, "namespace").c_str(),
                     static_cast<int>(view_width), view.c_str(), str(row, "state").c_str(),
                     since(row).c_str(), str(row, "comm").c_str(), str(row, "cgroup").c_str());
    }
}

void print_event(std::FILE* out, const json& e) {
    std::string line = since(json{{"since", e.value("time", std::int64_t{0})}}) + "  " +
                       str(e, "event") + "  " + str(e, "pid") + " (" + str(e, "comm") + ")";
    if (!e.value("namespace", std::string()).empty()) line += "  " + str(e, "namespace");
    if (e.contains("detail")) line += "  " + str(e, "detail");
    std::fprintf(out, "%s\n", line.c_str());
}

void print_join(std::FILE* out, const json& result) {
    std::string state = str(result, "state");
    if (state == "supervised")
        std::fprintf(out,
                     "%s is multithreaded: every process it starts joins %s, and it joins "
                     "itself at its next exec\n",
                     str(result, "pid").c_str(), str(result, "name").c_str());
    else if (state == "pending")
        std::fprintf(out, "%s: joining %s when it stops\n", str(result, "pid").c_str(),
                     str(result, "name").c_str());
    if (auto w = result.find("warning"); w != result.end() && w->is_string())
        std::fprintf(stderr, "pnsctl: warning: %s: %s\n", str(result, "pid").c_str(),
                     w->get<std::string>().c_str());
}

void print_explanation(std::FILE* out, const json& e) {
    std::string path = str(e, "path");
    if (!e.contains("entry") || e["entry"].is_null()) {
        std::fprintf(out, "%s: no entry; the host's %s\n", path.c_str(), path.c_str());
        return;
    }
    std::fprintf(out, "%s: entry %s: %s\n", path.c_str(), str(e, "entry").c_str(),
                 str(e, "line").c_str());
    if (e.value("hidden", false)) std::fprintf(out, "  hidden: appears empty\n");
    if (e.value("private_tmpfs", false)) std::fprintf(out, "  in a private tmpfs\n");
    if (e.value("read_only", false)) std::fprintf(out, "  read-only\n");
    if (auto layers = e.find("layers"); layers != e.end() && layers->is_array()) {
        std::fprintf(out, "  union, searched in order:\n");
        for (const auto& layer : *layers)
            std::fprintf(out, "    %s\n",
                         layer.is_string() ? layer.get<std::string>().c_str() : "?");
    } else if (e.contains("resolves_to")) {
        std::fprintf(out, "  resolves to %s\n", str(e, "resolves_to").c_str());
    }
}

}  // namespace pns::cli
