// Test harness for the privileged tier: a real pnsd on a private socket and state directory,
// and the real pnsctl binary run as any uid. Readiness is pnsd's own sd_notify(READY=1),
// received on a notify socket of the test's, so no test ever sleeps to wait for it.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/unique_fd.hpp"

namespace pns::test {

// An unprivileged uid/gid for "another user"; needs no passwd entry.
inline constexpr uid_t kOtherUid = 4242;
inline constexpr gid_t kOtherGid = 4242;

struct Output {
    int exit_code = -1;  // exit status, or 128 + signal
    std::string out;
    std::string err;
};

struct RunOptions {
    std::optional<uid_t> uid;  // drop to this uid (and gid) before exec
    std::optional<gid_t> gid;
    std::string stdin_data;
    std::vector<std::string> env;  // extra NAME=VALUE
    std::string cwd;               // working directory of the child, if not empty
    pid_t mount_ns_of = 0;         // run in this process's mount namespace, if not 0
    std::chrono::seconds timeout{60};
};

// Runs `argv` to completion, capturing its output. Fails the test on timeout.
Output run(const std::vector<std::string>& argv, const RunOptions& options = {});

// A temporary directory (mode 0755, so other uids can reach a socket inside), removed with
// everything in it on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// What a machine without systemd has nowhere: the sandbox every pnsd runs in unmounts these
// (bpffs, tracefs, debugfs, securityfs), whatever this machine has mounted by hand.
extern const char* const kFreshMachineUnmounted[5];

// One pnsd, started in the constructor and stopped (SIGTERM, then SIGKILL) in the destructor.
class Pnsd {
  public:
    explicit Pnsd(const std::string& dir);  // socket, state and runtime dirs under `dir`
    ~Pnsd();
    Pnsd(const Pnsd&) = delete;
    Pnsd& operator=(const Pnsd&) = delete;

    // Starts the next pnsd with this limit on open files (soft and hard), as a tight
    // service manager would.
    void set_fd_limit(rlim_t limit) { fd_limit_ = limit; }
    // Starts the next pnsd with these options as well.
    void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
    // Every pnsd of this object runs in a mount namespace of its own that is a slave of the
    // host's, with nothing mounted at kFreshMachineUnmounted (as on a machine that systemd did
    // not boot), and ctl() runs pnsctl there too (pnsd resolves sources in the caller's
    // namespace): what pnsd mounts or unmounts, and the propagation it sets up, stays there,
    // so no bug of pnsd's can take /proc away from the machine running the tests. The
    // namespace is reached from outside through /proc/sandbox_pid()/root.
    void isolate_mounts() { isolate_ = true; }
    // The process holding that namespace (its /proc/PID/mountinfo shows what pnsd sees), or -1.
    pid_t sandbox_pid() const { return holder_; }

    // Starts pnsd and waits for READY=1. Returns false (with the log in `log()`) if it exits
    // or does not become ready within 20 s.
    bool start();
    // Starts pnsd where it must refuse to start: returns its exit status (its message is in
    // log_since_start()); a pnsd that serves instead is a test failure, and is killed.
    int start_refused();
    // The socket, state and runtime directories elsewhere than under `dir` (before start()).
    void set_paths(std::string socket, std::string state_dir, std::string runtime_dir);
    // SIGTERM and wait; returns pnsd's exit status.
    int stop() { return signal_and_wait(SIGTERM); }
    // Sends `sig` and waits for pnsd to exit; returns its exit status (128 + signal if killed).
    int signal_and_wait(int sig);
    // SIGKILL and reap: a crash at an arbitrary moment.
    void kill9();

    pid_t pid() const { return pid_; }
    const std::string& dir() const { return dir_; }
    const std::string& socket() const { return socket_; }
    const std::string& state_dir() const { return state_dir_; }
    const std::string& runtime_dir() const { return runtime_dir_; }
    // Where pnsd pins its tracker, as this process reaches it (through the sandbox's root).
    std::string bpf_dir() const;
    // The whole log of every pnsd started on this directory, and the part written since the
    // latest start().
    std::string log() const;
    std::string log_since_start() const;

    // Runs pnsctl against this pnsd (PNS_SOCKET set), as root or as options.uid.
    Output ctl(const std::vector<std::string>& args, const RunOptions& options = {}) const;

  private:
    std::string dir_, socket_, state_dir_, runtime_dir_, log_path_, notify_path_, bpf_dir_;
    pid_t pid_ = -1;
    std::size_t log_offset_ = 0;
    std::optional<rlim_t> fd_limit_;
    std::vector<std::string> extra_args_;
    bool isolate_ = true;
    pid_t holder_ = -1;
    bool start_holder();
    bool launch(bool refusal_expected, int& exit_status);
};

// A client speaking pnsd's wire protocol directly, for what pnsctl never sends: malformed,
// pipelined, partial or unread requests.
class RawClient {
  public:
    explicit RawClient(const std::string& socket_path);  // connects; see ok()
    RawClient(RawClient&&) = default;
    RawClient& operator=(RawClient&&) = default;

