// What the tracker and the guard both need from libbpf: errors, pins, typed map access.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::bpf {

// libbpf reports its own problems (verifier logs, missing BTF) on stderr by default; this
// sends them to pnsd's log instead, prefixed like every component's.
__attribute__((format(printf, 2, 0))) int log_libbpf(enum libbpf_print_level level,
                                                     const char* format, va_list args);

// While one lives, libbpf's output goes to the log at trace: for a load whose failure is
// expected on some kernels and reported once, in one line, by its caller.
class QuietLibbpf {
  public:
    QuietLibbpf();
    ~QuietLibbpf();
    QuietLibbpf(const QuietLibbpf&) = delete;
    QuietLibbpf& operator=(const QuietLibbpf&) = delete;
};

// libbpf returns negative error numbers (or sets errno); both become an Error.
inline Error libbpf_error(int err, const std::string& what) {
    return Error::from_errno(err < 0 ? -err : err, what);
}

inline bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// A descriptor of pnsd's own for one libbpf keeps (closed with the skeleton).
inline int dup_fd(int fd) {
    return ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

// ---- the file systems BPF needs ----
// Pins live on bpffs, and libbpf finds a tracepoint's id in tracefs; systemd mounts both at
// boot, but on a machine without it nobody does, and pnsd must not depend on that.

// The default parent of pnsd's pins, where systemd mounts bpffs.
inline constexpr const char* kBpffsMountPoint = "/sys/fs/bpf";

// Makes sure `pin_dir`'s parent is on bpffs. When `pin_dir` is below /sys/fs/bpf and nothing
// is mounted there, mounts bpffs there as systemd does at boot (mode 0700, nosuid, nodev,
// noexec) and returns true. Fails with EINVAL when `pin_dir` cannot hold pins (its parent is
// missing or not on bpffs: the message says how to fix it), with ENOTSUP when the kernel
// offers no bpffs.
Result<bool> prepare_pin_dir(const std::string& pin_dir);

// A kernel file system (tracefs, securityfs) mounted detached: fsmount without move_mount,
// so pnsd reads what it needs through the mount's fd and leaves nothing mounted on the host,
// whether or not someone mounted it at its usual place.
class DetachedFs {
  public:
    static Result<DetachedFs> open(const char* type);
    // The contents of `path`, relative to the file system's root.
    Result<std::string> read(const std::string& path) const;

  private:
    explicit DetachedFs(UniqueFd root) : root_(std::move(root)) {}
    UniqueFd root_;
};

// Attaches `program`. One of section "tracepoint/CATEGORY/NAME" is attached through a perf
// event opened with the id that `tracefs` gives: what libbpf does itself, but libbpf looks for
// the id under /sys/kernel/tracing, which a machine without systemd does not have mounted.
// Others (tp_btf, lsm) as libbpf does by their section.
Result<bpf_link*> attach(bpf_program* program, const DetachedFs& tracefs);

// ---- builds ----
// A pinned tracker or guard goes on after pnsd exits, so the pnsd that starts next may be
// another build. Each pins, beside its programs, the stamp of the BPF object it loaded (a hash
// of the object's bytes, in a one-entry array map); a pnsd whose object has another stamp
// replaces the programs and keeps the state.

// The stamp of a skeleton's object, from its <name>__elf_bytes function.
std::uint64_t stamp_of(const void* (*elf_bytes)(std::size_t*));
// The stamp pinned at `path`; nothing when there is none (a build from before stamps).
std::optional<std::uint64_t> pinned_stamp(const std::string& path);
Status pin_stamp(const std::string& path, std::uint64_t stamp);

// Pins `fd` at `path` in one step, replacing what was pinned there: a link replaced so is
// detached once nothing else holds it, after the new one is attached.
Status pin_replacing(int fd, const std::string& path);

// Copies every entry of map `from` into map `to` when both have the same key and value sizes
// (false when they do not: the caller rebuilds the entries instead).
Result<bool> copy_entries(int from, int to);

template <typename K, typename V>
Status update(int fd, K key, const V& value, const char* what) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0)
        return sys_error(std::string("update ") + what);
    return {};
}

template <typename K>
Status erase(int fd, K key, const char* what) {
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT)
        return sys_error(std::string("update ") + what);
    return {};
}

template <typename K, typename V>
std::vector<std::pair<K, V>> dump(int fd) {
    std::vector<std::pair<K, V>> all;
    K key{}, next{};
    K* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        V value{};
        if (bpf_map_lookup_elem(fd, &next, &value) == 0) all.emplace_back(next, value);
        key = next;
        prev = &key;
    }
    return all;
}

}  // namespace pns::agent::bpf
