// Joining one process: its stop, the checks made on it then, the injection's steps
// (agent/join/injection.hpp) and letting it go.
#include "agent/join/tracer_loop.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "agent/bpf/tracker.hpp"
#include "agent/join/remote.hpp"

namespace pns::agent {

using namespace tracing;
using namespace remote;

using injection::kMaxCwd;

void Tracer::Loop::start_attach(const Command& command) {
    pid_t pid = command.pid;
    if (stopping_) {
        emit(TraceEvent::Kind::kFailed, command.request, pid, "pnsd is stopping", ESHUTDOWN);
        return;
    }
    if (auto it = jobs_.find(pid); it != jobs_.end() && it->second.origin == Job::Origin::kAttach) {
        Job& job = it->second;
        if (job.authorized == command.authorized) {
            // Being joined already, for the same identity: the answer of that join is this
            // one's too.
            job.resume = job.resume || command.resume;
            job.also.push_back(command.request);
            return;
        }
        if (job.phase == Job::Phase::kWaitStop) {
            // Authorized anew, as what it is now (it exec'd between the two requests): the
            // later authorization is the one the stop is checked against.
            job.also.push_back(job.request);
            job.request = command.request;
            job.authorized = command.authorized;
            job.dest = command.destination;
            job.pidfd_of = command.pidfd;
            job.resume = job.resume || command.resume;
            return;
        }
    }
    if (jobs_.contains(pid) || supervised_.contains(pid)) {
        emit(TraceEvent::Kind::kFailed, command.request, pid, "is already being joined", EBUSY);
        return;
    }
    if (!command.pidfd || !proc::pidfd_alive(command.pidfd->get())) {
        // Gone since pnsd was asked: its pid may be another process's already.
        emit(TraceEvent::Kind::kFailed, command.request, pid, "is gone", ESRCH);
        return;
    }
    if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) {
        int err = errno;
        std::string why =
            err == ESRCH ? "is gone" : std::string("cannot be traced: ") + std::strerror(err);
        if (err == EPERM) {
            auto status = proc::read_status(pid);
            if (status && status->tracer != 0)
                why = "is traced by " + describe(status->tracer) + "; pns cannot join it meanwhile";
        }
        emit(TraceEvent::Kind::kFailed, command.request, pid, why, err);
        return;
    }
    if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) {
        int err = errno;
        emit(TraceEvent::Kind::kFailed, command.request, pid,
             std::string("cannot be stopped: ") + std::strerror(err), err);
        return;  // a running tracee cannot be detached; the kernel lets it go when it exits
    }
    Job job;
    job.origin = Job::Origin::kAttach;
    job.tid = pid;
    job.request = command.request;
    job.pidfd_of = command.pidfd;
    job.authorized = command.authorized;
    job.dest = command.destination;
    job.resume = command.resume;
    jobs_.emplace(pid, std::move(job));
}

void Tracer::Loop::job_status(Job& job, int status) {
    pid_t tid = job.tid;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        // Killed by someone else while it was being joined: nothing left to restore.
        fail(job, Error{ESRCH, "exited while joining"});
        conclude(job, Ended::kExited);
        return;
    }
    if (!WIFSTOPPED(status)) return;
    int sig = WSTOPSIG(status);
    int event = event_of(status);
    job.at_signal_stop = event == 0;

    switch (job.phase) {
        case Job::Phase::kWaitStop:
            // The interrupt (or a new child's first stop, or a group stop): outside any system
            // call, before the kernel decides on restarting the one it interrupted.
            if (event == 0 && job.origin == Job::Origin::kAttach) {
                // A signal dequeued just before the interrupt: delivered now, as it would have
                // been (holding it would put it behind signals queued after it); the interrupt
                // stop comes next, before any further signal.
                ::ptrace(PTRACE_CONT, tid, nullptr,
                         reinterpret_cast<void*>(static_cast<long>(sig)));
                return;
            }
            if (event == 0) job.held_signals.push_back(sig);
            if (event == 0 || event == PTRACE_EVENT_STOP) {
                job.first_stop_signal = sig;
                return begin(job);
            }
            ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
            return;
        case Job::Phase::kSettle:
            // Stepped out of execve to its syscall-exit trap: not one instruction has run yet.
            if (event == 0 && sig == SIGTRAP) return begin(job);
            if (event == 0) job.held_signals.push_back(sig);
            ::ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr);
            return;
        case Job::Phase::kSteps:
            if (event == 0 && sig == SIGTRAP) {
                auto regs = arch::get_registers(tid);
                if (!regs) {
                    fail(job, regs.error());
                    return finish(job);
                }
                if (arch::instruction_pointer(*regs) !=
                    job.insn + arch::syscall_instruction().size()) {
                    // The trap came before the instruction ran: step again.
                    ::ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr);
                    return;
                }
                return on_step_done(job, arch::syscall_result(*regs));
            }
            // A group stop, or a signal that cannot be blocked (SIGSTOP): held for the end.
            if (event == 0) job.held_signals.push_back(sig);
            ::ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr);
            return;
        case Job::Phase::kWaitHolder:
            // Not resumed since its first stop: nothing should come but its death (above).
            if (event == 0) job.held_signals.push_back(sig);
            return;
    }
}

