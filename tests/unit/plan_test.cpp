// The edit plan (agent/views/plan.hpp): what an edit takes off, reuses, makes anew and puts
// back on failure, from the entries applied and the entries wanted alone.
#include <gtest/gtest.h>

#include "agent/views/plan.hpp"

namespace pns::agent {
namespace {

Entry bind(std::string src, std::string dst, UnionMode mode = UnionMode::kReplace,
           bool create = false) {
    return Entry{EntryKind::kBind, mode, create, std::move(src), std::move(dst)};
}
Entry of(EntryKind kind, std::string dst) {
    return Entry{kind, UnionMode::kReplace, false, "", std::move(dst)};
}

std::vector<AppliedEntry> applied(const std::vector<Entry>& entries) {
    std::vector<AppliedEntry> out;
    for (const auto& e : entries) out.push_back({e, false});
    return out;
}

// The plan's steps as plain lists, to compare in one expectation.
std::vector<std::size_t> taken_off(const EditPlan& plan) {
    std::vector<std::size_t> out;
    for (const auto& t : plan.take_off) out.push_back(t.index);
    return out;
}
std::vector<std::size_t> parked(const EditPlan& plan) {
    std::vector<std::size_t> out;
    for (const auto& t : plan.take_off)
        if (t.park) out.push_back(t.index);
    return out;
}
std::vector<std::size_t> put_on(const EditPlan& plan) {
    std::vector<std::size_t> out;
    for (const auto& p : plan.put_on) out.push_back(p.index);
    return out;
}
std::vector<std::size_t> reused(const EditPlan& plan) {
    std::vector<std::size_t> out;
    for (const auto& p : plan.put_on)
        if (p.reused) out.push_back(p.index);
    return out;
}
std::vector<std::size_t> as_owner(const EditPlan& plan) {
    std::vector<std::size_t> out;
    for (const auto& p : plan.put_on)
        if (p.as_owner) out.push_back(p.index);
    return out;
}

using Indices = std::vector<std::size_t>;

const Entry kData = bind("/srv/data", "/data");
const Entry kTmp = of(EntryKind::kTmpfs, "/tmp");
const Entry kHideDev = of(EntryKind::kHide, "/dev");
const Entry kRoUsr = of(EntryKind::kReadOnly, "/usr");
const Entry kUnion = bind("/home/alice/bin", "/usr/bin", UnionMode::kBefore);
const Entry kWritable = bind("/srv/extra", "/opt", UnionMode::kBefore, true);
const Entry kConf = bind("/home/alice/app.conf", "/etc/app.conf");

TEST(Reusable, ReplaceBindsTmpfsAndHideOnly) {
    EXPECT_TRUE(reusable(kData, false));
    EXPECT_TRUE(reusable(kTmp, false));
    EXPECT_TRUE(reusable(kHideDev, false));
    EXPECT_FALSE(reusable(kRoUsr, false));
    EXPECT_FALSE(reusable(kUnion, false));
    EXPECT_FALSE(reusable(kWritable, false));
    EXPECT_FALSE(reusable(bind("/a", "/b", UnionMode::kAfter), false));
    EXPECT_FALSE(reusable(of(EntryKind::kDeny, "/etc/shadow"), false));
    // A skeleton lists its ancestor as it was when it was made, whatever its entry is.
    EXPECT_FALSE(reusable(kData, true));
    EXPECT_FALSE(reusable(kTmp, true));
    EXPECT_FALSE(reusable(kHideDev, true));
}

TEST(PlanEdit, TheSameTableChangesNothing) {
    auto plan = plan_edit(applied({kData, kTmp}), {kData, kTmp});
    EXPECT_FALSE(plan.changes());
    EXPECT_EQ(plan.keep, 2u);
    EXPECT_TRUE(plan.take_off.empty());
    EXPECT_TRUE(plan.put_on.empty());
    EXPECT_TRUE(plan.undo.empty());
    EXPECT_FALSE(plan.needs_requester());
}

TEST(PlanEdit, KeepsTheCommonPrefixAndAddsOnTop) {
    auto plan = plan_edit(applied({kData, kTmp}), {kData, kTmp, kConf});
    EXPECT_TRUE(plan.changes());
    EXPECT_EQ(plan.keep, 2u);
    EXPECT_TRUE(plan.take_off.empty());
    EXPECT_EQ(put_on(plan), (Indices{2}));
    EXPECT_EQ(reused(plan), Indices{});
    EXPECT_EQ(as_owner(plan), Indices{});
    EXPECT_TRUE(plan.needs_requester());
    EXPECT_TRUE(plan.undo.empty());
}

TEST(PlanEdit, RemovingTheTopTakesOnlyItOff) {
    auto plan = plan_edit(applied({kData, kTmp, kConf}), {kData, kTmp});
    EXPECT_EQ(plan.keep, 2u);
    EXPECT_EQ(taken_off(plan), (Indices{2}));
    EXPECT_TRUE(plan.put_on.empty());
    // An edit that only takes entries off needs nothing of the requester.
    EXPECT_FALSE(plan.needs_requester());
    ASSERT_EQ(plan.undo.size(), 1u);
    EXPECT_EQ(plan.undo[0].index, 2u);
}

TEST(PlanEdit, ReusesUnchangedReplaceBindsTmpfsAndHideAboveARemovedEntry) {
    // The entry at the bottom goes: everything above it comes off, top first, and comes back
    // as the same trees (a tmpfs keeps its files, a bind's SRC needs no new lookup).
    auto plan = plan_edit(applied({kConf, kData, kTmp, kHideDev}), {kData, kTmp, kHideDev});
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_EQ(taken_off(plan), (Indices{3, 2, 1, 0}));
    EXPECT_EQ(parked(plan), (Indices{3, 2, 1, 0}));
    EXPECT_EQ(put_on(plan), (Indices{0, 1, 2}));
    EXPECT_EQ(reused(plan), (Indices{0, 1, 2}));
    EXPECT_EQ(as_owner(plan), (Indices{0, 1, 2}));
    EXPECT_FALSE(plan.needs_requester());
}

TEST(PlanEdit, MakesReadOnlyCopiesUnionsAndSkeletonsAnew) {
    // What captures the view beneath it is made anew, as the owner: its requester is not here.
    std::vector<AppliedEntry> before = {
        {kConf, false}, {kRoUsr, false}, {kUnion, false}, {kWritable, false}, {kData, true}};
    auto plan = plan_edit(before, {kRoUsr, kUnion, kWritable, kData});
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_EQ(taken_off(plan), (Indices{4, 3, 2, 1, 0}));
    EXPECT_EQ(parked(plan), (Indices{0}));  // only kConf, which is not wanted again
    EXPECT_EQ(reused(plan), Indices{});
    EXPECT_EQ(as_owner(plan), (Indices{0, 1, 2, 3}));
    EXPECT_FALSE(plan.needs_requester());
}

TEST(PlanEdit, AnEntryRemovedInTheMiddle) {
    auto plan =
        plan_edit(applied({kData, kTmp, kConf, kHideDev, kRoUsr}), {kData, kTmp, kHideDev, kRoUsr});
    EXPECT_EQ(plan.keep, 2u);
    EXPECT_EQ(taken_off(plan), (Indices{4, 3, 2}));
    EXPECT_EQ(parked(plan), (Indices{3, 2}));
    EXPECT_EQ(put_on(plan), (Indices{2, 3}));
    EXPECT_EQ(reused(plan), (Indices{2}));       // the hide
    EXPECT_EQ(as_owner(plan), (Indices{2, 3}));  // the ro too, made anew
}

TEST(PlanEdit, AnEntryInsertedInTheMiddle) {
    auto plan = plan_edit(applied({kData, kTmp}), {kData, kConf, kTmp});
    EXPECT_EQ(plan.keep, 1u);
    EXPECT_EQ(taken_off(plan), (Indices{1}));
    EXPECT_EQ(put_on(plan), (Indices{1, 2}));
    EXPECT_EQ(reused(plan), (Indices{2}));
    EXPECT_EQ(as_owner(plan), (Indices{2}));
    EXPECT_TRUE(plan.needs_requester());
}

TEST(PlanEdit, EverythingChanged) {
    auto plan = plan_edit(applied({kData, kTmp}), {kConf, kHideDev, kRoUsr});
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_EQ(taken_off(plan), (Indices{1, 0}));
    EXPECT_EQ(parked(plan), (Indices{1, 0}));  // kept, though nothing wants them back
    EXPECT_EQ(put_on(plan), (Indices{0, 1, 2}));
    EXPECT_EQ(reused(plan), Indices{});
    EXPECT_EQ(as_owner(plan), Indices{});
    EXPECT_TRUE(plan.needs_requester());
}

TEST(PlanEdit, ReorderedEntriesAreReusedByEquality) {
    auto plan = plan_edit(applied({kData, kTmp, kHideDev}), {kHideDev, kTmp, kData});
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_EQ(reused(plan), (Indices{0, 1, 2}));
    // A changed entry is a different entry: not reused, looked up as the requester.
    Entry moved = bind("/srv/data", "/data2");
    plan = plan_edit(applied({kData}), {moved});
    EXPECT_EQ(reused(plan), Indices{});
    EXPECT_EQ(as_owner(plan), Indices{});
}

TEST(PlanEdit, EmptyToFull) {
    std::vector<Entry> full = {kData, kTmp, kRoUsr, kUnion};
    auto plan = plan_edit({}, full);
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_TRUE(plan.take_off.empty());
    EXPECT_EQ(put_on(plan), (Indices{0, 1, 2, 3}));
    EXPECT_EQ(reused(plan), Indices{});
    EXPECT_EQ(as_owner(plan), Indices{});
    EXPECT_TRUE(plan.undo.empty());  // undone by taking off what was put on
}

TEST(PlanEdit, FullToEmpty) {
    auto plan = plan_edit(applied({kData, kTmp, kRoUsr, kUnion}), {});
    EXPECT_EQ(plan.keep, 0u);
    EXPECT_EQ(taken_off(plan), (Indices{3, 2, 1, 0}));
    EXPECT_EQ(parked(plan), (Indices{1, 0}));
    EXPECT_TRUE(plan.put_on.empty());
    EXPECT_FALSE(plan.needs_requester());
    EXPECT_EQ(plan.undo.size(), 4u);
}

TEST(PlanEdit, UndoPutsTheTakenOffEntriesBackInTableOrder) {
    // Taken off top first; on failure put back bottom first, those that captured the view
    // beneath them made anew.
    std::vector<AppliedEntry> before = {
        {kData, false}, {kRoUsr, false}, {kTmp, false}, {kUnion, false}, {kHideDev, true}};
    auto plan = plan_edit(before, {kData, kConf});
    EXPECT_EQ(plan.keep, 1u);
    EXPECT_EQ(taken_off(plan), (Indices{4, 3, 2, 1}));
    ASSERT_EQ(plan.undo.size(), 4u);
    std::vector<std::pair<std::size_t, bool>> undo;
    for (const auto& b : plan.undo) undo.emplace_back(b.index, b.remade);
    EXPECT_EQ(undo, (std::vector<std::pair<std::size_t, bool>>{
                        {1, true}, {2, false}, {3, true}, {4, true}}));
}

TEST(PlanEdit, ATreeTakenOffComesBackOnce) {
    // Tables refuse repeated entries, but the plan does not depend on it: each tree taken
    // off serves one wanted entry.
    auto plan = plan_edit(applied({kConf, kTmp}), {kTmp, kTmp});
    EXPECT_EQ(reused(plan), (Indices{0}));
    EXPECT_EQ(as_owner(plan), (Indices{0, 1}));
}

}  // namespace
}  // namespace pns::agent
