#include "agent/views/worker.hpp"

#include <sched.h>

#include <cstdlib>
#include <future>

namespace pns::agent {

namespace {
thread_local bool is_worker = false;
}  // namespace

MountWorker::MountWorker() {
    std::promise<Status> ready;
    auto ready_future = ready.get_future();
    thread_ = std::thread([this, &ready] {
        if (::unshare(CLONE_FS) != 0) {
            ready.set_value(sys_error("unshare(CLONE_FS) for the mount worker"));
            return;
        }
        is_worker = true;
        ready.set_value(Status{});
        loop();
    });
    started_ = ready_future.get();
}

MountWorker::~MountWorker() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void MountWorker::abandon() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
        jobs_.clear();
    }
    wake_.notify_one();
    thread_.detach();
}

void MountWorker::loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

Status MountWorker::run(const std::function<Status()>& job) {
    if (!started_) return started_;
    if (is_worker) return job();
    std::packaged_task<Status()> task(job);
    auto result = task.get_future();
    {
        std::lock_guard lock(mutex_);
        jobs_.emplace_back([&task] { task(); });
    }
    wake_.notify_one();
    return result.get();
}

void MountWorker::post(std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
}

Result<ScopedMountNamespace> ScopedMountNamespace::enter(int host, int target) {
    if (::setns(target, CLONE_NEWNS) != 0) return sys_error("enter mount namespace");
    return ScopedMountNamespace(host);
}

ScopedMountNamespace::~ScopedMountNamespace() {
    // Failing to return would leave the worker in a view: nothing pnsd does after that could
    // be trusted, so this is the one place that aborts.
    if (host_ >= 0 && ::setns(host_, CLONE_NEWNS) != 0) std::abort();
}

}  // namespace pns::agent
