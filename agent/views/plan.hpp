// The edit plan: what an edit of a view does to its mount stack, decided from the entries
// applied in the view and the entries wanted, without touching the kernel (Views::edit carries
// it out, agent/views/views.cpp).
//
// Each entry is one mount stacked at its DST in table order, its DST looked up in the view the
// entries before it made, so everything after a changed entry is taken off and put on again;
// and pnsd takes a mount off only where nothing covers it (InView::find, editor.hpp). So an
// edit keeps the longest common prefix of the two lists, takes the rest of the applied
// entries off, top first, and puts the rest of the wanted ones on, in order. A mount taken
// off is kept as a detached tree, and put back as it is for an identical wanted entry, when it
// holds nothing of the entries below it (reusable).
// A failed edit is undone the same way: what it put on comes off, top first, and the entries
// it took off go back on, in their order.
#pragma once

#include <cstddef>
#include <vector>

#include "common/table.hpp"

namespace pns::agent {

// Whether the mount of an entry can be taken off and put back as it is: only when it holds
// nothing of the entries below it (a replacing bind clones SRC, a tmpfs and a hide are new
// file systems). A read-only copy and a union take what DST held when they were made, and a
// skeleton (made for a DST that did not exist) lists its ancestor as it was then, so those
// are made anew.
bool reusable(const Entry& entry, bool skeleton);

// An entry as it is applied in the view.
struct AppliedEntry {
    Entry entry;
    bool skeleton = false;  // its mount is a skeleton made for a DST that did not exist
};

struct EditPlan {
    // An applied entry taken off: applied[index].
    struct TakeOff {
        std::size_t index = 0;
        bool park = false;  // kept as a detached tree for a wanted entry (reusable)
    };
    // A wanted entry put on: wanted[index].
    struct PutOn {
        std::size_t index = 0;
        bool reused = false;  // it gets back the tree of an identical entry taken off
        // It was applied before this edit, so its requester is not here: its paths are
        // looked up as the namespace's owner, SRC in the host's view. The others as the
        // requester of the edit.
        bool as_owner = false;
    };
    // An applied entry put back when the edit fails: applied[index].
    struct PutBack {
        std::size_t index = 0;
        bool remade = false;  // not reusable: made anew, as the owner
    };

    std::size_t keep = 0;          // entries at the bottom that stay as they are
    std::vector<TakeOff> take_off;  // top first
    std::vector<PutOn> put_on;      // in table order
    // To undo the edit: everything above `keep` comes off, top first (the reusable mounts
    // kept as detached trees), then these go back on, in table order.
    std::vector<PutBack> undo;

    // Whether the view changes at all.
    bool changes() const { return !take_off.empty() || !put_on.empty(); }
    // Whether some wanted entry is new, so the edit needs the requester's credentials.
    bool needs_requester() const;
};

// The plan that turns the stack of `applied` into that of `wanted`. Pure: the same lists give
// the same plan.
EditPlan plan_edit(const std::vector<AppliedEntry>& applied, const std::vector<Entry>& wanted);

}  // namespace pns::agent
