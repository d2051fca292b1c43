#include "agent/join/tracer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>

#include "agent/arch/arch.hpp"
#include "agent/join/injection.hpp"
#include "agent/proc.hpp"
#include "agent/bpf/tracker.hpp"

namespace pns::agent {

namespace {

using Clock = std::chrono::steady_clock;

// How long a holder may take to get ready (it needs milliseconds). It runs as the member's
// uid, which may stop it: then it is killed and the join refused. The tracer never waits for
// it in a blocking call, so meanwhile every other join goes on.
constexpr auto kHolderPatience = std::chrono::seconds(10);
// An attach answers "pending" when the process has not stopped by then.
constexpr auto kPendingAfter = std::chrono::seconds(1);
// How long pnsd waits, when it stops, for injections in progress to finish.
constexpr auto kStopGrace = std::chrono::seconds(3);
constexpr long kSupervisionOptions =
    PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
using injection::kMaxCwd;

int event_of(int status) {
    return status >> 16;
}

void wake(int fd) {
    std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
}

void drain(int fd) {
    std::uint64_t n;
    (void)!::read(fd, &n, sizeof n);
}

bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

std::string describe(pid_t pid) {
    auto status = proc::read_status(pid);
    return std::to_string(pid) + (status ? " (" + status->name + ")" : std::string());
}

// The holder: a process sitting in the destination's namespaces, with the identity pnsd
// authorized the join for, so that the target can name those namespaces with pidfd_open and
// enter both with one setns (which checks that the target may ptrace-read the process it
// names: kernel/nsproxy.c, validate_nsset). A fresh program (agent/join/holder.c says what makes it
// joinable and by whom), not a fork of pnsd: nothing of pnsd's memory is in it. It lives until
// its release pipe closes, and goes when pnsd does.
class Holder {
  public:
    // Starts one; it is of use once settle() has found it ready. Its program writes one byte
    // when it is set up, on the descriptor ready_fd(), which the tracer loop polls.
    static Result<std::shared_ptr<Holder>> start(int program, const Destination& dest,
                                                 const proc::Identity& who);
    // Closing `release_` ends a holder that runs; one its user stopped is killed, so that none
    // outlives its use. The tracer loop reaps it.
    ~Holder() { end(); }
    pid_t pid() const { return pid_; }
    // False once it has exited (killed by someone of its uid, say): a pid it had could then
    // name another process.
    bool alive() const { return proc::pidfd_alive(pidfd_.get()); }

    bool starting() const { return ready_.get() >= 0; }
    int ready_fd() const { return ready_.get(); }
    Clock::time_point started() const { return started_; }
    // When ready_fd() is readable: what the starting holder reported (a failure ends it).
    Status settle(const std::string& ns);
    // Ends a holder that did not get ready in time (a stopped one too: SIGKILL needs no
    // running process).
    Error give_up(const std::string& ns);

  private:
    Holder(pid_t pid, UniqueFd pidfd, UniqueFd ready, UniqueFd release)
        : pid_(pid),
          pidfd_(std::move(pidfd)),
          ready_(std::move(ready)),
          release_(std::move(release)) {}
    void end();