void Tracer::Loop::fail(Job& job, Error error) {
    if (!job.error) job.error = std::move(error);
    job.state.failed = true;  // the injection's steps that follow are the cleanup ones
}

// What changed about the process stopped at `tid` since pnsd authorized its join as
// `authorized` ("" when nothing did). The decision is made on the process as it is now,
// stopped, before it is made to run anything (DESIGN.md, decision 8). Between pnsd's check and
// this stop it may have exec'd. A set-uid or set-gid program, or one with file capabilities,
// then runs with what the exec gave it: while pnsd, which has CAP_SYS_PTRACE, traces it, the
// kernel keeps that raise (security/commoncap.c: cap_bprm_creds_from_file drops it for a traced
// exec only when the tracer is not capable), as it would without pns. Such a process is let go
// as it is, outside the view, and runs the program with the privileges it has a right to, as
// if pnsd had never been asked: neither stopped for good nor killed, and nothing is injected
// into it; its registers, memory and signal mask are untouched (this runs before any of them
// is saved or changed). An exec that changed nothing of its identity is joined.
Result<std::string> Tracer::Loop::changes_since(pid_t tid, const proc::Identity& authorized) {
    auto now = proc::read_identity(tid);
    if (!now) return Error(std::move(now).error());
    if (auto change = proc::identity_change(authorized, *now); !change.empty()) return change;
    if (now->exe_ino != authorized.exe_ino || now->exe_dev != authorized.exe_dev) {
        auto exe = proc::read_link(tid, "exe");
        spdlog::debug(
            "tracer: {} exec'd '{}' after pnsd checked it; its identity is the same, so "
            "it joins as authorized",
            describe(tid), exe ? *exe : std::string("?"));
    }
    return std::string();
}

// Saves the registers and signal mask of the process at its first stop (finish() puts them
// back) and blocks every signal: nothing that arrives now is delivered before everything is
// as it was.
Status Tracer::Loop::save_and_block_signals(Job& job) {
    pid_t tid = job.tid;
    auto regs = arch::get_registers(tid);
    if (!regs) return regs.error();
    if (!arch::native_abi(*regs))
        return Error{ENOEXEC, "is a 32-bit process; pns joins only native 64-bit ones"};
    std::uint64_t mask = 0;
    if (::ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) != 0)
        return sys_error("read its signal mask");
    job.saved = *regs;
    job.saved_mask = mask;
    job.saved_valid = true;
    std::uint64_t block = all_signals();
    if (::ptrace(PTRACE_SETSIGMASK, tid, sizeof block, &block) != 0)
        return sys_error("block its signals");
    return {};
}

