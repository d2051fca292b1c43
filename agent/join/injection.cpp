#include "agent/join/injection.hpp"

#include <linux/capability.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstring>

namespace pns::agent::injection {

namespace {

using U = std::uint64_t;

// One step: when it is skipped, and its call.
struct StepSpec {
    Step step;
    const char* name;
    bool (*skip)(const State&);
    Call (*call)(const State&);
};

// The list, in the order the steps run (Step's order).
constexpr StepSpec kSteps[] = {
    {Step::kMmap, "mmap", [](const State& s) { return s.scratch != 0; },
     [](const State&) {
         return Call{SYS_mmap,
                     {0, kScratchSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, ~0ULL, 0}};
     }},
    {Step::kPidfd, "pidfd_open", [](const State& s) { return s.failed; },
     [](const State& s) { return Call{SYS_pidfd_open, {static_cast<U>(s.holder), 0, 0, 0, 0, 0}}; }},
    {Step::kSetns, "setns", [](const State& s) { return s.failed || s.pidfd < 0; },
     [](const State& s) {
         return Call{SYS_setns, {static_cast<U>(s.pidfd), static_cast<U>(s.ns_flags), 0, 0, 0, 0}};
     }},
    // Closed even after a failure: the process keeps no descriptor of pnsd's holder.
    {Step::kClose, "close", [](const State& s) { return s.pidfd < 0; },
     [](const State& s) { return Call{SYS_close, {static_cast<U>(s.pidfd), 0, 0, 0, 0, 0}}; }},
    // Runs once per capability to drop (next() finds it), from bset_next on.
    {Step::kBset, "prctl(PR_CAPBSET_DROP)",
     [](const State& s) { return s.failed || !s.restore_caps || s.bset_next > s.last_cap; },
     [](const State& s) {
         return Call{SYS_prctl, {PR_CAPBSET_DROP, static_cast<U>(s.bset_next), 0, 0, 0, 0}};
     }},
    {Step::kCapset, "capset", [](const State& s) { return s.failed || !s.restore_caps; },
     [](const State& s) { return Call{SYS_capset, {s.scratch, s.scratch + 8, 0, 0, 0, 0}}; }},
    {Step::kChdir, "chdir", [](const State& s) { return s.failed || s.cwd.empty(); },
     [](const State& s) { return Call{SYS_chdir, {s.scratch + kCwdOffset, 0, 0, 0, 0, 0}}; }},
    // A page of its own is unmapped even after a failure; the stack's bytes are the tracer's
    // to put back.
    {Step::kMunmap, "munmap", [](const State& s) { return s.scratch == 0 || s.scratch_on_stack; },
     [](const State& s) { return Call{SYS_munmap, {s.scratch, kScratchSize, 0, 0, 0, 0}}; }},
};
static_assert(std::size(kSteps) == static_cast<std::size_t>(Step::kDone));

const StepSpec& spec(Step step) {
    return kSteps[static_cast<std::size_t>(step)];
}

Step after(Step step) {
    return static_cast<Step>(static_cast<int>(step) + 1);
}

}  // namespace

const char* name(Step step) {
    return step == Step::kDone ? "done" : spec(step).name;
}

Step next(State& state) {
    for (; state.step != Step::kDone; state.step = after(state.step)) {
        if (state.step == Step::kBset)  // past the capabilities the process may keep
            while (state.bset_next <= state.last_cap && (state.bounding >> state.bset_next & 1))
                ++state.bset_next;
        if (!spec(state.step).skip(state)) break;
    }
    return state.step;
}

Call call(const State& state) {
    return spec(state.step).call(state);
}

Outcome on_result(State& state, long result) {
    const bool failed = result < 0 && result > -4096;
    const int err = failed ? static_cast<int>(-result) : 0;
    Outcome out;
    auto fail = [&](std::string why) {
        out.error = Error::from_errno(err, std::move(why));
        state.failed = true;
    };
    switch (state.step) {
        case Step::kMmap:
            if (failed) fail("map a scratch page in it");
            else state.scratch = static_cast<std::uint64_t>(result);
            break;
        case Step::kPidfd:
            if (failed)
                fail(err == ESRCH ? "find pnsd's holder (is it in another pid namespace?)"
                                  : "open a pidfd");
            else state.pidfd = result;
            break;
        case Step::kSetns:
            if (failed)
                fail(err == EINVAL ? "enter the view (it shares its file system context with "
                                     "another process, or is already in that user namespace)"
                                   : "enter the view");
            break;
        case Step::kClose:
            state.pidfd = -1;
            break;
        case Step::kBset:
            if (failed) fail("set its bounding set back");
            ++state.bset_next;
            return out;  // the same step, for the next capability
        case Step::kCapset:
            if (failed) fail("set its capabilities back");
            break;
        case Step::kChdir:
            if (failed)
                out.warning = "its working directory '" + state.cwd +
                              "' is not there in the view (" + std::strerror(err) +
                              "); it is now at '/'";
            break;
        case Step::kMunmap:
            state.scratch = 0;
            break;
        case Step::kDone:
            return out;
    }
    state.step = after(state.step);
    return out;
}

std::vector<char> scratch_bytes(const State& state) {
    std::vector<char> bytes((kCwdOffset + state.cwd.size() + 1 + 15) & ~std::size_t{15}, 0);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    data[0].inheritable = static_cast<std::uint32_t>(state.cap_inheritable);
    data[1].inheritable = static_cast<std::uint32_t>(state.cap_inheritable >> 32);
    static_assert(sizeof header + sizeof data <= kCwdOffset);
    std::memcpy(bytes.data(), &header, sizeof header);
    std::memcpy(bytes.data() + sizeof header, data, sizeof data);
    std::memcpy(bytes.data() + kCwdOffset, state.cwd.c_str(), state.cwd.size() + 1);
    return bytes;
}

}  // namespace pns::agent::injection
