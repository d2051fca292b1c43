// The tracer thread's state (agent/join/tracer.hpp says what the tracer does), shared by the
// files that implement it: tracer.cpp (the loop, its commands and the public side),
// tracer_join.cpp (joining one process: the stop, the checks, the injection's steps, the
// detach) and supervision.cpp (multithreaded processes). Private to agent/join/.
#pragma once

#include <signal.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/arch/arch.hpp"
#include "agent/join/holder_process.hpp"
#include "agent/join/injection.hpp"
#include "agent/join/tracer.hpp"
#include "agent/proc.hpp"

namespace pns::agent {

namespace tracing {

using Clock = std::chrono::steady_clock;

// An attach answers "pending" when the process has not stopped by then.
inline constexpr auto kPendingAfter = std::chrono::seconds(1);
// How long pnsd waits, when it stops, for injections in progress to finish.
inline constexpr auto kStopGrace = std::chrono::seconds(3);
inline constexpr long kSupervisionOptions =
    PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;

inline int event_of(int status) {
    return status >> 16;
}

inline void wake(int fd) {
    std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
}

inline void drain(int fd) {
    std::uint64_t n;
    (void)!::read(fd, &n, sizeof n);
}

inline bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

inline std::string describe(pid_t pid) {
    auto status = proc::read_status(pid);
    return std::to_string(pid) + (status ? " (" + status->name + ")" : std::string());
}

}  // namespace tracing

class Tracer::Loop {
    using Clock = tracing::Clock;

  public:
    Loop(Tracer& owner, UniqueFd sigchld) : owner_(owner), sigchld_(std::move(sigchld)) {}
    int holder_program() const { return owner_.holder_program_.get(); }
    void run();

  private:
    struct Supervision;

    // One process being made to join: the steps of the injection, one stop at a time.
    struct Job {
        enum class Origin { kAttach, kChild, kExec } origin;
        // kWaitHolder: stopped, checked and saved, until its holder is ready.
        enum class Phase { kWaitStop, kSettle, kWaitHolder, kSteps } phase = Phase::kWaitStop;

        pid_t tid = 0;
        std::uint64_t request = 0;
        // kAttach: the process pnsd was asked about, checked to be `tid` at the first stop;
        // the others are opened at their stop (pnsd is their tracer then). Signals sent after
        // the detach go through it.
        std::shared_ptr<const UniqueFd> pidfd_of;
        proc::Identity authorized;  // kAttach; a supervision's jobs use the supervision's
        std::shared_ptr<const Destination> dest;
        std::shared_ptr<Supervision> sup;  // the supervision it belongs to, if any
        std::shared_ptr<Holder> holder;
        Clock::time_point started = Clock::now();
        bool reported_pending = false;
        bool resume = false;              // SIGCONT after it is let go (held at exec)
        std::vector<std::uint64_t> also;  // later requests for the same process

        // What is saved at the first stop and put back at the end.
        arch::Registers saved{};
        std::uint64_t saved_mask = 0;
        bool saved_valid = false;
        std::vector<int> held_signals;  // arrived during the steps, delivered at the end
        bool at_signal_stop = false;    // the current stop is a signal-delivery-stop
        int first_stop_signal = 0;      // WSTOPSIG of the first stop (a group stop's signal)

        // The injection (agent/join/injection.hpp): its plan, made at the first stop, and its
        // progress.
        std::uint64_t insn = 0;  // a syscall instruction in the process's memory
        injection::State state;
        std::vector<char> stack_bytes;  // what the scratch area held on the stack
        std::string warning;
        std::optional<Error> error;  // the first failure; the cleanup steps still run
    };

    struct Supervision {
        pid_t tgid = 0;
        std::uint64_t request = 0;
        std::shared_ptr<const Destination> dest;
        proc::Identity authorized;  // its children and its exec join only as this
        std::shared_ptr<Holder> holder;
        std::set<pid_t> threads;
        std::uint64_t insn = 0;  // a syscall instruction in its memory (found by its first child)
        bool ending = false;
        std::string end_reason;
    };

    void handle_commands();
    void reap();
    void on_status(pid_t tid, int status);
    void check_deadlines();
    int poll_timeout() const;

    void start_attach(const Command& command);
    void release(pid_t pid, const std::string& why);
    Result<std::string> changes_since(pid_t tid, const proc::Identity& authorized);
    void begin(Job& job);
    Status save_and_block_signals(Job& job);
    void plan(Job& job);
    void holders_ready(const std::vector<int>& readable);
    void run_step(Job& job);
    void on_step_done(Job& job, long result);
    void finish(Job& job);
    // How a job ended: the process let go, or dead (exited or killed while being joined).
    enum class Ended { kLetGo, kExited };
    void conclude(Job& job, Ended ended);
    void job_status(Job& job, int status);
    void drop_job(pid_t tid);

    // `leader` is already seized and stopped; it resumes with `signal` (or stays in its
    // group stop).
    Status start_supervision(const std::shared_ptr<Supervision>& sup, pid_t leader, int signal,
                             bool group_stop);
    void supervised_status(const std::shared_ptr<Supervision>& sup, pid_t tid, int status);
    void on_new_task(const std::shared_ptr<Supervision>& sup, pid_t parent, pid_t child);
    void end_supervision(const std::shared_ptr<Supervision>& sup);
    void detach_thread(const std::shared_ptr<Supervision>& sup, pid_t tid, int sig);

    void emit(TraceEvent::Kind kind, std::uint64_t request, pid_t pid, std::string message = {},
              int code = 0) {
        owner_.emit(TraceEvent{kind, request, pid, code, std::move(message)});
    }
    void fail(Job& job, Error error);

    Tracer& owner_;
    UniqueFd sigchld_;
    bool stopping_ = false;
    Clock::time_point stop_deadline_{};
    std::map<pid_t, Job> jobs_;                                   // by tid
    std::map<pid_t, std::shared_ptr<Supervision>> supervised_;    // by tid of each thread
    std::map<pid_t, std::shared_ptr<Supervision>> supervisions_;  // by tgid
    std::map<pid_t, int> early_stops_;  // stops of new tasks reported before their parent's event
};

}  // namespace pns::agent
