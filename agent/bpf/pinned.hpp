// One BPF object (the tracker, the guard) pinned in pnsd's pin directory: its maps, the links
// of its programs and the stamp of its build, each under a name of its own. What the object
// has is said once, by the names in its Layout: maps and programs are found in a loaded
// object by those names (bpf_object__find_map_by_name), and their descriptors are kept here in
// the same order, so no parallel arrays of maps and descriptors are kept in step by hand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

// libbpf's (bpf/libbpf.h), which the users of the tracker and the guard need not include.
struct bpf_object;
struct bpf_map;
struct bpf_program;
struct bpf_link;

namespace pns::agent::bpf {

struct Layout {
    std::string map_prefix;   // a map MAP is pinned at DIR/<map_prefix>MAP
    std::string link_prefix;  // a program PROG's link at DIR/<link_prefix>PROG
    std::string stamp_name;   // the build's stamp at DIR/<stamp_name>
    std::vector<const char*> maps;
    std::vector<const char*> programs;
};

class PinnedObject {
  public:
    PinnedObject(std::string dir, Layout layout)
        : dir_(std::move(dir)), layout_(std::move(layout)), fds_(layout_.maps.size()) {}
    PinnedObject(PinnedObject&&) = default;
    PinnedObject& operator=(PinnedObject&&) = default;

    const std::string& dir() const { return dir_; }
    // The descriptor of map number `index` of the layout (-1 until opened or pinned).
    int fd(std::size_t index) const { return fds_.at(index).get(); }

    // Whether every map and every link of the layout is pinned.
    bool all_pinned() const;
    // Whether the stamp pinned is `stamp` (false when there is none).
    bool has_stamp(std::uint64_t stamp) const;
    Status pin_stamp(std::uint64_t stamp) const;
    // Unpins the maps, links and stamp of the layout (a start that failed half-way, a guard
    // removed): a program detaches once nothing holds its link.
    void unpin_all() const;

    // Opens the pinned maps, in the layout's order.
    Status open_pinned_maps();
    // Makes `object`'s maps (before it is loaded) the pinned ones: libbpf refuses a map whose
    // type, sizes or flags differ from this build's.
    Status reuse_pinned_maps(bpf_object* object) const;
    // Copies the entries of each pinned map into `object`'s map of the same name (loaded),
    // where the two have the same shape; `on_other_shape` hears of each that has not.
    Status copy_pinned_maps(bpf_object* object,
                            const std::function<void(const char* map)>& on_other_shape) const;
    // Pins `object`'s maps (loaded), replacing what is pinned under their names, and keeps a
    // descriptor of each.
    Status pin_maps(bpf_object* object);
    // Attaches each program with `attach` and pins its link, replacing the link pinned there:
    // the old one is detached once unpinned, after the new one is attached, so no event is
    // missed.
    Status attach_and_pin(bpf_object* object,
                          const std::function<Result<bpf_link*>(bpf_program*)>& attach) const;

  private:
    std::string map_path(const char* map) const { return dir_ + "/" + layout_.map_prefix + map; }
    std::string link_path(const char* program) const {
        return dir_ + "/" + layout_.link_prefix + program;
    }
    std::string stamp_path() const { return dir_ + "/" + layout_.stamp_name; }
    Result<bpf_map*> map_of(bpf_object* object, const char* name) const;

    std::string dir_;
    Layout layout_;
    std::vector<UniqueFd> fds_;
};

}  // namespace pns::agent::bpf
