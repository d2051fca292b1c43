// Supervision: a multithreaded process cannot join (setns refuses it), so every thread is
// traced until it execs, and each child it starts joins before its first instruction.
#include "agent/join/tracer_loop.hpp"

#include <dirent.h>
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

Status Tracer::Loop::start_supervision(const std::shared_ptr<Supervision>& sup, pid_t leader,
                                       int signal, bool group_stop) {
    pid_t stopped_leader = leader;
    supervisions_[sup->tgid] = sup;
    if (stopped_leader) {
        // Already seized and stopped by an attach that found threads.
        if (::ptrace(PTRACE_SETOPTIONS, stopped_leader, nullptr,
                     reinterpret_cast<void*>(kSupervisionOptions)) != 0) {
            Error error = sys_error("set ptrace options");
            ::ptrace(PTRACE_DETACH, stopped_leader, nullptr, nullptr);
            supervisions_.erase(sup->tgid);
            return error;
        }
        sup->threads.insert(stopped_leader);
        supervised_[stopped_leader] = sup;
        if (group_stop)
            ::ptrace(PTRACE_LISTEN, stopped_leader, nullptr, nullptr);
        else
            ::ptrace(PTRACE_CONT, stopped_leader, nullptr,
                     reinterpret_cast<void*>(static_cast<long>(signal)));
    }
    // Every thread, including those started while this runs (a traced thread's new threads
    // are traced by the kernel; an untraced one's are found by the next pass).
    std::string dir = "/proc/" + std::to_string(sup->tgid) + "/task";
    for (bool found_new = true; found_new;) {
        found_new = false;
        DIR* d = ::opendir(dir.c_str());
        if (!d) break;
        while (struct dirent* e = ::readdir(d)) {
            pid_t tid = std::atoi(e->d_name);
            if (tid <= 0 || sup->threads.contains(tid)) continue;
            if (::ptrace(PTRACE_SEIZE, tid, nullptr,
                         reinterpret_cast<void*>(kSupervisionOptions)) == 0) {
                sup->threads.insert(tid);
                supervised_[tid] = sup;
                found_new = true;
            } else if (errno == EPERM && !supervised_.contains(tid)) {
                auto status = proc::read_status(tid);
                if (status && status->tracer != 0 && status->tracer != ::getpid()) {
                    ::closedir(d);
                    sup->end_reason = "thread " + std::to_string(tid) + " is traced by " +
                                      describe(status->tracer);
                    Error error{EBUSY, sup->end_reason};
                    release(sup->tgid, sup->end_reason);
                    return error;
                }
            }
        }
        ::closedir(d);
    }
    if (sup->threads.empty()) {
        supervisions_.erase(sup->tgid);
        return Error{ESRCH, "is gone"};
    }
    // Threads whose first stop (as auto-attached clones) came in before they were known.
    for (pid_t tid : std::vector<pid_t>(sup->threads.begin(), sup->threads.end())) {
        if (auto it = early_stops_.find(tid); it != early_stops_.end()) {
            int status = it->second;
            early_stops_.erase(it);
            supervised_status(sup, tid, status);
        }
    }
    return {};
}