    pid_t pid_;
    UniqueFd pidfd_;
    UniqueFd ready_;  // open while it starts
    UniqueFd release_;
    Clock::time_point started_ = Clock::now();
};

// How a holder's child reports a failure before its exec (one byte, then it exits).
enum HolderStep : char {
    kHolderIds = 'i',
    kHolderUserns = 'u',
    kHolderMntns = 'm',
    kHolderFds = 'f',
    kHolderExec = 'x',
    kHolderReady = 'R',  // what pns-holder writes once it is set up
};

const char* holder_step(char code) {
    switch (code) {
        case kHolderIds:
            return "take the process's ids";
        case kHolderUserns:
            return "enter the view's user namespace";
        case kHolderMntns:
            return "enter the view's mount namespace";
        case kHolderFds:
            return "set up its descriptors";
        case kHolderExec:
            return "exec pns-holder";
        default:
            return "start";
    }
}

Result<std::shared_ptr<Holder>> Holder::start(int program, const Destination& dest,
                                              const proc::Identity& who) {
    int ready[2], release[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return sys_error("pipe");
    if (::pipe2(release, O_CLOEXEC) != 0) {
        ::close(ready[0]);
        ::close(ready[1]);
        return sys_error("pipe");
    }
    UniqueFd ready_r(ready[0]), ready_w(ready[1]), release_r(release[0]), release_w(release[1]);
    // Read when the tracer loop's poll says so, never waited on.
    if (::fcntl(ready_r.get(), F_SETFL, O_NONBLOCK) != 0) return sys_error("fcntl");
    // The identity the join was authorized for: for a satellite the process's own uid and
    // gid; for the primary root's (uid 0 with the process's group). Never pnsd's.
    const uid_t uid = who.uids[1];
    const gid_t gid = who.gids[1];
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork a holder");
    if (pid == 0) {
        // Raw system calls only: pnsd is multithreaded. Changing the euid makes this child
        // not dumpable at once (kernel/cred.c: commit_creds), so until its exec nothing but
        // root may read the copy of pnsd's memory it has.
        auto fail = [&](char step) {
            (void)!::write(ready_w.get(), &step, 1);
            ::_exit(1);
        };
        if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
            ::syscall(SYS_setresgid, gid, gid, gid) != 0 ||
            ::syscall(SYS_setresuid, uid, uid, uid) != 0)
            fail(kHolderIds);
        // After the ids: a change of credentials clears the parent-death signal.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        // The satellite's owner may enter it (kernel/user_namespace.c: userns_install wants
        // CAP_SYS_ADMIN there, which its owner has); in it, this child has every capability
        // there, which entering its mount namespace needs (fs/namespace.c: mntns_install).
        if (dest.user && ::setns(dest.user.get(), CLONE_NEWUSER) != 0) fail(kHolderUserns);
        if (::setns(dest.mnt.get(), CLONE_NEWNS) != 0) fail(kHolderMntns);
        // Exec'd in the satellite's user namespace, the program's mm belongs to it
        // (fs/exec.c: bprm_mm_init), which is what lets the target name it although it is not
        // dumpable; a uid that is not root there execs without capabilities.
        if (::dup2(release_r.get(), 0) != 0 || ::dup2(ready_w.get(), 1) != 1) fail(kHolderFds);
        // Every other descriptor goes at the exec (the program's own is needed until then).
        if (::syscall(SYS_close_range, 2, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(kHolderFds);
        char name[] = "pns-holder";
        char* argv[] = {name, nullptr};
        char* envp[] = {nullptr};
        // By descriptor: no path is looked up, least of all in the view.
        ::syscall(SYS_execveat, program, "", argv, envp, AT_EMPTY_PATH);
        fail(kHolderExec);
    }
    ready_w.reset();
    release_r.reset();
    // Its pid cannot be reused before this: this thread reaps it.
    auto pidfd = proc::open_pidfd(pid);
    if (!pidfd) {
        ::kill(pid, SIGKILL);
        return Error(std::move(pidfd).error());
    }
    return std::shared_ptr<Holder>(
        new Holder(pid, std::move(*pidfd), std::move(ready_r), std::move(release_w)));
}

Status Holder::settle(const std::string& ns) {
    char code = 0;
    ssize_t n;
    while ((n = ::read(ready_.get(), &code, 1)) < 0 && errno == EINTR) {
    }
    if (n < 0 && errno == EAGAIN) return {};  // nothing yet (poll said otherwise: spurious)
    ready_.reset();
    if (n == 1 && code == kHolderReady) return {};
    end();
    return Error{EPERM, "cannot start a holder in the view of " + ns + " (" +
                            (n == 1 ? std::string(holder_step(code))
                                    : std::string("pns-holder exited before it was ready")) +
                            ")"};
}

Error Holder::give_up(const std::string& ns) {
    ready_.reset();
    end();
    return Error{ETIMEDOUT, "pnsd's holder in the view of " + ns + " was not ready within " +
                                std::to_string(kHolderPatience.count()) +
                                " s (stopped by its user?); not joined"};
}

void Holder::end() {
    release_.reset();
    (void)proc::signal_pidfd(pidfd_.get(), SIGKILL);
}

// The holder program, beside pnsd (a build tree) or where `cmake --install` puts it relative
// to pnsd (PNS_HOLDER_RELATIVE, libexec/pns/ beside sbin/). Opened once, O_PATH: every holder is
// exec'd from this descriptor, so it is the file checked here. pnsd runs it as root for root's
// processes, so it must be root's and writable by nobody else.
Result<UniqueFd> open_holder_program() {
    std::string self(4096, '\0');
    ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
    if (n <= 0) return sys_error("find pnsd's own program");
    self.resize(static_cast<std::size_t>(n));
    std::string dir = self.substr(0, self.rfind('/') + 1);
    std::string tried;
    for (std::string path : {dir + "pns-holder", dir + PNS_HOLDER_RELATIVE}) {
        UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
        if (!fd) {
            tried += (tried.empty() ? "" : ", ") + ("'" + path + "'");
            continue;
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return sys_error("stat '" + path + "'");
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
            !(st.st_mode & S_IXUSR))
            return Error{EPERM, "the holder program '" + path +
                                    "' must be a regular executable file owned by root and "
                                    "writable by nobody else"};
        return fd;
    }
    return Error{ENOENT, "no holder program (pns-holder) at " + tried};
}

// The address of a syscall instruction in the tracee: its vDSO has some, else its code.
Result<std::uint64_t> find_syscall_instruction(pid_t tid) {
    auto insn = arch::syscall_instruction();
    FILE* maps = std::fopen(("/proc/" + std::to_string(tid) + "/maps").c_str(), "re");
    if (!maps) return Error{ESRCH, "no such process"};
    std::vector<std::pair<std::uint64_t, std::uint64_t>> vdso, code;
    char line[512];
    while (std::fgets(line, sizeof line, maps)) {
        unsigned long long begin = 0, end = 0;
        char perms[8] = {};
        if (std::sscanf(line, "%llx-%llx %7s", &begin, &end, perms) != 3) continue;
        if (std::strstr(line, "[vdso]"))
            vdso.emplace_back(begin, end);
        else if (perms[2] == 'x' && perms[0] == 'r')
            code.emplace_back(begin, end);
    }
    std::fclose(maps);
    vdso.insert(vdso.end(), code.begin(), code.end());
    std::vector<std::uint8_t> buf;
    for (auto [begin, end] : vdso) {
        buf.resize(std::min<std::uint64_t>(end - begin, 1u << 20));
        iovec local{buf.data(), buf.size()};
        iovec remote{reinterpret_cast<void*>(begin), buf.size()};
        ssize_t n = ::process_vm_readv(tid, &local, 1, &remote, 1, 0);
        if (n <= 0) continue;
        auto found = std::search(buf.begin(), buf.begin() + n, insn.begin(), insn.end());
        if (found != buf.begin() + n)
            return begin + static_cast<std::uint64_t>(found - buf.begin());
    }
    return Error{ENOEXEC, "no syscall instruction found in its code"};
}

std::uint64_t all_signals() {
    return ~0ULL;
}

bool read_memory(pid_t tid, std::uint64_t at, std::vector<char>& bytes) {
    iovec local{bytes.data(), bytes.size()};
    iovec remote{reinterpret_cast<void*>(at), bytes.size()};
    return ::process_vm_readv(tid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes.size());
}

bool write_memory(pid_t tid, std::uint64_t at, const std::vector<char>& bytes) {
    std::vector<char> copy = bytes;
    iovec local{copy.data(), copy.size()};
    iovec remote{reinterpret_cast<void*>(at), copy.size()};
    return ::process_vm_writev(tid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(copy.size());
}

// The highest capability number this kernel knows.
int last_capability() {
    static const int last = [] {
        int value = 40;
        if (std::FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
            if (std::fscanf(f, "%d", &value) != 1) value = 40;
            std::fclose(f);
        }
        return value;
    }();
    return last;
}

}  // namespace

// ---- The tracer thread ----------------------------------------------------------------

class Tracer::Loop {
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

// ---- Joining one process ----------------------------------------------------------------

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

    auto regs = arch::get_registers(tid);
    if (!regs) {
        fail(job, regs.error());
        return finish(job);
    }
    if (!arch::native_abi(*regs)) {
        fail(job, Error{ENOEXEC, "is a 32-bit process; pns joins only native 64-bit ones"});
        return finish(job);
    }
    std::uint64_t mask = 0;
    if (::ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) != 0) {
        fail(job, sys_error("read its signal mask"));
        return finish(job);
    }
    job.saved = *regs;
    job.saved_mask = mask;
    job.saved_valid = true;
    // Nothing that arrives now is delivered before everything is as it was.
    std::uint64_t block = all_signals();
    if (::ptrace(PTRACE_SETSIGMASK, tid, sizeof block, &block) != 0) {
        fail(job, sys_error("block its signals"));
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

// ---- Supervision ------------------------------------------------------------------------

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
