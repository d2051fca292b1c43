#include "harness.hpp"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace pns::test {

namespace {

using Clock = std::chrono::steady_clock;

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

[[noreturn]] void child_fail(const char* what) {
    std::fprintf(stderr, "harness: %s: %s\n", what, std::strerror(errno));
    _exit(127);
}

// In the child: drop to uid/gid for good (groups too), as a login would.
void drop_privileges(const RunOptions& options) {
    if (!options.uid) return;
    gid_t gid = options.gid.value_or(static_cast<gid_t>(*options.uid));
    if (setgroups(0, nullptr) != 0) child_fail("setgroups");
    if (setresgid(gid, gid, gid) != 0) child_fail("setresgid");
    if (setresuid(*options.uid, *options.uid, *options.uid) != 0) child_fail("setresuid");
}

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
    std::vector<char*> out;
    for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
    out.push_back(nullptr);
    return out;
}

}  // namespace

const char* pnsd_path() {
    return PNSD_PATH;
}
const char* pnsctl_path() {
    return PNSCTL_PATH;
}

Output run(const std::vector<std::string>& argv, const RunOptions& options) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        ADD_FAILURE() << "pipe: " << std::strerror(errno);
        return {};
    }
    auto args = c_argv(argv);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        for (const auto& e : options.env) putenv(const_cast<char*>(e.c_str()));
        if (options.mount_ns_of > 0) {
            std::string path = "/proc/" + std::to_string(options.mount_ns_of) + "/ns/mnt";
            int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (ns < 0 || setns(ns, CLONE_NEWNS) != 0) child_fail("setns");
            close(ns);
        }
        if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) child_fail("chdir");
        signal(SIGPIPE, SIG_DFL);  // the test ignores it; the program under test must not
        drop_privileges(options);
        execv(args[0], args.data());
        child_fail("execv");
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);

    Output result;
    std::size_t written = 0;
    int in_fd = in[1];
    if (options.stdin_data.empty()) {
        close(in_fd);
        in_fd = -1;
    } else {
        fcntl(in_fd, F_SETFL, O_NONBLOCK);
    }
    auto deadline = Clock::now() + stretched(options.timeout);
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        pollfd fds[3] = {{out_open ? out[0] : -1, POLLIN, 0},
                         {err_open ? err[0] : -1, POLLIN, 0},
                         {in_fd, POLLOUT, 0}};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            ADD_FAILURE() << "timed out: " << argv[0];
            kill(pid, SIGKILL);
            break;
        }
        if (poll(fds, 3, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
        char buf[65536];
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                (i == 0 ? out_open : err_open) = false;
                continue;
            }
            (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(n));
        }
        if (in_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in_fd, options.stdin_data.data() + written,
                              options.stdin_data.size() - written);
            if (n > 0) written += static_cast<std::size_t>(n);
            if (n < 0 || written == options.stdin_data.size()) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0) close(in_fd);
    close(out[0]);
    close(err[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = decode_status(status);
    return result;
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/pns-test.XXXXXX";
    if (!mkdtemp(tmpl)) {
        ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
        return;
    }
    path_ = tmpl;
    chmod(path_.c_str(), 0755);
}

namespace {

// A mount point from /proc/self/mountinfo, whose octal escapes (\040 for a space, ...) are
// undone.
std::string unescape_mountinfo(const std::string& field) {
    std::string out;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            int value = 0;
            bool octal = true;
            for (std::size_t k = 1; k <= 3; ++k) {
                char c = field[i + k];
                if (c < '0' || c > '7') octal = false;
                value = value * 8 + (c - '0');
            }
            if (octal) {
                out += static_cast<char>(value);
                i += 3;
                continue;
            }
        }
        out += field[i];
    }
    return out;
}