// At the first stop: check, save, plan, and start the steps.
void Tracer::Loop::begin(Job& job) {
    pid_t tid = job.tid;
    if (job.origin == Job::Origin::kAttach &&
        (!job.pidfd_of || !proc::pidfd_alive(job.pidfd_of->get()))) {
        // The process pnsd was asked about is gone; `tid` is another one that took its pid.
        fail(job, Error{ESRCH, "is gone (its pid now names another process)"});
        return finish(job);
    }
    const proc::Identity& authorized = job.sup ? job.sup->authorized : job.authorized;
    auto change = changes_since(tid, authorized);
    if (!change || !change->empty()) {
        fail(job, change ? Error{EPERM, "changed after pnsd checked it (" + *change +
                                            "): it exec'd a privileged program in between; not "
                                            "joined, it carries on as it is"}
                         : change.error());
        return finish(job);
    }
    auto status = proc::read_status(tid);
    if (!status) {
        fail(job, status.error());
        return finish(job);
    }
    if (status->seccomp == 2) {
        // Installed since pnsd checked it: an injected system call could be refused or kill it.
        fail(job, Error{EPERM, "runs under a seccomp filter now; left alone"});
        return finish(job);
    }
    if (job.origin == Job::Origin::kAttach && status->threads > 1) {
        // Threads appeared since pnsd looked: supervise it instead.
        auto sup = std::make_shared<Supervision>();
        sup->tgid = tid;
        sup->request = job.request;
        sup->dest = job.dest;
        sup->authorized = job.authorized;
        std::uint64_t request = job.request;
        int held = job.held_signals.empty() ? 0 : job.held_signals.front();
        bool group_stop = !job.at_signal_stop && is_stop_signal(job.first_stop_signal);
        jobs_.erase(tid);
        if (auto st = start_supervision(sup, tid, held, group_stop); !st) {
            emit(TraceEvent::Kind::kFailed, request, tid, st.error().message, st.error().code);
            return;
        }
        emit(TraceEvent::Kind::kSupervising, request, tid);
        return;
    }

    if (auto st = save_and_block_signals(job); !st) {
        fail(job, st.error());
        return finish(job);
    }

    // A child has its parent's memory layout (its vDSO too) until it execs.
    if (job.origin == Job::Origin::kChild && job.sup->insn != 0) {
        job.insn = job.sup->insn;
    } else {
        auto insn = find_syscall_instruction(tid);
        if (!insn) {
            fail(job, insn.error());
            return finish(job);
        }
        job.insn = *insn;
        if (job.sup && job.origin != Job::Origin::kExec) job.sup->insn = job.insn;
    }

    // Holder: one per supervision (shared by its children), else one for this join; made
    // from the identity the join was authorized for.
    if (job.sup && job.sup->holder) {
        job.holder = job.sup->holder;
    } else {
        auto holder = Holder::start(holder_program(), *job.dest, authorized);
        if (!holder) {
            fail(job, holder.error());
            return finish(job);
        }
        job.holder = *holder;
        if (job.sup) job.sup->holder = job.holder;
    }
    if (job.holder->starting()) {
        job.phase = Job::Phase::kWaitHolder;  // holders_ready() goes on
        return;
    }
    plan(job);
}

// Holders whose ready descriptor is readable: the jobs that waited for them go on, or fail.
void Tracer::Loop::holders_ready(const std::vector<int>& readable) {
    std::map<Holder*, Status> settled;
    for (auto& [tid, job] : jobs_) {
        if (job.phase != Job::Phase::kWaitHolder || !job.holder->starting() ||
            std::find(readable.begin(), readable.end(), job.holder->ready_fd()) == readable.end())
            continue;
        settled.emplace(job.holder.get(), job.holder->settle(job.dest->ns));
    }
    std::vector<pid_t> waiting;
    for (const auto& [tid, job] : jobs_)
        if (job.phase == Job::Phase::kWaitHolder && settled.contains(job.holder.get()))
            waiting.push_back(tid);
    for (pid_t tid : waiting) {
        auto it = jobs_.find(tid);
        if (it == jobs_.end()) continue;
        Job& job = it->second;
        if (job.holder->starting()) continue;  // nothing read after all
        const Status& st = settled.at(job.holder.get());
        if (!st) {
            if (job.sup && job.sup->holder == job.holder) job.sup->holder.reset();
            fail(job, st.error());
            finish(job);
            continue;
        }
        plan(job);
    }
}

