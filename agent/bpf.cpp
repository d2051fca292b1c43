#include "agent/bpf.hpp"

#include <cstdio>
#include <vector>

#include <spdlog/spdlog.h>

#include "pns/unique_fd.hpp"

namespace pns::agent::bpf {

namespace {
bool quiet = false;  // pnsd loads BPF objects from its main thread only
}  // namespace

QuietLibbpf::QuietLibbpf() {
    quiet = true;
}
QuietLibbpf::~QuietLibbpf() {
    quiet = false;
}

int log_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
    char buf[2048];
    std::vsnprintf(buf, sizeof buf, format, args);
    std::string line(buf);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    auto at = quiet                  ? spdlog::level::trace
              : level == LIBBPF_WARN ? spdlog::level::warn
                                     : spdlog::level::debug;
    spdlog::log(at, "libbpf: {}", line);
    return 0;
}

std::uint64_t stamp_of(const void* (*elf_bytes)(std::size_t*)) {
    std::size_t size = 0;
    const auto* bytes = static_cast<const unsigned char*>(elf_bytes(&size));
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
    for (std::size_t i = 0; i < size; ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
    return h;
}

std::optional<std::uint64_t> pinned_stamp(const std::string& path) {
    UniqueFd fd(bpf_obj_get(path.c_str()));
    std::uint32_t zero = 0;
    std::uint64_t stamp = 0;
    if (!fd || bpf_map_lookup_elem(fd.get(), &zero, &stamp) != 0) return std::nullopt;
    return stamp;
}

Status pin_stamp(const std::string& path, std::uint64_t stamp) {
    UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "pns_build", sizeof(std::uint32_t), sizeof stamp,
                               1, nullptr));
    if (!fd) return sys_error("create the map of the BPF object's stamp");
    if (auto st = update(fd.get(), std::uint32_t{0}, stamp, "the BPF object's stamp"); !st)
        return st;
    return pin_replacing(fd.get(), path);
}

Status pin_replacing(int fd, const std::string& path) {
    std::string next = path + "_new";  // bpffs takes no dots in names
    ::unlink(next.c_str());
    if (bpf_obj_pin(fd, next.c_str()) != 0) return sys_error("pin '" + next + "'");
    if (::rename(next.c_str(), path.c_str()) != 0) {
        int saved = errno;
        ::unlink(next.c_str());
        return Error::from_errno(saved, "rename '" + next + "' to '" + path + "'");
    }
    return {};
}

Result<bool> copy_entries(int from, int to) {
    bpf_map_info a{}, b{};
    std::uint32_t len = sizeof a;
    if (bpf_obj_get_info_by_fd(from, &a, &len) != 0) return sys_error("inspect a pinned map");
    len = sizeof b;
    if (bpf_obj_get_info_by_fd(to, &b, &len) != 0) return sys_error("inspect a new map");
    if (a.key_size != b.key_size || a.value_size != b.value_size || a.type != b.type) return false;
    std::vector<unsigned char> key(a.key_size), next(a.key_size), value(a.value_size);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(from, prev, next.data()) == 0) {
        if (bpf_map_lookup_elem(from, next.data(), value.data()) == 0 &&
            bpf_map_update_elem(to, next.data(), value.data(), BPF_ANY) != 0)
            return sys_error("copy a map entry");
        key = next;
        prev = key.data();
    }
    return true;
}

}  // namespace pns::agent::bpf
