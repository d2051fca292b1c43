// The holder's side in pnsd: starting pns-holder (agent/join/holder.c) inside a destination
// view for one join, watching it get ready, and ending it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "agent/join/tracer.hpp"
#include "agent/proc.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

// How long a holder may take to get ready (it needs milliseconds). It runs as the member's
// uid, which may stop it: then it is killed and the join refused. The tracer never waits for
// it in a blocking call, so meanwhile every other join goes on.
inline constexpr auto kHolderPatience = std::chrono::seconds(10);

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
    std::chrono::steady_clock::time_point started() const { return started_; }
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
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// The holder program, beside pnsd or where `cmake --install` puts it (see holder_process.cpp),
// opened O_PATH once: every holder is exec'd from this descriptor.
Result<UniqueFd> open_holder_program();

}  // namespace pns::agent
