// Lanes: the threads that do the views' work of requests, one per user with work waiting, so
// that a slow or stuck edit (a skeleton of a huge directory, a source on a FUSE file system
// whose daemon never answers) delays only the user who asked for it: never another user, root,
// a held process or pnsd's main thread, which goes on serving while a lane works.
//
// Each lane is a MountWorker (agent/views/worker.hpp): a thread with an fs_struct of its own that may
// enter views. A user's jobs run one after another in the order posted, on that user's lane;
// lanes of different users run at once (the registry keeps two jobs off one namespace). A
// job's completion runs on the main thread, from the event loop. A lane left without work is
// ended; one stuck in a job stays until its job returns (the FUSE daemon answers or goes).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "agent/views/worker.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

class Lanes {
  public:
    static Result<std::unique_ptr<Lanes>> open();
    // Lanes still in a job are let go with the process (MountWorker::abandon).
    ~Lanes();
    Lanes(const Lanes&) = delete;
    Lanes& operator=(const Lanes&) = delete;

    using Job = std::function<Status()>;        // on the lane
    using Done = std::function<void(Status)>;   // on the main thread, with the job's status

    // Runs `job` on `uid`'s lane (made if it has none), then `done` with its status.
    void post(uid_t uid, Job job, Done done);

    // Readable when completions wait; finish() runs them (main thread).
    int event_fd() const { return shared_->event.get(); }
    void finish();

    // Finishes completions as they come until no job is pending (true) or `patience` has
    // passed (false). For pnsd's start, before it serves.
    bool wait(std::chrono::milliseconds patience);

    // Jobs posted and not finished yet, and how many lanes run.
    std::size_t pending() const { return pending_; }
    std::size_t lanes() const { return lanes_.size(); }

  private:
    struct Lane {
        MountWorker worker;
        std::size_t jobs = 0;  // posted, not finished
    };
    struct Completion {
        uid_t uid;
        Status status;
        Done done;
    };
    // What the lanes write to: shared with their jobs, so that a job abandoned at exit that
    // returns after the Lanes are gone still writes to something.
    struct Shared {
        UniqueFd event;  // eventfd: completions waiting for the main thread
        std::mutex mutex;
        std::vector<Completion> completions;
        void add(Completion c);
    };

    explicit Lanes(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

    std::shared_ptr<Shared> shared_;
    std::map<uid_t, std::unique_ptr<Lane>> lanes_;
    std::size_t pending_ = 0;
};

}  // namespace pns::agent
