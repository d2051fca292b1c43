#include "agent/bpf/bpf.hpp"

#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <spdlog/spdlog.h>

#include "agent/views/mount.hpp"
#include "common/text.hpp"

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

namespace {

std::string parent_of(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

Result<bool> on_bpffs(const std::string& path) {
    struct statfs fs {};
    if (::statfs(path.c_str(), &fs) != 0) return sys_error("statfs '" + path + "'");
    return fs.f_type == BPF_FS_MAGIC;
}

}  // namespace

Result<bool> prepare_pin_dir(const std::string& pin_dir) {
    const std::string parent = parent_of(pin_dir);
    const std::string root = kBpffsMountPoint;
    bool mounted = false;
    if (pin_dir.starts_with(root + "/")) {
        auto root_ready = on_bpffs(root);
        if (!root_ready)  // no /sys/fs/bpf: a kernel without BPF, not a configuration error
            return Error{ENOTSUP, root_ready.error().message + " (a kernel without BPF?)"};
        if (!*root_ready) {
            // As systemd mounts it at boot (src/shared/mount-setup.c).
            auto fs = mnt::new_fs("bpf", {{"mode", "0700"}},
                                  MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
            if (!fs) return Error{ENOTSUP, fs.error().message};
            if (auto st = mnt::attach(fs->get(), AT_FDCWD, root); !st)
                return Error{ENOTSUP, st.error().message};
            mounted = true;
        }
    }
    // Everything else is the choice of whoever started pnsd: EINVAL, an error at start.
    auto ready = on_bpffs(parent);
    if (!ready) return Error::invalid("--bpf-dir " + quote(pin_dir) + ": " + ready.error().message);
    if (!*ready)
        return Error::invalid("--bpf-dir " + quote(pin_dir) + ": " + quote(parent) +
                              " is not on bpffs; mount one there (mount -t bpf bpf " + parent +
                              ") or choose a directory under " + root);
    return mounted;
}

Result<DetachedFs> DetachedFs::open(const char* type) {
    auto fs = mnt::new_fs(type, {}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (!fs) return fs.error();
    return DetachedFs(std::move(*fs));
}

Result<std::string> DetachedFs::read(const std::string& path) const {
    UniqueFd file(::openat(root_.get(), path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!file) return sys_error("open " + path);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(file.get(), buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    if (n < 0) return sys_error("read " + path);
    return text;
}

Result<bpf_link*> attach(bpf_program* program, const DetachedFs& tracefs) {
    std::string section = bpf_program__section_name(program);
    constexpr std::string_view kPrefix = "tracepoint/";
    if (!section.starts_with(kPrefix)) {
        bpf_link* link = bpf_program__attach(program);
        if (!link) return libbpf_error(errno, "attach " + section);
        return link;
    }
    // "tracepoint/syscalls/sys_exit_setns" -> events/syscalls/sys_exit_setns/id
    const std::string tracepoint = section.substr(kPrefix.size());
    auto id = tracefs.read("events/" + tracepoint + "/id");
    if (!id) return Error{id.error().code, "find tracepoint " + tracepoint + ": " + id.error().message};
    perf_event_attr attr{};
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.size = sizeof attr;
    attr.config = std::strtoull(id->c_str(), nullptr, 10);
    // Every task on every CPU: pid -1 with CPU 0 is how a tracepoint is opened for BPF
    // (tools/lib/bpf/libbpf.c: perf_event_open_tracepoint).
    UniqueFd event(static_cast<int>(
        ::syscall(SYS_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)));
    if (!event) return sys_error("perf_event_open " + tracepoint);
    bpf_link* link = bpf_program__attach_perf_event(program, event.get());
    if (!link) return libbpf_error(errno, "attach " + section);
    event.release();  // the link closes it (libbpf: bpf_link_perf_detach)
    return link;
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
