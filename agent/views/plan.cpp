#include "agent/views/plan.hpp"

#include <algorithm>

namespace pns::agent {

bool reusable(const Entry& entry, bool skeleton) {
    if (skeleton) return false;
    if (entry.kind == EntryKind::kBind) return entry.mode == UnionMode::kReplace;
    return entry.kind == EntryKind::kTmpfs || entry.kind == EntryKind::kHide;
}

bool EditPlan::needs_requester() const {
    return std::any_of(put_on.begin(), put_on.end(), [](const PutOn& p) { return !p.as_owner; });
}

EditPlan plan_edit(const std::vector<AppliedEntry>& applied, const std::vector<Entry>& wanted) {
    EditPlan plan;
    std::size_t& keep = plan.keep;
    while (keep < applied.size() && keep < wanted.size() && applied[keep].entry == wanted[keep])
        ++keep;
    if (keep == applied.size() && keep == wanted.size()) return plan;

    std::vector<Entry> leaving, coming_back;
    for (std::size_t i = keep; i < applied.size(); ++i) {
        leaving.push_back(applied[i].entry);
        if (reusable(applied[i].entry, applied[i].skeleton))
            coming_back.push_back(applied[i].entry);
    }
    for (std::size_t i = applied.size(); i > keep; --i)
        plan.take_off.push_back({i - 1, reusable(applied[i - 1].entry, applied[i - 1].skeleton)});
    // Each tree taken off comes back once, for the first identical entry that wants it.
    for (std::size_t j = keep; j < wanted.size(); ++j) {
        EditPlan::PutOn put{j, false, false};
        put.as_owner = std::find(leaving.begin(), leaving.end(), wanted[j]) != leaving.end();
        if (auto back = std::find(coming_back.begin(), coming_back.end(), wanted[j]);
            back != coming_back.end()) {
            coming_back.erase(back);
            put.reused = true;
        }
        plan.put_on.push_back(put);
    }
    for (std::size_t i = keep; i < applied.size(); ++i)
        plan.undo.push_back({i, !reusable(applied[i].entry, applied[i].skeleton)});
    return plan;
}

}  // namespace pns::agent