// Detaches every mount at or below `dir`: pnsd pins its views with mounts under its runtime
// directory, and they outlive a pnsd that was killed. Each is made private first: unmounting
// a mount whose parent is shared propagates to the parent's peers, and a mount under `dir`
// may be a peer of the host's own (a bind of '/' shown somewhere below `dir` would otherwise
// take /proc, /sys and /dev off the host with it).
void unmount_below(const std::string& dir) {
    std::ifstream mountinfo("/proc/self/mountinfo");
    if (!mountinfo) {
        ADD_FAILURE() << "cannot read /proc/self/mountinfo to clean up '" << dir << "'";
        return;
    }
    std::vector<std::string> mounts;
    std::string line;
    while (std::getline(mountinfo, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, point;
        fields >> id >> parent >> devno >> root >> point;
        point = unescape_mountinfo(point);
        if (point == dir || point.starts_with(dir + "/")) mounts.push_back(point);
    }
    // Outermost first: MS_REC makes each whole subtree private before anything is detached.
    std::sort(mounts.begin(), mounts.end(),
              [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
    for (const auto& point : mounts) {
        if (mount(nullptr, point.c_str(), nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 &&
            errno != EINVAL && errno != ENOENT) {
            ADD_FAILURE() << "make '" << point << "' private: " << std::strerror(errno)
                          << "; not unmounting anything below '" << dir << "'";
            return;
        }
    }
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
}

}  // namespace

TempDir::~TempDir() {
    if (path_.empty()) return;
    unmount_below(path_);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) ADD_FAILURE() << "cannot remove '" << path_ << "': " << ec.message();
}

const char* const kFreshMachineUnmounted[] = {"/sys/fs/bpf", "/sys/kernel/tracing",
                                              "/sys/kernel/debug/tracing", "/sys/kernel/debug",
                                              "/sys/kernel/security"};

namespace {
// bpffs refuses names with a '.' in them.
std::string bpf_dir_for(const std::string& dir) {
    std::string name = std::filesystem::path(dir).filename().string();
    std::replace(name.begin(), name.end(), '.', '_');
    return "/sys/fs/bpf/pns-test-" + name;
}
}  // namespace

Pnsd::Pnsd(const std::string& dir)
    : dir_(dir),
      socket_(dir + "/pnsd.sock"),
      state_dir_(dir + "/state"),
      runtime_dir_(dir + "/run"),
      log_path_(dir + "/pnsd.log"),
      notify_path_(dir + "/notify.sock"),
      // Each test's pnsd pins its own tracker, removed with it.
      bpf_dir_(bpf_dir_for(dir)) {}

Pnsd::~Pnsd() {
    if (pid_ > 0) stop();
    std::error_code ec;
    if (holder_ > 0) std::filesystem::remove_all(bpf_dir(), ec);
    if (holder_ > 0) {
        // The namespace, and every mount pnsd made in it, goes with its last process.
        kill(holder_, SIGKILL);
        while (waitpid(holder_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

bool Pnsd::start_holder() {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return false;
    holder_ = fork();
    if (holder_ == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ready[0]);
        if (unshare(CLONE_NEWNS) != 0) child_fail("unshare(CLONE_NEWNS)");
        // Host mount events still arrive; none made here goes back (mount_namespaces(7)).
        if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) child_fail("slave /");
        // A fresh machine: nothing mounted where systemd would have mounted bpffs and tracefs
        // at boot, whatever this machine has. pnsd must manage without them; the bpffs it
        // mounts here, and every pin in it, goes with this namespace.
        for (const char* path : kFreshMachineUnmounted)
            while (umount2(path, MNT_DETACH) == 0) {
            }
        if (write(ready[1], "r", 1) != 1) child_fail("write");
        close(ready[1]);
        for (;;) pause();
    }
    close(ready[1]);
    char c = 0;
    bool ok = holder_ > 0 && read(ready[0], &c, 1) == 1;
    close(ready[0]);
    if (!ok) ADD_FAILURE() << "the mount namespace for pnsd could not be made";
    return ok;
}

bool Pnsd::start() {
    int status = -1;
    return launch(false, status);
}

int Pnsd::start_refused() {
    int status = -1;
    if (launch(true, status)) {
        ADD_FAILURE() << "pnsd started and served; it should have refused:\n" << log_since_start();
        kill9();
        return 0;
    }
    return status;
}

void Pnsd::set_paths(std::string socket, std::string state_dir, std::string runtime_dir) {
    socket_ = std::move(socket);
    state_dir_ = std::move(state_dir);
    runtime_dir_ = std::move(runtime_dir);
}

bool Pnsd::launch(bool refusal_expected, int& exit_status) {
    // The notify socket pnsd's sd_notify writes to, as systemd's would be.
    int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, notify_path_.c_str(), sizeof addr.sun_path - 1);
    unlink(notify_path_.c_str());
    if (notify < 0 || bind(notify, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ADD_FAILURE() << "notify socket: " << std::strerror(errno);
        if (notify >= 0) close(notify);
        return false;
    }

    {
        struct stat st {};
        log_offset_ = stat(log_path_.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
    }
    if (isolate_ && holder_ < 0 && !start_holder()) {
        close(notify);
        return false;
    }
    std::string holder_ns = "/proc/" + std::to_string(holder_) + "/ns/mnt";
    std::vector<std::string> argv = {pnsd_path(), "--socket",      socket_,      "--state-dir",
                                     state_dir_,  "--runtime-dir", runtime_dir_, "--log-level",
                                     "debug",     "--bpf-dir",     bpf_dir_};
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    auto args = c_argv(argv);
    std::string notify_env = "NOTIFY_SOCKET=" + notify_path_;
    pid_ = fork();
    if (pid_ == 0) {
        int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log < 0) child_fail("open log");
        dup2(log, 1);
        dup2(log, 2);
        putenv(const_cast<char*>(notify_env.c_str()));
        // Should the test binary die, its pnsd goes too instead of lingering.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_DFL);
        if (holder_ > 0) {
            int ns = open(holder_ns.c_str(), O_RDONLY | O_CLOEXEC);
            if (ns < 0 || setns(ns, CLONE_NEWNS) != 0)
                child_fail("setns into the test's namespace");
            close(ns);
        }
        if (fd_limit_) {
            rlimit limit{*fd_limit_, *fd_limit_};
            if (setrlimit(RLIMIT_NOFILE, &limit) != 0) child_fail("setrlimit");
        }
        execv(args[0], args.data());
        child_fail("execv pnsd");
    }

    // Wait for whichever comes first: READY=1 on the notify socket, or pnsd's exit (its
    // pidfd turns readable).
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    auto deadline = Clock::now() + stretched(std::chrono::seconds(20));
    bool ready = false;
    while (!ready) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        pollfd fds[2] = {{notify, POLLIN, 0}, {pidfd, POLLIN, 0}};
        if (poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            char buf[4096];
            ssize_t n = recv(notify, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = '\0';
                ready = std::strstr(buf, "READY=1") != nullptr;
            }
            continue;
        }
        if (fds[1].revents & POLLIN) {
            int status = 0;
            while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
            exit_status = decode_status(status);
            if (!refusal_expected)
                ADD_FAILURE() << "pnsd exited with " << exit_status << " before ready:\n" << log();
            pid_ = -1;
            break;
        }
    }
    if (pidfd >= 0) close(pidfd);
    close(notify);
    if (!ready && pid_ > 0) {
        ADD_FAILURE() << "pnsd not ready within 20 s:\n" << log();
        kill9();
    }
    return ready;
}

int Pnsd::signal_and_wait(int sig) {
    if (pid_ <= 0) return -1;
    // A pidfd becomes readable when the process exits: wait for that event, with a bound, and
    // kill a pnsd that does not stop (a test failure, not a hung suite).
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    kill(pid_, sig);
    if (pidfd >= 0) {
        pollfd pfd{pidfd, POLLIN, 0};
        int ready;
        while ((ready = poll(&pfd, 1,
                             static_cast<int>(stretched(std::chrono::seconds(20)).count()))) < 0 &&
               errno == EINTR) {
        }
        close(pidfd);
        if (ready == 0) {
            ADD_FAILURE() << "pnsd did not exit within 20 s of signal " << sig;
            kill(pid_, SIGKILL);
        }
    }
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return decode_status(status);
}

void Pnsd::kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
}

std::string Pnsd::bpf_dir() const {
    return holder_ > 0 ? "/proc/" + std::to_string(holder_) + "/root" + bpf_dir_ : bpf_dir_;
}

std::string Pnsd::log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string Pnsd::log_since_start() const {
    std::string all = log();
    return all.size() >= log_offset_ ? all.substr(log_offset_) : all;
}

Output Pnsd::ctl(const std::vector<std::string>& args, const RunOptions& options) const {
    // The build tree may sit where other uids cannot reach it (a clone under /root): a user
    // runs a copy of pnsctl from the test's own 0755 directory.
    std::string binary = pnsctl_path();
    if (options.uid && *options.uid != 0) {
        binary = dir_ + "/pnsctl";
        std::error_code ec;
        if (!std::filesystem::exists(binary)) std::filesystem::copy_file(pnsctl_path(), binary, ec);
        if (ec) ADD_FAILURE() << "copy pnsctl: " << ec.message();
        chmod(binary.c_str(), 0755);
    }
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions with_socket = options;
    with_socket.env.push_back("PNS_SOCKET=" + socket_);
    if (holder_ > 0) with_socket.mount_ns_of = holder_;
    return run(argv, with_socket);
}

RawClient::RawClient(const std::string& socket_path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) {
        ADD_FAILURE() << "socket path too long: " << socket_path;
        return;
    }
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ADD_FAILURE() << "connect to '" << socket_path << "': " << std::strerror(errno);
        return;
    }
    fd_ = std::move(fd);
}

