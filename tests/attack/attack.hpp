// The attack tier: each test runs an attack on pnsd as an ordinary user against a real pnsd,
// and asserts that it fails *and* that its control (the same steps without the malicious part)
// succeeds, so no test here can pass by everything failing. Races run for a bounded time.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>
#include <string>

#include "tests/priv/harness.hpp"

namespace pns::test {

// The attacker is kOtherUid (4242); the victim, another ordinary user whose files and
// processes the attacker must never reach, is kVictimUid.
inline constexpr uid_t kVictimUid = 4343;
inline constexpr gid_t kVictimGid = 4343;

// A process of the attacker's that scans /proc, for as long as it lives, for processes named
// pnsd (the children pnsd starts to act as a user) with the attacker's uid among their uids,
// and stops each it finds with SIGSTOP, letting it go at once (SIGCONT), so that a hit holds
// nothing up in the test itself: what it counts is whether the attacker could have stopped
// such a process, holding up pnsd's mount thread for as long as it liked.
class Stopper {
  public:
    // With `keep_stopped`, what it stops stays stopped (the attack); without, it is continued at
    // once (to count how often the attack could land).
    // With `parent`, it looks only at that process's children (what its threads' `children`
    // files list, readable by anyone): a scan quick enough to catch a short-lived child on a
    // slow (emulated) machine, where a scan of all of /proc is not.
    explicit Stopper(bool keep_stopped = false, pid_t parent = 0)
        : keep_stopped_(keep_stopped), parent_(parent) {
        void* shared = ::mmap(nullptr, sizeof(Tally), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shared == MAP_FAILED) return;
        tally_ = new (shared) Tally();
        pid_ = ::fork();
        if (pid_ == 0) scan();
    }
    ~Stopper() {
        finish();
        if (tally_) ::munmap(tally_, sizeof(Tally));
    }
    Stopper(const Stopper&) = delete;
    Stopper& operator=(const Stopper&) = delete;

    bool started() const { return tally_ && pid_ > 0; }
    // Stops the scan; the counts are final after it.
    void finish() {
        if (pid_ <= 0) return;
        tally_->stop = true;
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    int found() const { return tally_ ? tally_->found.load() : 0; }
    int stopped() const { return tally_ ? tally_->stopped.load() : 0; }

  private:
    struct Tally {
        std::atomic<bool> stop{false};
        std::atomic<int> found{0}, stopped{0};
    };

    [[noreturn]] void scan() {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(kOtherGid, kOtherGid, kOtherGid) != 0 ||
            ::setresuid(kOtherUid, kOtherUid, kOtherUid) != 0)
            ::_exit(126);
        std::string me = std::to_string(::getpid());
        while (!tally_->stop.load()) {
            for (const std::string& pid : candidates()) {
                if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0])) || pid == me)
                    continue;
                std::ifstream status("/proc/" + pid + "/status");
                std::string line, name;
                bool theirs = false;
                while (std::getline(status, line)) {
                    if (line.starts_with("Name:")) name = line.substr(5);
                    if (!line.starts_with("Uid:")) continue;
                    std::istringstream ids(line.substr(4));
                    for (uid_t id; ids >> id;) theirs = theirs || id == kOtherUid;
                }
                // pnsd's children (before an exec they have its name) and its holders.
                if (!theirs || (name.find("pnsd") == std::string::npos &&
                                name.find("pns-holder") == std::string::npos))
                    continue;
                tally_->found++;
                pid_t target = std::stoi(pid);
                if (::kill(target, SIGSTOP) == 0) {
                    tally_->stopped++;
                    if (!keep_stopped_) ::kill(target, SIGCONT);
                }
            }
        }
        ::_exit(0);
    }

    std::vector<std::string> candidates() const {
        std::vector<std::string> pids;
        std::error_code ec;
        if (parent_ <= 0) {
            for (const auto& e : std::filesystem::directory_iterator("/proc", ec))
                pids.push_back(e.path().filename().string());
            return pids;
        }
        const std::string tasks = "/proc/" + std::to_string(parent_) + "/task";
        for (const auto& e : std::filesystem::directory_iterator(tasks, ec)) {
            std::ifstream children(e.path() / "children");
            for (std::string pid; children >> pid;) pids.push_back(pid);
        }
        return pids;
    }

    bool keep_stopped_ = false;
    pid_t parent_ = 0;
    Tally* tally_ = nullptr;
    pid_t pid_ = -1;
};

}  // namespace pns::test