    bool ok() const { return fd_.valid(); }
    int fd() const { return fd_.get(); }

    // Writes all of `data`, blocking as needed. False (with a test failure) if it cannot.
    bool send_all(std::string_view data);
    // Writes what the socket takes now without blocking; returns the bytes written, 0 when
    // the socket buffer is full, -1 on error.
    long send_some(std::string_view data);
    // The next response line, without its newline; nullopt on EOF, error or timeout.
    std::optional<std::string> read_line(
        std::chrono::milliseconds timeout = std::chrono::seconds(20));
    // True when pnsd closes the connection (EOF or reset) within `timeout`; lines received
    // before that are discarded.
    bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(20));
    // Reads what has arrived, without blocking; false once the connection is closed.
    bool pump();
    // A complete line received by pump(), if there is one.
    std::optional<std::string> take_line();
    // Sends one request line and parses the response (null JSON on failure).
    nlohmann::json call(const nlohmann::json& request);
    // Sends `line` verbatim (a newline is added) and parses the response.
    nlohmann::json call_raw(std::string_view line);

  private:
    UniqueFd fd_;
    std::string pending_;
};

// {"version": 1, "op": op, "args": args}
nlohmann::json request(std::string_view op, nlohmann::json args = nlohmann::json::object());

// Opens `n` connections to `socket_path`, all open at once; failures are test failures.
std::vector<RawClient> connect_many(const std::string& socket_path, std::size_t n);

// Parses JSON, failing the test (and returning null) when it is not.
nlohmann::json parse_json(std::string_view text);

// True when `text` is exactly one non-empty line ending in '\n'.
bool is_one_line(const std::string& text);

// Whether a file or socket exists at `path`.
bool exists(const std::string& path);

// Reads a whole file; empty when it cannot.
std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view data);

// Real files and directories for tables to name: pnsd realizes every table as a view, so a
// bind's SRC must exist (and be reachable by the caller), and a DST is best a directory that
// exists. Both make missing parents (mode 0755) and return `path`.
std::string make_dir(const std::string& path);
std::string make_file(const std::string& path, std::string_view content = "");

// Runs pnsctl with --json, expects success and returns the parsed output (null on failure).
nlohmann::json ctl_json(const Pnsd& pnsd, std::vector<std::string> args,
                        const RunOptions& options = {});
// `pnsctl export --ns name` as root: the table text (fails the test if export fails).
std::string export_of(const Pnsd& pnsd, const std::string& name);
// The namespace's generation from `pnsctl ns show --json` as root (0 on failure).
std::uint64_t generation_of(const Pnsd& pnsd, const std::string& name);

// Every privileged test derives from this: it checks for root once, and skips with the reason
// (or fails when PNS_TESTS_MUST_WORK=1) when the machine cannot run it. After each test it
// checks that the host still has its /proc, /sys and /dev.
class PrivTest : public ::testing::Test {
  protected:
    void SetUp() override;
    void TearDown() override;

  private:
    std::vector<long> host_mounts_;
};

// A privileged test with a temporary directory and a pnsd started on it.
class PnsdTest : public PrivTest {
  protected:
    void SetUp() override {
        PrivTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        pnsd_.emplace(dir_.path());
        ASSERT_TRUE(pnsd_->start());
    }
    const Pnsd& pnsd() const { return *pnsd_; }

    // pnsctl ARGS against this test's pnsd.
    Output ctl(const std::vector<std::string>& args, const RunOptions& options = {}) {
        return pnsd_->ctl(args, options);
    }
    // pnsctl ARGS, which must succeed (a fatal failure names the command and its error).
    void ok(const std::vector<std::string>& args, const RunOptions& options = {}) {
        auto r = pnsd_->ctl(args, options);
        std::string command = "pnsctl";
        for (const auto& a : args) command += " " + a;
        ASSERT_EQ(r.exit_code, 0) << command << ": " << r.err;
    }

    TempDir dir_;
    std::optional<Pnsd> pnsd_;
};

// The cgroup2 mount point, from mountinfo ("" when there is none).
std::string cgroup2_root();

// What the BPF tracker needs of a host and this one lacks ("" when it has all): kernel BTF
// (/sys/kernel/btf/vmlinux) and a cgroup2 mount. Everything else it needs pnsd provides.
std::string missing_host_prerequisite();

// The mount ID of the mount at `path` (exactly), as process `pid` sees it (0: this process);
// -1 when nothing is mounted there.
long mount_id(const std::string& path, pid_t pid = 0);

// ---- slow machines ----

// The suite runs on slow machines too: vmtest/ runs it under an emulated CPU (qemu TCG, 10 to
// 50 times slower than these hosts). There PNS_TEST_SLOWDOWN stretches every deadline and time
// limit by its factor, and PNS_TEST_SCALE takes that fraction of each heavy test's rounds; the
// run says so. Both are 1 when unset.
double slowdown();
int scaled(int count);  // never below 1
template <typename Rep, typename Period>
std::chrono::milliseconds stretched(std::chrono::duration<Rep, Period> d) {
    return std::chrono::milliseconds(static_cast<long long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(d).count() * slowdown()));
}

