// Test harness for the privileged tier: a real pnsd on a private socket and state directory,
// and the real pnsctl binary run as any uid. Readiness is pnsd's own sd_notify(READY=1),
// received on a notify socket of the test's, so no test ever sleeps to wait for it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

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

// One pnsd, started in the constructor and stopped (SIGTERM, then SIGKILL) in the destructor.
class Pnsd {
public:
    explicit Pnsd(const std::string& dir);  // socket, state and runtime dirs under `dir`
    ~Pnsd();
    Pnsd(const Pnsd&) = delete;
    Pnsd& operator=(const Pnsd&) = delete;

    // Starts pnsd and waits for READY=1. Returns false (with the log in `log()`) if it exits
    // or does not become ready within 20 s.
    bool start();
    // SIGTERM and wait; returns pnsd's exit status.
    int stop();
    // SIGKILL and reap: a crash at an arbitrary moment.
    void kill9();

    pid_t pid() const { return pid_; }
    const std::string& socket() const { return socket_; }
    const std::string& state_dir() const { return state_dir_; }
    std::string log() const;

    // Runs pnsctl against this pnsd (PNS_SOCKET set), as root or as options.uid.
    Output ctl(const std::vector<std::string>& args, const RunOptions& options = {}) const;

private:
    std::string dir_, socket_, state_dir_, runtime_dir_, log_path_, notify_path_;
    pid_t pid_ = -1;
};

const char* pnsd_path();
const char* pnsctl_path();

}  // namespace pns::test
