// A thread that does pnsd's mount work. setns(CLONE_NEWNS) requires a thread whose fs_struct
// (root, cwd, umask) is its own (kernel/nsproxy.c, fs/namespace.c: mntns_install), which no
// thread of a process that shares it may have; this one unshares CLONE_FS when it starts and
// so may move between the host's mount namespace and the views' without touching pnsd's
// other threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

class MountWorker {
  public:
    MountWorker();
    ~MountWorker();
    MountWorker(const MountWorker&) = delete;
    MountWorker& operator=(const MountWorker&) = delete;

    // Runs `job` on the worker thread and waits for it. Every job starts and must end in the
    // host's mount namespace with root credentials; ScopedMountNamespace below restores that.
    // Called on a mount worker (this one or another: a lane of agent/server/lanes.hpp), it runs the
    // job at once on the calling thread, which may do the same work.
    Status run(const std::function<Status()>& job);

    // Queues `job` and returns at once; jobs run in the order they were posted.
    void post(std::function<void()> job);

    // For a worker stuck in a job that will not return (a lookup on a FUSE file system whose
    // daemon never answers): lets its thread go, to end with the process, so that destroying
    // the worker does not wait for it. The worker's memory must then outlive the thread: its
    // owner leaks it on purpose.
    void abandon();

    // Whether the thread could unshare its fs_struct; if not, run() fails every job.
    const Status& started() const { return started_; }

  private:
    void loop();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    Status started_;
    std::thread thread_;
};

// Enters a mount namespace for a scope and returns to the host's at its end, whatever happens.
class ScopedMountNamespace {
  public:
    // `host` is the host's mount namespace fd, `target` the namespace to enter.
    static Result<ScopedMountNamespace> enter(int host, int target);
    ScopedMountNamespace(ScopedMountNamespace&& other) noexcept : host_(other.host_) {
        other.host_ = -1;
    }
    ScopedMountNamespace& operator=(ScopedMountNamespace&&) = delete;
    ~ScopedMountNamespace();

  private:
    explicit ScopedMountNamespace(int host) : host_(host) {}
    int host_;
};

}  // namespace pns::agent
