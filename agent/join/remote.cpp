#include "agent/join/remote.hpp"

#include <sys/uio.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "agent/arch/arch.hpp"

namespace pns::agent::remote {

Result<std::uint64_t> find_syscall_instruction(pid_t tid) {
    auto insn = arch::syscall_instruction();
    FILE* maps = std::fopen(("/proc/" + std::to_string(tid) + "/maps").c_str(), "re");
    if (!maps) return Error{ESRCH, "no such process"};
    std::vector<std::pair<std::uint64_t, std::uint64_t>> vdso, code;
    char line[512];
    while (std::fgets(line, sizeof line, maps)) {
        unsigned long long begin = 0, end = 0;
        char perms[8] = {};
        if (std::sscanf(line, "%llx-%llx %7s", &begin, &end, perms) != 3) continue;
        if (std::strstr(line, "[vdso]"))
            vdso.emplace_back(begin, end);
        else if (perms[2] == 'x' && perms[0] == 'r')
            code.emplace_back(begin, end);
    }
    std::fclose(maps);
    vdso.insert(vdso.end(), code.begin(), code.end());
    std::vector<std::uint8_t> buf;
    for (auto [begin, end] : vdso) {
        buf.resize(std::min<std::uint64_t>(end - begin, 1u << 20));
        iovec local{buf.data(), buf.size()};
        iovec remote{reinterpret_cast<void*>(begin), buf.size()};
        ssize_t n = ::process_vm_readv(tid, &local, 1, &remote, 1, 0);
        if (n <= 0) continue;
        auto found = std::search(buf.begin(), buf.begin() + n, insn.begin(), insn.end());
        if (found != buf.begin() + n)
            return begin + static_cast<std::uint64_t>(found - buf.begin());
    }
    return Error{ENOEXEC, "no syscall instruction found in its code"};
}

std::uint64_t all_signals() {
    return ~0ULL;
}

bool read_memory(pid_t tid, std::uint64_t at, std::vector<char>& bytes) {
    iovec local{bytes.data(), bytes.size()};
    iovec remote{reinterpret_cast<void*>(at), bytes.size()};
    return ::process_vm_readv(tid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes.size());
}

bool write_memory(pid_t tid, std::uint64_t at, const std::vector<char>& bytes) {
    std::vector<char> copy = bytes;
    iovec local{copy.data(), copy.size()};
    iovec remote{reinterpret_cast<void*>(at), copy.size()};
    return ::process_vm_writev(tid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(copy.size());
}

int last_capability() {
    static const int last = [] {
        int value = 40;
        if (std::FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
            if (std::fscanf(f, "%d", &value) != 1) value = 40;
            std::fclose(f);
        }
        return value;
    }();
    return last;
}

}  // namespace pns::agent::remote