bool RawClient::send_all(std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ADD_FAILURE() << "send: " << std::strerror(errno);
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

long RawClient::send_some(std::string_view data) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    return static_cast<long>(n);
}

std::optional<std::string> RawClient::read_line(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + stretched(timeout);
    std::size_t newline;
    while ((newline = pending_.find('\n')) == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd pfd{fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return std::nullopt;
        char buf[65536];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return std::nullopt;
        pending_.append(buf, static_cast<std::size_t>(n));
    }
    std::string line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return line;
}

bool RawClient::wait_closed(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + stretched(timeout);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        pollfd pfd{fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return false;
        char buf[65536];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return true;
    }
}

bool RawClient::pump() {
    for (;;) {
        char buf[65536];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            pending_.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return true;
        return false;
    }
}

std::optional<std::string> RawClient::take_line() {
    std::size_t newline = pending_.find('\n');
    if (newline == std::string::npos) return std::nullopt;
    std::string line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return line;
}

nlohmann::json RawClient::call(const nlohmann::json& request) {
    return call_raw(request.dump());
}

nlohmann::json RawClient::call_raw(std::string_view line) {
    std::string wire(line);
    wire += '\n';
    if (!send_all(wire)) return nullptr;
    auto response = read_line();
    if (!response) {
        ADD_FAILURE() << "no response to " << line.substr(0, 200);
        return nullptr;
    }
    return parse_json(*response);
}

nlohmann::json request(std::string_view op, nlohmann::json args) {
    return {{"version", 1}, {"op", op}, {"args", std::move(args)}};
}

std::vector<RawClient> connect_many(const std::string& socket_path, std::size_t n) {
    std::vector<RawClient> clients;
    clients.reserve(n);
    for (std::size_t i = 0; i < n; ++i) clients.emplace_back(socket_path);
    return clients;
}

nlohmann::json parse_json(std::string_view text) {
    auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded()) {
        ADD_FAILURE() << "not JSON: " << text.substr(0, 500);
        return nullptr;
    }
    return j;
}