void Tracer::Loop::supervised_status(const std::shared_ptr<Supervision>& sup, pid_t tid,
                                     int status) {
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        sup->threads.erase(tid);
        supervised_.erase(tid);
        if (sup->threads.empty()) {
            if (sup->end_reason.empty() && !sup->ending) sup->end_reason = "exited";
            end_supervision(sup);
        }
        return;
    }
    if (!WIFSTOPPED(status)) return;
    int sig = WSTOPSIG(status);
    int event = event_of(status);
    if (sup->ending) {
        // Being let go: at its first stop, a thread is detached (a group stop stays in force).
        detach_thread(sup, tid, event == 0 ? sig : 0);
        return;
    }
    switch (event) {
        case PTRACE_EVENT_FORK:
        case PTRACE_EVENT_VFORK:
        case PTRACE_EVENT_CLONE: {
            unsigned long child = 0;
            ::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child);
            on_new_task(sup, tid, static_cast<pid_t>(child));
            ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
            return;
        }
        case PTRACE_EVENT_EXEC: {
            // Single-threaded again, under the thread group's id, at the new program's first
            // instruction: it joins now.
            for (pid_t other : std::vector<pid_t>(sup->threads.begin(), sup->threads.end())) {
                if (other == tid) continue;
                sup->threads.erase(other);
                supervised_.erase(other);
            }
            sup->threads.insert(tid);
            supervised_[tid] = sup;
            // A program that changed its identity (set-uid, set-gid, file capabilities, not
            // readable) is let go as it is: it is not what was authorized, and joining it
            // would either fool it or take away what it was given. It is detached from this
            // stop (no other stop comes while it waits here), and runs outside the view.
            auto change = changes_since(tid, sup->authorized);
            if (!change || !change->empty()) {
                sup->end_reason = change
                                      ? "it exec'd a program that changed what it is (" + *change +
                                            "); left outside the view, as it is"
                                      : "its exec could not be checked: " + change.error().message;
                sup->ending = true;
                detach_thread(sup, tid, 0);
                return;
            }
            Job job;
            job.origin = Job::Origin::kExec;
            job.phase = Job::Phase::kSettle;
            job.tid = tid;
            job.request = sup->request;
            job.dest = sup->dest;
            job.sup = sup;
            supervised_.erase(tid);
            jobs_.emplace(tid, std::move(job));
            ::ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr);
            return;
        }
        case PTRACE_EVENT_STOP:
            if (is_stop_signal(sig))
                ::ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
            else
                ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
            return;
        case 0:
            // A signal for the process: delivered exactly as without pns.
            ::ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
            return;
        default:
            ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
            return;
    }
}

void Tracer::Loop::on_new_task(const std::shared_ptr<Supervision>& sup, pid_t parent, pid_t child) {
    (void)parent;
    if (child <= 0) return;
    auto status = proc::read_status(child);
    bool thread = status && status->tgid == sup->tgid;
    std::optional<int> early;
    if (auto it = early_stops_.find(child); it != early_stops_.end()) {
        early = it->second;
        early_stops_.erase(it);
    }
    if (thread) {
        sup->threads.insert(child);
        supervised_[child] = sup;
        if (early) supervised_status(sup, child, *early);
        return;
    }
    // A new process: it joins at its first stop, before its first instruction.
    Job job;
    job.origin = Job::Origin::kChild;
    job.tid = child;
    job.request = sup->request;
    job.dest = sup->dest;
    job.sup = sup;
    jobs_.emplace(child, std::move(job));
    if (early) job_status(jobs_.at(child), *early);
}

void Tracer::Loop::detach_thread(const std::shared_ptr<Supervision>& sup, pid_t tid, int sig) {
    ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
    sup->threads.erase(tid);
    supervised_.erase(tid);
    if (sup->threads.empty()) end_supervision(sup);
}

void Tracer::Loop::release(pid_t pid, const std::string& why) {
    auto it = supervisions_.find(pid);
    if (it == supervisions_.end()) return;
    auto sup = it->second;
    if (sup->ending) return;
    sup->ending = true;
    if (sup->end_reason.empty()) sup->end_reason = why;
    // A running tracee is let go only from a stop: every thread is asked for one.
    for (pid_t tid : std::vector<pid_t>(sup->threads.begin(), sup->threads.end())) {
        if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno == ESRCH) {
            sup->threads.erase(tid);
            supervised_.erase(tid);
        }
    }
    if (sup->threads.empty()) end_supervision(sup);
}

void Tracer::Loop::end_supervision(const std::shared_ptr<Supervision>& sup) {
    if (!supervisions_.contains(sup->tgid)) return;
    supervisions_.erase(sup->tgid);
    if (!sup->end_reason.empty())
        emit(TraceEvent::Kind::kEnded, sup->request, sup->tgid, sup->end_reason);
    sup->holder.reset();
}

}  // namespace pns::agent
