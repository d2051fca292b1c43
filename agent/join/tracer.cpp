#include "agent/join/tracer.hpp"
#include "agent/join/tracer_loop.hpp"

#include <sys/eventfd.h>
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

// ---- The tracer thread ----------------------------------------------------------------

void Tracer::Loop::run() {
    for (;;) {
        std::vector<pollfd> fds = {{owner_.commands_fd_.get(), POLLIN, 0},
                                   {sigchld_.get(), POLLIN, 0}};
        for (const auto& entry : jobs_) {
            const Job& job = entry.second;
            if (job.phase != Job::Phase::kWaitHolder || !job.holder->starting()) continue;
            int fd = job.holder->ready_fd();
            if (std::none_of(fds.begin(), fds.end(), [fd](const pollfd& p) { return p.fd == fd; }))
                fds.push_back({fd, POLLIN, 0});
        }
        int n = ::poll(fds.data(), fds.size(), poll_timeout());
        if (n < 0 && errno != EINTR) {
            spdlog::error("tracer: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[1].revents & POLLIN) {
            signalfd_siginfo info;
            while (::read(sigchld_.get(), &info, sizeof info) == sizeof info) {
            }
        }
        if (fds[0].revents & POLLIN) {
            drain(owner_.commands_fd_.get());
            handle_commands();
        }
        std::vector<int> readable;
        for (std::size_t i = 2; n > 0 && i < fds.size(); ++i)
            if (fds[i].revents) readable.push_back(fds[i].fd);
        if (!readable.empty()) holders_ready(readable);
        reap();
        check_deadlines();
        if (stopping_ && (jobs_.empty() || Clock::now() >= stop_deadline_)) {
            for (auto& [tid, job] : jobs_)
                spdlog::warn("tracer: stopping with {} still joining", describe(tid));
            return;  // the kernel lets every remaining tracee go when this thread exits
        }
    }
}

int Tracer::Loop::poll_timeout() const {
    if (stopping_) return 50;
    for (const auto& [tid, job] : jobs_)
        if ((job.origin == Job::Origin::kAttach && !job.reported_pending) ||
            job.phase == Job::Phase::kWaitHolder)
            return 100;
    return -1;
}

void Tracer::Loop::handle_commands() {
    for (auto& command : owner_.take_commands()) {
        switch (command.kind) {
            case Command::Kind::kJoin:
                start_attach(command);
                break;
            case Command::Kind::kRelease:
                release(command.pid, "released");
                break;
            case Command::Kind::kStop: {
                stopping_ = true;
                stop_deadline_ = Clock::now() + kStopGrace;
                std::vector<pid_t> all;
                for (const auto& [tgid, sup] : supervisions_) all.push_back(tgid);
                for (pid_t tgid : all) release(tgid, "pnsd stopped");
                // Those waiting for a holder are put back as they were, not left with every
                // signal blocked.
                std::vector<pid_t> waiting;
                for (const auto& [tid, job] : jobs_)
                    if (job.phase == Job::Phase::kWaitHolder) waiting.push_back(tid);
                for (pid_t tid : waiting) {
                    auto it = jobs_.find(tid);
                    if (it == jobs_.end()) continue;
                    fail(it->second, Error{ESHUTDOWN, "pnsd is stopping"});
                    finish(it->second);
                }
                break;
            }
        }
    }
}

void Tracer::Loop::reap() {
    for (;;) {
        int status = 0;
        pid_t tid = ::waitpid(-1, &status, WNOHANG | __WALL | __WNOTHREAD);
        if (tid <= 0) return;
        on_status(tid, status);
    }
}

void Tracer::Loop::on_status(pid_t tid, int status) {
    if (auto it = jobs_.find(tid); it != jobs_.end()) return job_status(it->second, status);
    if (auto it = supervised_.find(tid); it != supervised_.end()) {
        auto sup = it->second;
        return supervised_status(sup, tid, status);
    }
    // A holder's exit, or a new task's first stop reported before its parent's event.
    if (WIFSTOPPED(status))
        early_stops_[tid] = status;
    else
        early_stops_.erase(tid);
}

void Tracer::Loop::check_deadlines() {
    auto now = Clock::now();
    std::vector<pid_t> late;  // waiting for a holder that is not ready in time
    for (const auto& [tid, job] : jobs_)
        if (job.phase == Job::Phase::kWaitHolder && now - job.holder->started() >= kHolderPatience)
            late.push_back(tid);
    for (pid_t tid : late) {
        auto it = jobs_.find(tid);
        if (it == jobs_.end()) continue;
        Job& job = it->second;
        auto holder = job.holder;  // starting: a settled one has moved its jobs on
        Error error = holder->give_up(job.dest->ns);
        if (job.sup && job.sup->holder == holder) job.sup->holder.reset();
        spdlog::info("tracer: {}: {}", describe(tid), error.message);
        fail(job, std::move(error));
        finish(job);
    }
    for (auto& [tid, job] : jobs_) {
        if (job.origin != Job::Origin::kAttach || job.reported_pending ||
            job.phase != Job::Phase::kWaitStop || now - job.started < kPendingAfter)
            continue;
        job.reported_pending = true;
        auto status = proc::read_status(tid);
        emit(TraceEvent::Kind::kPending, job.request, tid,
             "has not stopped yet (state " + std::string(1, status ? status->state : '?') +
                 ", busy in the kernel); it joins as soon as it returns");
    }
}

// ---- The public side ------------------------------------------------------------------

Tracer::Tracer(UniqueFd commands, UniqueFd events, UniqueFd holder_program)
    : commands_fd_(std::move(commands)),
      events_fd_(std::move(events)),
      holder_program_(std::move(holder_program)) {}

Result<std::unique_ptr<Tracer>> Tracer::start() {
    auto holder_program = open_holder_program();
    if (!holder_program) return Error(std::move(holder_program).error());
    UniqueFd commands(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    UniqueFd events(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!commands || !events) return sys_error("eventfd");
    // SIGCHLD is blocked in every thread of pnsd (main blocks it before any thread starts) and
    // read here, so tracee stops wake this thread and nothing else.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
    if (!sigismember(&blocked, SIGCHLD))
        return Error{EINVAL, "SIGCHLD must be blocked before the tracer starts"};
    UniqueFd sigchld(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!sigchld) return sys_error("signalfd");
    std::unique_ptr<Tracer> tracer(
        new Tracer(std::move(commands), std::move(events), std::move(*holder_program)));
    Tracer* self = tracer.get();
    tracer->thread_ = std::thread([self, fd = sigchld.release()] {
        Loop loop(*self, UniqueFd(fd));
        loop.run();
    });
    return tracer;
}

Tracer::~Tracer() {
    post(Command{Command::Kind::kStop});
    thread_.join();
}

void Tracer::post(Command command) {
    {
        std::lock_guard lock(mutex_);
        commands_.push_back(std::move(command));
    }
    wake(commands_fd_.get());
}

std::vector<Tracer::Command> Tracer::take_commands() {
    std::lock_guard lock(mutex_);
    return std::exchange(commands_, {});
}

void Tracer::emit(TraceEvent event) {
    {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(event));
    }
    wake(events_fd_.get());
}

std::vector<TraceEvent> Tracer::take_events() {
    drain(events_fd_.get());
    std::lock_guard lock(mutex_);
    return std::exchange(events_, {});
}

void Tracer::join(std::uint64_t request, pid_t pid, std::shared_ptr<const UniqueFd> pidfd,
                  proc::Identity authorized, std::shared_ptr<const Destination> destination,
                  Held held) {
    post(Command{Command::Kind::kJoin, request, pid, std::move(pidfd), std::move(authorized),
                 std::move(destination), held == Held::kAtExec});
}

void Tracer::release(pid_t pid) {
    Command command{Command::Kind::kRelease};
    command.pid = pid;
    post(std::move(command));
}

}  // namespace pns::agent