bool is_one_line(const std::string& text) {
    return text.size() > 1 && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const std::string& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) ADD_FAILURE() << "cannot write '" << path << "'";
}

std::string make_dir(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) ADD_FAILURE() << "mkdir '" << path << "': " << ec.message();
    chmod(path.c_str(), 0755);
    return path;
}

std::string make_file(const std::string& path, std::string_view content) {
    make_dir(std::filesystem::path(path).parent_path());
    write_file(path, content);
    chmod(path.c_str(), 0644);
    return path;
}

nlohmann::json ctl_json(const Pnsd& pnsd, std::vector<std::string> args,
                        const RunOptions& options) {
    args.push_back("--json");
    auto r = pnsd.ctl(args, options);
    if (r.exit_code != 0) {
        std::string joined;
        for (const auto& a : args) joined += " " + a;
        ADD_FAILURE() << "pnsctl" << joined << " exited " << r.exit_code << ": " << r.err;
        return nullptr;
    }
    return parse_json(r.out);
}

std::string export_of(const Pnsd& pnsd, const std::string& name) {
    auto r = pnsd.ctl({"export", "--ns", name});
    if (r.exit_code != 0) ADD_FAILURE() << "export " << name << ": " << r.err;
    return r.out;
}

std::uint64_t generation_of(const Pnsd& pnsd, const std::string& name) {
    auto j = ctl_json(pnsd, {"ns", "show", name});
    if (!j.is_object() || !j.contains("generation")) return 0;
    return j["generation"].get<std::uint64_t>();
}