// With a holder ready: what the steps do, then the first step.
void Tracer::Loop::plan(Job& job) {
    pid_t tid = job.tid;
    auto status = proc::read_status(tid);
    if (!status) {
        fail(job, status.error());
        return finish(job);
    }
    job.state.holder = job.holder->pid();
    job.state.ns_flags = CLONE_NEWNS;
    if (job.dest->user) {
        struct stat dest_user {};
        auto own_user = proc::namespace_inode(tid, "user");
        if (::fstat(job.dest->user.get(), &dest_user) == 0 && own_user &&
            *own_user != dest_user.st_ino) {
            job.state.ns_flags |= CLONE_NEWUSER;
            // setns gives full capabilities in the user namespace: they are set back to what
            // the process had (none: pnsd does not move non-root processes holding any).
            job.state.restore_caps = true;
            job.state.cap_inheritable = status->cap_inheritable;
            job.state.bounding = status->cap_bounding;
        }
    }
    job.state.last_cap = last_capability();

    auto cwd = proc::read_link(tid, "cwd");
    if (!cwd || cwd->empty() || cwd->front() != '/' || cwd->ends_with(" (deleted)") ||
        cwd->size() > kMaxCwd) {
        job.warning = "its working directory " +
                      (cwd ? "'" + *cwd + "'" : std::string("(unreadable)")) +
                      " cannot be followed into the view; it is now at '/'";
        job.state.cwd.clear();
    } else if (*cwd != "/") {
        job.state.cwd = *cwd;
    }

    // The scratch area below the stack's red zone, if the stack reaches that far (else the
    // first step maps a page).
    auto bytes = injection::scratch_bytes(job.state);
    std::uint64_t at =
        (arch::stack_pointer(job.saved) - arch::red_zone() - bytes.size()) & ~15ULL;
    job.stack_bytes.resize(bytes.size());
    if (read_memory(tid, at, job.stack_bytes) && write_memory(tid, at, bytes)) {
        job.state.scratch = at;
        job.state.scratch_on_stack = true;
    } else {
        spdlog::debug("tracer: {}: no room below its stack pointer; mapping a scratch page",
                      describe(tid));
    }

    job.phase = Job::Phase::kSteps;
    job.state.step = injection::Step::kMmap;
    run_step(job);
}

// Runs the injection's next step (agent/join/injection.hpp) in the process: its system call,
// on the syscall instruction found at the first stop, by one single step.
void Tracer::Loop::run_step(Job& job) {
    if (injection::next(job.state) == injection::Step::kDone) return finish(job);
    const injection::Call call = injection::call(job.state);
    arch::Registers regs = job.saved;
    arch::prepare_syscall(regs, job.insn, call.nr, call.args);
    if (auto st = arch::set_registers(job.tid, regs); !st) {
        fail(job, st.error());
        return finish(job);
    }
    if (::ptrace(PTRACE_SINGLESTEP, job.tid, nullptr, nullptr) != 0) {
        fail(job, sys_error("step"));
        return finish(job);
    }
}

void Tracer::Loop::on_step_done(Job& job, long result) {
    const injection::Step step = job.state.step;
    injection::Outcome outcome = injection::on_result(job.state, result);
    if (outcome.error) fail(job, std::move(*outcome.error));
    if (!outcome.warning.empty()) job.warning = std::move(outcome.warning);
    if (!outcome.error && step == injection::Step::kMmap &&
        !write_memory(job.tid, job.state.scratch, injection::scratch_bytes(job.state)))
        fail(job, sys_error("write into its scratch page"));
    // The process named the holder by its pid: that pid named the holder as long as the
    // holder has not been reaped (this thread reaps it), whoever killed it.
    if (!outcome.error && step == injection::Step::kPidfd && !job.holder->alive())
        fail(job, Error{ESRCH, "pnsd's holder in the view went away meanwhile"});
    run_step(job);
}

