#include "agent/server/lanes.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace pns::agent {

Result<std::unique_ptr<Lanes>> Lanes::open() {
    auto shared = std::make_shared<Shared>();
    shared->event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!shared->event) return sys_error("eventfd for the lanes");
    return std::unique_ptr<Lanes>(new Lanes(std::move(shared)));
}

void Lanes::Shared::add(Completion c) {
    std::lock_guard lock(mutex);
    completions.push_back(std::move(c));
    std::uint64_t one = 1;
    (void)::write(event.get(), &one, sizeof one);
}

Lanes::~Lanes() {
    for (auto& [uid, lane] : lanes_) {
        if (lane->jobs == 0) continue;
        // Stuck: its thread may never return to be joined; it ends with the process, and the
        // lane's memory, which it still uses, is left to it.
        lane->worker.abandon();
        (void)lane.release();
    }
}

void Lanes::post(uid_t uid, Job job, Done done) {
    auto& lane = lanes_[uid];
    if (!lane) lane = std::make_unique<Lane>();
    ++lane->jobs;
    ++pending_;
    if (!lane->worker.started()) {
        shared_->add(Completion{uid, lane->worker.started(), std::move(done)});
        return;
    }
    lane->worker.post([shared = shared_, uid, job = std::move(job),
                       done = std::move(done)]() mutable {
        Status status = job();
        shared->add(Completion{uid, std::move(status), std::move(done)});
    });
}

bool Lanes::wait(std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (pending_ > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd pfd{shared_->event.get(), POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left.count())) > 0) finish();
    }
    return true;
}

void Lanes::finish() {
    std::uint64_t count = 0;
    (void)::read(shared_->event.get(), &count, sizeof count);
    std::vector<Completion> ready;
    {
        std::lock_guard lock(shared_->mutex);
        ready.swap(shared_->completions);
    }
    for (auto& c : ready) {
        --pending_;
        auto lane = lanes_.find(c.uid);
        // Ended once idle: a thread per user with nothing to do would only take memory.
        if (lane != lanes_.end() && --lane->second->jobs == 0) lanes_.erase(lane);
        // Last: it may post again (an undo), on a lane made anew if need be.
        c.done(std::move(c.status));
    }
}

}  // namespace pns::agent
