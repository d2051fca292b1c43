// The injection that moves a stopped process into a view, as a list of steps: each says when it
// is skipped, which system call it makes the process run, and what its result means. Pure:
// the tracer (tracer.cpp) stops the process, runs each call in it by single-stepping a syscall
// instruction of its own, and does what touches the process (writing its scratch area,
// checking the holder); which steps run, with which arguments, and what a result leaves behind
// is decided here, and unit-tested (tests/unit/injection_test.cpp).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace pns::agent::injection {

// In this order: the scratch area first (capset's arguments and the working directory are read
// from it); the holder's pidfd, setns through it, and closing it; capabilities go back (the
// bounding set, then capset) before the working directory is looked up, so that lookup is made
// with exactly the process's own rights; the scratch page last.
enum class Step { kMmap, kPidfd, kSetns, kClose, kBset, kCapset, kChdir, kMunmap, kDone };
const char* name(Step step);

// The scratch area the injected calls read: capset's arguments (header and two data words) at
// 0, the working directory at kCwdOffset. On the process's stack below its red zone when it
// fits there (the bytes are put back), else in a page mapped for the purpose (kMmap).
inline constexpr std::size_t kCwdOffset = 32;
inline constexpr std::size_t kMaxCwd = 4095;
inline constexpr std::size_t kScratchSize = 8192;

// What the steps depend on: the plan made at the first stop, and the progress since.
struct State {
    // The plan.
    pid_t holder = 0;        // the holder in the view, whose namespaces the process enters
    int ns_flags = 0;        // setns's: CLONE_NEWNS, with CLONE_NEWUSER into a satellite
    std::string cwd;         // where to go in the view; empty: stays at the view's root
    // Into a satellite setns grants every capability in the user namespace: they are set back
    // to what the process had (kBset drops each capability not in `bounding`, kCapset sets
    // the permitted and effective sets empty and the inheritable set to `cap_inheritable`).
    bool restore_caps = false;
    std::uint64_t cap_inheritable = 0;
    std::uint64_t bounding = ~0ULL;
    int last_cap = 40;       // /proc/sys/kernel/cap_last_cap

    // The progress.
    Step step = Step::kMmap;
    std::uint64_t scratch = 0;      // the scratch area's address; 0 until there is one
    bool scratch_on_stack = false;  // on the stack (put back by the tracer), not mapped
    long pidfd = -1;                // the holder's pidfd in the process, while it is open
    int bset_next = 0;              // the next capability kBset looks at
    bool failed = false;            // a step failed: only the cleanup steps still run
};

struct Call {
    long nr = 0;
    std::array<std::uint64_t, 6> args{};
};

// The step to run now: state.step if it applies, else the next one that does (kDone when
// none is left). Moves state.step (and, for kBset, state.bset_next) there.
Step next(State& state);
// The system call of state.step (not kDone).
Call call(const State& state);

// What a step's result means: a failure (the steps that follow are the cleanup ones), or a
// warning for the member (the working directory is not there in the view).
struct Outcome {
    std::optional<Error> error;
    std::string warning;
};
// Takes the result of state.step (a negative errno on failure) into `state` and moves to the
// step after it (kBset stays, for the next capability). The tracer then writes the scratch
// area into a page just mapped (kMmap) and checks that the holder is still its own (kPidfd).
Outcome on_result(State& state, long result);

// The bytes of the scratch area, as kCapset and kChdir read them.
std::vector<char> scratch_bytes(const State& state);

}  // namespace pns::agent::injection
