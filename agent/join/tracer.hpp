// pnsd's tracer: makes processes join views by syscall injection over ptrace (DESIGN.md,
// decision 5). A process enters a mount or user namespace only by calling setns itself, so
// the tracer stops it (PTRACE_SEIZE + PTRACE_INTERRUPT), saves its registers and signal mask,
// blocks its signals, single-steps it over a syscall instruction of its own vDSO once per
// system call it is to make, then restores everything and lets it go:
//
//   mmap                        a scratch page for the strings the calls below read (only when
//                               its stack has no room below the red zone)
//   pidfd_open(holder)          a process pnsd starts inside the destination (pns-holder)
//   setns(pidfd, USER|NS)       user namespace first (a satellite), then mount namespace
//   close
//   prctl(CAPBSET_DROP), capset a satellite gives full capabilities in it: back to what it had,
//                               before the lookup below, so it is made with the process's rights
//   chdir(cwd)                  back to its working directory, as seen in the view
//   munmap
//
// (the list of steps in agent/join/injection.cpp, in this order: when each is skipped, its
// call, and what its result means, unit-tested in tests/unit/injection_test.cpp). The holder is started at the first stop and the
// steps begin once it is ready; the tracer thread never blocks on it, since its user may stop it.
//
// A thread stopped inside a blocking system call has it restarted when it resumes, exactly
// as after a signal without handler (the kernel rewinds it because its registers are the
// saved ones again), so it sees no EINTR and sleeps end on time. Signals that arrive are
// held (blocked, or taken at a stop) and delivered when it goes.
//
// The kernel lets only a single-threaded process with its own fs_struct join, so a
// multithreaded process is supervised instead: every thread traced with
// PTRACE_O_TRACE{FORK,VFORK,CLONE,EXEC} (no syscall stops); each child process it starts
// joins before its first instruction, and the process itself joins at its next exec.
//
// A join is decided on the process as it is at the stop (DESIGN.md, decision 8): before the
// first injected call, its identity (ids, groups, capabilities, dumpability, user namespace)
// is read again and must be what pnsd authorized; else the process is let go untouched. An
// execve between the authorization and the stop that changed nothing of it (a program without
// set-uid, set-gid or file capabilities) is joined; one that did is not. The holder is made
// from the authorized identity, never from the process's current one.
//
// pnsd names the process to join by a pidfd, taken when it learned the pid; every signal it
// sends it goes through that pidfd.
//
// All ptrace work happens on one thread (a tracee belongs to the thread that attached it),
// as a state machine per process driven by waitpid: a process stuck in the kernel holds up
// nothing else. Results come back as events, read on pnsd's main thread.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/proc.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

class Tracker;

// Where a process goes: the namespaces a holder process enters, and the target after it.
struct Destination {
    std::string ns;  // the pns namespace (for events and logs)
    UniqueFd user;   // a satellite's user namespace; invalid for the primary or the host
    UniqueFd mnt;    // the mount namespace
    // The tracker to tell, while the process is still stopped (so it cannot have exited and
    // left a stale entry): the namespace's id there, and the policy cgroup, if any.
    Tracker* tracker = nullptr;
    std::uint32_t tracker_ns = 0;
    std::uint64_t cgroup = 0;
};

// Whether a process to join is held: stopped by the tracker at its exec (bpf/tracker.bpf.c)
// until its policy join is done, and continued (SIGCONT) once it is in the view.
enum class Held { kNo, kAtExec };

struct TraceEvent {
    enum class Kind {
        kJoined,       // the process is in the view
        kSupervising,  // it is multithreaded: its children join, it joins at its next exec
        kPending,      // it has not stopped after a second (busy in the kernel); joins when it does
        kFailed,       // it did not join and carries on as before; `message` says why
        kExecJoined,   // a supervised process exec'd and joined; supervision is over
        kEnded,        // a supervision ended without the process joining (`message`: why)
        kChildJoined,  // a child of a supervised process joined before its first instruction
        kChildFailed,  // a child of a supervised process could not join (`message`)
    };
    Kind kind;
    std::uint64_t request = 0;  // the join this is about
    pid_t pid = 0;
    int code = 0;         // errno of a failure
    std::string message;  // a failure, or a warning (working directory not in the view)
};

class Tracer {
  public:
    // Finds and opens the holder program (pns-holder: beside pnsd, or where it is installed
    // relative to pnsd), then starts the tracer thread.
    static Result<std::unique_ptr<Tracer>> start();
    // Finishes every injection in progress, lets every supervised process go, and stops.
    ~Tracer();
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    // Readable when events are waiting.
    int event_fd() const { return events_fd_.get(); }
    std::vector<TraceEvent> take_events();

    // Makes process `pid`, which `pidfd` names, join `destination`, if it is still as
    // `authorized` when it stops (a supervised one: at each fork and at its exec). The pidfd
    // is checked once the process is stopped, so a pid reused since pnsd opened it is left
    // alone. Answers with kJoined, kSupervising, kPending or kFailed, then more events.
    // `held`: Held::kAtExec when the tracker stopped it at exec: SIGCONT once it joined.
    void join(std::uint64_t request, pid_t pid, std::shared_ptr<const UniqueFd> pidfd,
              proc::Identity authorized, std::shared_ptr<const Destination> destination,
              Held held = Held::kNo);

    // Ends the supervision of `pid` (its threads are let go, nothing else changes).
    void release(pid_t pid);

    class Loop;  // the tracer thread's state (agent/join/tracer.cpp)

  private:
    struct Command {
        enum class Kind { kJoin, kRelease, kStop } kind;
        std::uint64_t request = 0;
        pid_t pid = 0;
        std::shared_ptr<const UniqueFd> pidfd;
        proc::Identity authorized;
        std::shared_ptr<const Destination> destination;
        bool resume = false;
    };

    Tracer(UniqueFd commands, UniqueFd events, UniqueFd holder_program);
    void post(Command command);
    void emit(TraceEvent event);
    std::vector<Command> take_commands();

    UniqueFd commands_fd_;     // eventfd: commands waiting for the tracer thread
    UniqueFd events_fd_;       // eventfd: events waiting for the main thread
    UniqueFd holder_program_;  // O_PATH of pns-holder, exec'd for every holder
    std::mutex mutex_;
    std::vector<Command> commands_;
    std::vector<TraceEvent> events_;
    std::thread thread_;
};

}  // namespace pns::agent