namespace {

// The host's own mounts a test must never take away. A view is a mount namespace of its own,
// but a mistake in mount propagation turns an unmount inside it into one on the host.
const char* const kHostMounts[] = {"/proc", "/sys", "/dev"};

}  // namespace

std::string cgroup2_root() {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.find(" - cgroup2 ") == std::string::npos) continue;
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        fields >> id >> parent >> dev >> root >> mount_point;
        return mount_point;
    }
    return {};
}

std::string missing_host_prerequisite() {
    if (!exists("/sys/kernel/btf/vmlinux"))
        return "kernel BTF (/sys/kernel/btf/vmlinux: a kernel built with CONFIG_DEBUG_INFO_BTF)";
    if (cgroup2_root().empty()) return "a cgroup2 mount (cgroup v2, unified or hybrid)";
    return {};
}

long mount_id(const std::string& path, pid_t pid) {
    std::ifstream mountinfo(pid > 0 ? "/proc/" + std::to_string(pid) + "/mountinfo"
                                    : std::string("/proc/self/mountinfo"));
    std::string line;
    while (std::getline(mountinfo, line)) {
        std::istringstream fields(line);
        long id = -1;
        std::string parent, devno, root, point;
        fields >> id >> parent >> devno >> root >> point;
        if (unescape_mountinfo(point) == path) return id;
    }
    return -1;
}

namespace {
double from_env(const char* name) {
    const char* text = std::getenv(name);
    if (!text || !*text) return 1.0;
    char* end = nullptr;
    double value = std::strtod(text, &end);
    return end && *end == '\0' && value > 0 ? value : 1.0;
}
}  // namespace

double slowdown() {
    static const double factor = from_env("PNS_TEST_SLOWDOWN");
    return factor;
}

int scaled(int count) {
    static const double scale = from_env("PNS_TEST_SCALE");
    return std::max(1, static_cast<int>(count * scale));
}

void PrivTest::SetUp() {
    // A child that exits before reading all of its stdin must not kill the test with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    host_mounts_.clear();
    for (const char* path : kHostMounts) host_mounts_.push_back(mount_id(path));
    if (::geteuid() == 0) return;
    const char* must = std::getenv("PNS_TESTS_MUST_WORK");
    if (must && std::string_view(must) == "1")
        FAIL() << "privileged tests need root (PNS_TESTS_MUST_WORK=1 forbids skipping)";
    GTEST_SKIP() << "privileged tests need root";
}

void PrivTest::TearDown() {
    for (std::size_t i = 0; i < host_mounts_.size(); ++i) {
        if (host_mounts_[i] < 0) continue;
        EXPECT_EQ(mount_id(kHostMounts[i]), host_mounts_[i])
            << "the host's " << kHostMounts[i]
            << " was unmounted or replaced during this test: an unmount in a view reached the "
               "host";
    }
}

std::uint32_t program_of_link(const std::string& pin) {
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    bpf_link_info info{};
    std::uint32_t len = sizeof info;
    EXPECT_TRUE(fd && bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0) << pin;
    return info.prog_id;
}

void forge_other_build(const std::string& pin) {
    UniqueFd stamp(bpf_obj_get(pin.c_str()));
    ASSERT_TRUE(stamp) << "no build stamp pinned at " << pin;
    std::uint32_t zero = 0;
    std::uint64_t other = 1;
    ASSERT_EQ(bpf_map_update_elem(stamp.get(), &zero, &other, BPF_ANY), 0);
}

bool program_gone(std::uint32_t id) {
    UniqueFd fd(bpf_prog_get_fd_by_id(id));
    return !fd && errno == ENOENT;
}

}  // namespace pns::test
