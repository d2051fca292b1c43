#include "harness.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
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

const char* pnsd_path() { return PNSD_PATH; }
const char* pnsctl_path() { return PNSCTL_PATH; }

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
    auto deadline = Clock::now() + options.timeout;
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

TempDir::~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

Pnsd::Pnsd(const std::string& dir)
    : dir_(dir),
      socket_(dir + "/pnsd.sock"),
      state_dir_(dir + "/state"),
      runtime_dir_(dir + "/run"),
      log_path_(dir + "/pnsd.log"),
      notify_path_(dir + "/notify.sock") {}

Pnsd::~Pnsd() {
    if (pid_ > 0) stop();
}

bool Pnsd::start() {
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

    std::vector<std::string> argv = {pnsd_path(),          "--socket",      socket_,
                                     "--state-dir",        state_dir_,      "--runtime-dir",
                                     runtime_dir_,         "--log-level",   "debug"};
    auto args = c_argv(argv);
    std::string notify_env = "NOTIFY_SOCKET=" + notify_path_;
    pid_ = fork();
    if (pid_ == 0) {
        int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log < 0) child_fail("open log");
        dup2(log, 1);
        dup2(log, 2);
        putenv(const_cast<char*>(notify_env.c_str()));
        execv(args[0], args.data());
        child_fail("execv pnsd");
    }

    auto deadline = Clock::now() + std::chrono::seconds(20);
    bool ready = false;
    while (!ready && Clock::now() < deadline) {
        pollfd pfd{notify, POLLIN, 0};
        poll(&pfd, 1, 100);
        if (pfd.revents & POLLIN) {
            char buf[4096];
            ssize_t n = recv(notify, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = '\0';
                ready = std::strstr(buf, "READY=1") != nullptr;
            }
            continue;
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            ADD_FAILURE() << "pnsd exited with " << decode_status(status) << " before ready:\n"
                          << log();
            pid_ = -1;
            break;
        }
    }
    close(notify);
    if (!ready && pid_ > 0) {
        ADD_FAILURE() << "pnsd not ready within 20 s:\n" << log();
        kill9();
    }
    return ready;
}

int Pnsd::stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
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

std::string Pnsd::log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

Output Pnsd::ctl(const std::vector<std::string>& args, const RunOptions& options) const {
    // The build tree may sit where other uids cannot reach it (a clone under /root): a user
    // runs a copy of pnsctl from the test's own 0755 directory.
    std::string binary = pnsctl_path();
    if (options.uid && *options.uid != 0) {
        binary = dir_ + "/pnsctl";
        std::error_code ec;
        if (!std::filesystem::exists(binary))
            std::filesystem::copy_file(pnsctl_path(), binary, ec);
        if (ec) ADD_FAILURE() << "copy pnsctl: " << ec.message();
        chmod(binary.c_str(), 0755);
    }
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions with_socket = options;
    with_socket.env.push_back("PNS_SOCKET=" + socket_);
    return run(argv, with_socket);
}

}  // namespace pns::test