// Puts everything back and lets the process go.
void Tracer::Loop::finish(Job& job) {
    pid_t tid = job.tid;
    if (job.state.scratch_on_stack && !write_memory(tid, job.state.scratch, job.stack_bytes))
        spdlog::error("tracer: {}: restore its stack: {}", describe(tid), std::strerror(errno));
    if (job.saved_valid) {
        if (auto st = arch::set_registers(tid, job.saved); !st)
            spdlog::error("tracer: {}: restore registers: {}", describe(tid), st.error().message);
        if (::ptrace(PTRACE_SETSIGMASK, tid, sizeof job.saved_mask, &job.saved_mask) != 0)
            spdlog::error("tracer: {}: restore signal mask: {}", describe(tid),
                          std::strerror(errno));
    }
    const bool held = job.resume && !job.error;
    const bool tell_tracker = !job.error && job.dest->tracker && job.dest->tracker_ns;
    const pns_member member{job.dest->tracker_ns, PNS_STATE_MEMBER, job.dest->cgroup};
    if (tell_tracker && !held) {
        if (auto st = job.dest->tracker->set_member(tid, member); !st)
            spdlog::error("tracker: {}", st.error().message);
    }
    // PTRACE_DETACH delivers a signal only from a signal-delivery-stop; any other held signal
    // is sent again (its siginfo becomes the kernel's).
    std::size_t first_resent = 0;
    int deliver = 0;
    if (job.at_signal_stop && !job.held_signals.empty()) {
        deliver = job.held_signals.front();
        first_resent = 1;
    }
    // What is sent after the detach goes through a pidfd, opened while pnsd still traces the
    // process (so it cannot have exited and had its pid taken), or given with the request.
    std::shared_ptr<const UniqueFd> pidfd = job.pidfd_of;
    if (!pidfd)
        if (auto opened = proc::open_pidfd(tid); opened)
            pidfd = std::make_shared<const UniqueFd>(std::move(*opened));
    ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver)));
    for (std::size_t i = first_resent; i < job.held_signals.size(); ++i)
        if (pidfd) (void)proc::signal_pidfd(pidfd->get(), job.held_signals[i]);
    if (held) {
        // Held at exec by the tracker: its map says so until it runs again, so that a pnsd
        // killed before this SIGCONT leaves a process the next one lets go (finish_holds),
        // not one stopped for good. Updated only if still there: it may have exited already.
        if (pidfd) (void)proc::signal_pidfd(pidfd->get(), SIGCONT);
        if (tell_tracker && pidfd && proc::pidfd_alive(pidfd->get()))
            if (auto st = job.dest->tracker->update_member(tid, member); !st)
                spdlog::error("tracker: {}", st.error().message);
    }
    conclude(job, Ended::kLetGo);
}

// Reports the outcome and forgets the job (and, after an exec, the supervision).
void Tracer::Loop::conclude(Job& job, Ended ended) {
    pid_t tid = job.tid;
    auto origin = job.origin;
    auto sup = job.sup;
    std::uint64_t request = job.request;
    std::optional<Error> error = job.error;
    std::string warning = job.warning;
    std::vector<std::uint64_t> requests = job.also;
    requests.insert(requests.begin(), request);
    drop_job(tid);
    switch (origin) {
        case Job::Origin::kAttach:
            for (std::uint64_t r : requests) {
                if (error)
                    emit(TraceEvent::Kind::kFailed, r, tid, error->message, error->code);
                else
                    emit(TraceEvent::Kind::kJoined, r, tid, warning);
            }
            break;
        case Job::Origin::kChild:
            if (error)
                emit(TraceEvent::Kind::kChildFailed, request, tid, error->message, error->code);
            else
                emit(TraceEvent::Kind::kChildJoined, request, tid, warning);
            break;
        case Job::Origin::kExec:
            sup->threads.erase(tid);
            supervised_.erase(tid);
            if (ended == Ended::kExited)
                sup->end_reason = "exited";
            else if (error)
                sup->end_reason = "its exec could not join: " + error->message;
            else {
                emit(TraceEvent::Kind::kExecJoined, request, tid, warning);
                sup->end_reason.clear();
            }
            sup->ending = true;
            end_supervision(sup);
            break;
    }
}

void Tracer::Loop::drop_job(pid_t tid) {
    jobs_.erase(tid);
}

}  // namespace pns::agent
