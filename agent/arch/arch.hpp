// What syscall injection needs to know about the processor: where the registers of a stopped
// tracee are, which instruction enters the kernel, and which registers carry a system call.
// One small file per architecture implements this (arch/x86_64.cpp); everything else in
// agent/join/tracer.cpp is the same on every architecture.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <span>

#include "common/result.hpp"

namespace pns::agent::arch {

// The general registers of a stopped tracee (the NT_PRSTATUS register set).
using Registers = user_regs_struct;

Result<Registers> get_registers(pid_t tid);
Status set_registers(pid_t tid, const Registers& regs);

// The bytes of the instruction that enters the kernel ("syscall" on x86-64).
std::span<const std::uint8_t> syscall_instruction();

// Makes `regs` run system call `nr` with `args` from the syscall instruction at `at`. It also
// tells the kernel that the stop the tracee is in is not an interrupted system call it should
// restart when the tracee resumes.
void prepare_syscall(Registers& regs, std::uint64_t at, long nr,
                     const std::array<std::uint64_t, 6>& args);

// After the tracee stepped over the instruction: the return value (or -errno).
long syscall_result(const Registers& regs);
std::uint64_t instruction_pointer(const Registers& regs);
std::uint64_t stack_pointer(const Registers& regs);

// Bytes below the stack pointer that the ABI lets a function use without moving it.
std::uint64_t red_zone();

// Whether the tracee runs the native 64-bit ABI, the only one pnsd injects into.
bool native_abi(const Registers& regs);

}  // namespace pns::agent::arch