// ---- processes in the background ----

// The mount namespace of process `pid`, as "mnt:[N]".
// Polls `done` until it holds or `timeout` passes; returns its last answer. For events that
// have no notification to wait on (a process has exec'd, joined, entered a cgroup).
inline bool wait_until(const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + stretched(timeout);
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) return done();
        usleep(1000);
    }
    return true;
}

// The pid a test program printed on a line: -1 (never an exception) when the line is not
// one, as when the program printed nothing before its deadline.
inline pid_t pid_from(const std::string& line) {
    char* end = nullptr;
    long value = std::strtol(line.c_str(), &end, 10);
    return line.empty() || *end != '\0' || value <= 0 || value > INT32_MAX
               ? -1
               : static_cast<pid_t>(value);
}

// The command name of process `pid` ("" when it is gone).
inline std::string comm_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(in, comm);
    return comm;
}


inline std::string mount_ns(pid_t pid) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/ns/mnt", ec);
    return ec ? "gone" : target.string();
}

// The state letter of process `pid` (R, S, D, T, t, Z), or '?' when it is gone.
inline char state_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '?' : line[close + 2];
}

// Waits until process `pid` runs the program called `comm`, for programs that then wait (sleep,
// read): its exec is over once it sleeps outside execve. The name alone changes early in the
// exec (fs/exec.c: begin_new_exec), before the exec's tracepoint (sched_process_exec), which
// pns's policies act on: a process moved into a policy's cgroup in between is held at that
// exec and its new program runs in the view.
inline bool wait_for_exec(pid_t pid, const std::string& comm) {
    return wait_until([&] {
        if (comm_of(pid) != comm || state_of(pid) != 'S') return false;
        std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
        long nr = -1;
        in >> nr;
        return nr >= 0 && nr != SYS_execve && nr != SYS_execveat;
    });
}

// The pid of the process tracing `pid` (0 when none), or -1 when it is gone.
inline pid_t tracer_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("TracerPid:")) return std::stoi(line.substr(10));
    return -1;
}

// ---- pinned BPF objects ----

// The id of the program attached by the BPF link pinned at `pin` (0, and a test failure, when
// there is none).
std::uint32_t program_of_link(const std::string& pin);
// Makes the build stamp pinned at `pin` (agent/bpf/bpf.hpp) another build's, as an older pnsd
// would have left it.
void forge_other_build(const std::string& pin);
// Whether the program with this id is gone from the kernel.
bool program_gone(std::uint32_t id);

// A program run in the background with pipes to its stdin and stdout, as root or as a uid.
class Proc {
  public:
    Proc(std::vector<std::string> argv, std::optional<uid_t> uid = std::nullopt) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
            ADD_FAILURE() << "pipe";
            return;
        }
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        pid_ = fork();
        if (pid_ == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            if (uid) {
                if (setgroups(0, nullptr) != 0 || setresgid(*uid, *uid, *uid) != 0 ||
                    setresuid(*uid, *uid, *uid) != 0)
                    _exit(126);
            }
            execv(args[0], args.data());
            _exit(127);
        }
        close(in[0]);
        close(out[1]);
        to_ = in[1];
        from_ = out[0];
    }
    ~Proc() {
        if (to_ >= 0) close(to_);
        if (from_ >= 0) close(from_);
        if (pid_ > 0 && !reaped_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }

    void send(const std::string& line) {
        std::string l = line + "\n";
        EXPECT_EQ(write(to_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
    }

    // The next line of output (without '\n'); empty on EOF or after `timeout` (stretched on
    // slow machines), which is said on stderr: callers assert on what they expected.
    std::string line(std::chrono::seconds timeout = std::chrono::seconds(10)) {
        auto deadline = std::chrono::steady_clock::now() + stretched(timeout);
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return l;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                std::fprintf(stderr, "harness: no line from pid %d within %lld ms\n",
                             static_cast<int>(pid_),
                             static_cast<long long>(stretched(timeout).count()));
                return {};
            }
            pollfd pfd{from_, POLLIN, 0};
            if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
            char b[4096];
            ssize_t n = read(from_, b, sizeof b);
            if (n <= 0) return {};
            buf_.append(b, static_cast<std::size_t>(n));
        }
    }

    // Waits for the exit; returns the exit status (128 + signal), -1 after `timeout`.
    int wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
        auto deadline = std::chrono::steady_clock::now() + stretched(timeout);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            pid_t r = waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                reaped_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            usleep(10000);
        }
        return -1;
    }

  private:
    pid_t pid_ = -1;
    int to_ = -1, from_ = -1;
    bool reaped_ = false;
    std::string buf_;
};

const char* pnsd_path();
const char* pnsctl_path();

}  // namespace pns::test
