// x86-64: "syscall" (0f 05); number in rax, arguments in rdi, rsi, rdx, r10, r8, r9, result
// in rax. orig_rax is the number of the system call the tracee stopped in; -1 means none, so
// the kernel does not rewind rip to restart it (arch/x86/kernel/signal.c).
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "agent/arch/arch.hpp"

#if !defined(__x86_64__)
#error "agent/arch/x86_64.cpp is for x86-64 only"
#endif

namespace pns::agent::arch {

namespace {
constexpr std::uint8_t kSyscall[] = {0x0f, 0x05};
constexpr unsigned long long kUserCs64 = 0x33;  // __USER_CS: a 64-bit code segment
}  // namespace

Result<Registers> get_registers(pid_t tid) {
    Registers regs{};
    iovec iov{&regs, sizeof regs};
    if (::ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &iov) != 0) return sys_error("get registers");
    return regs;
}

Status set_registers(pid_t tid, const Registers& regs) {
    Registers copy = regs;
    iovec iov{&copy, sizeof copy};
    if (::ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, &iov) != 0) return sys_error("set registers");
    return {};
}

std::span<const std::uint8_t> syscall_instruction() {
    return kSyscall;
}

void prepare_syscall(Registers& regs, std::uint64_t at, long nr,
                     const std::array<std::uint64_t, 6>& args) {
    regs.rip = at;
    regs.rax = static_cast<unsigned long long>(nr);
    regs.orig_rax = ~0ULL;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
}

long syscall_result(const Registers& regs) {
    return static_cast<long>(regs.rax);
}

std::uint64_t instruction_pointer(const Registers& regs) {
    return regs.rip;
}

std::uint64_t stack_pointer(const Registers& regs) {
    return regs.rsp;
}

std::uint64_t red_zone() {
    return 128;  // System V AMD64 ABI, 3.2.2
}

bool native_abi(const Registers& regs) {
    return regs.cs == kUserCs64;
}

}  // namespace pns::agent::arch
