#include "agent/bpf/pinned.hpp"

#include <unistd.h>

#include "agent/bpf/bpf.hpp"

namespace pns::agent::bpf {

bool PinnedObject::all_pinned() const {
    for (const char* map : layout_.maps)
        if (!exists(map_path(map))) return false;
    for (const char* program : layout_.programs)
        if (!exists(link_path(program))) return false;
    return true;
}

bool PinnedObject::has_stamp(std::uint64_t stamp) const {
    return pinned_stamp(stamp_path()) == stamp;
}

Status PinnedObject::pin_stamp(std::uint64_t stamp) const {
    return bpf::pin_stamp(stamp_path(), stamp);
}

void PinnedObject::unpin_all() const {
    for (const char* map : layout_.maps) ::unlink(map_path(map).c_str());
    for (const char* program : layout_.programs) ::unlink(link_path(program).c_str());
    ::unlink(stamp_path().c_str());
}

Status PinnedObject::open_pinned_maps() {
    for (std::size_t i = 0; i < layout_.maps.size(); ++i) {
        fds_[i].reset(bpf_obj_get(map_path(layout_.maps[i]).c_str()));
        if (!fds_[i]) return sys_error("open the pinned map '" + map_path(layout_.maps[i]) + "'");
    }
    return {};
}

Result<bpf_map*> PinnedObject::map_of(bpf_object* object, const char* name) const {
    bpf_map* map = bpf_object__find_map_by_name(object, name);
    if (!map) return Error{ENOENT, std::string("the BPF object has no map ") + name};
    return map;
}

Status PinnedObject::reuse_pinned_maps(bpf_object* object) const {
    for (std::size_t i = 0; i < layout_.maps.size(); ++i) {
        auto map = map_of(object, layout_.maps[i]);
        if (!map) return map.error();
        if (int err = bpf_map__reuse_fd(*map, fds_[i].get()); err)
            return libbpf_error(err, std::string("reuse the pinned map ") + layout_.maps[i]);
    }
    return {};
}

Status PinnedObject::copy_pinned_maps(
    bpf_object* object, const std::function<void(const char* map)>& on_other_shape) const {
    for (const char* name : layout_.maps) {
        UniqueFd old(bpf_obj_get(map_path(name).c_str()));
        if (!old) continue;
        auto map = map_of(object, name);
        if (!map) return map.error();
        auto copied = copy_entries(old.get(), bpf_map__fd(*map));
        if (!copied) return copied.error();
        if (!*copied) on_other_shape(name);
    }
    return {};
}

Status PinnedObject::pin_maps(bpf_object* object) {
    for (std::size_t i = 0; i < layout_.maps.size(); ++i) {
        const char* name = layout_.maps[i];
        auto map = map_of(object, name);
        if (!map) return map.error();
        if (auto st = pin_replacing(bpf_map__fd(*map), map_path(name)); !st)
            return Error{st.error().code,
                         std::string("pin the map ") + name + ": " + st.error().message};
        fds_[i].reset(dup_fd(bpf_map__fd(*map)));
        if (!fds_[i]) return sys_error("dup");
    }
    return {};
}

Status PinnedObject::attach_and_pin(
    bpf_object* object, const std::function<Result<bpf_link*>(bpf_program*)>& attach) const {
    for (const char* name : layout_.programs) {
        bpf_program* program = bpf_object__find_program_by_name(object, name);
        if (!program) return Error{ENOENT, std::string("the BPF object has no program ") + name};
        auto link = attach(program);
        if (!link) return link.error();
        auto pinned = pin_replacing(bpf_link__fd(*link), link_path(name));
        bpf_link__destroy(*link);  // the pin keeps it attached
        if (!pinned) return pinned.error();
    }
    return {};
}

}  // namespace pns::agent::bpf
