// Reaching into a stopped tracee: its memory (process_vm_readv/writev, which need ptrace-read
// and ptrace-attach rights: pnsd is its tracer), a syscall instruction in its code to run the
// injected calls on, and the kernel's highest capability number.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.hpp"

namespace pns::agent::remote {

// The address of a syscall instruction in the tracee: its vDSO has some, else its code.
Result<std::uint64_t> find_syscall_instruction(pid_t tid);
// Every signal, as a signal mask (the injection blocks them all while it runs).
std::uint64_t all_signals();
// Reads bytes.size() bytes at `at`; false unless all were read.
bool read_memory(pid_t tid, std::uint64_t at, std::vector<char>& bytes);
bool write_memory(pid_t tid, std::uint64_t at, const std::vector<char>& bytes);
// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap).
int last_capability();

}  // namespace pns::agent::remote
