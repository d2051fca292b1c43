#include "agent/server/server.hpp"

#include "agent/proc.hpp"
#include "agent/trusted_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/protocol.hpp"

namespace pns::agent {

namespace {

using Clock = std::chrono::steady_clock;

// While a client has this much unread output, pnsd reads no more of its requests: a client
// that sends but never reads cannot make pnsd buffer without bound.
constexpr std::size_t kOutputHighWater = 1u << 20;
constexpr std::size_t kReadChunk = 64u << 10;

Result<sockaddr_un> socket_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return Error{ENAMETOOLONG, "socket path '" + path + "' is empty or longer than " +
                                       std::to_string(sizeof addr.sun_path - 1) + " bytes"};
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

// Removes a socket left behind by a pnsd that died, but never a live one or a non-socket (a
// symbolic link there is not followed: it is not a socket).
Status clear_stale_socket(int dir, const std::string& name, const std::string& path,
                          const sockaddr_un& addr) {
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return {};
        return sys_error("stat '" + path + "'");
    }
    if (!S_ISSOCK(st.st_mode))
        return Error{EEXIST, "'" + path + "' exists and is not a socket; refusing to replace it"};
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) return sys_error("socket");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
        return Error{EADDRINUSE, "another pnsd is already serving on '" + path + "'"};
    if (::unlinkat(dir, name.c_str(), 0) != 0 && errno != ENOENT)
        return sys_error("remove stale socket '" + path + "'");
    return {};
}

// Tells a client pnsd will not serve why, without waiting for it.
void send_refusal(int fd, const Error& error) {
    std::string line = protocol::encode_failure(error);
    (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void send_busy(int fd) {
    send_refusal(fd, Error{EDQUOT, "pnsd is serving too many clients; try again"});
}

std::string mib(std::size_t bytes) {
    return std::to_string(bytes >> 20) + " MiB";
}

}  // namespace

struct Server::Connection {
    UniqueFd fd;
    Caller caller;
    std::string in;
    std::string out;
    std::size_t out_sent = 0;
    std::size_t scanned = 0;  // bytes of `in` known to hold no '\n'
    bool eof = false;         // the client has finished sending
    bool fatal = false;       // stop serving; close once `out` is sent
    bool backlog = false;     // in backlogged_: `in` holds requests its turn did not reach
    bool waiting = false;     // a deferred request is outstanding: serve nothing more
    bool doomed = false;      // over its uid's output bound: close at the next chance
    bool starved = false;     // backlogged before any request of its turn was served
    std::uint64_t serial = 0;
    std::uint32_t interest = 0;  // events registered with epoll
    // A complete request received, an answer delivered or all output taken (what keeps a
    // connection from being idle; bytes of an unfinished request do not).
    Clock::time_point last_activity = Clock::now();
    // `in` ends in an unfinished request line that pnsd is reading, begun at `line_started`.
    bool partial = false;
    Clock::time_point line_started{};
    // The last time the client took any output (while some waits).
    Clock::time_point output_progress{};
    // What of `in` and of the unsent `out` is counted in the uid's Usage.
    std::size_t counted_in = 0;
    std::size_t counted_out = 0;

    std::size_t pending_output() const { return out.size() - out_sent; }
    // pnsd reads more of this connection's requests (it is not held back for a reason of
    // pnsd's own: a deferred answer, a turn, its unread answers).
    bool reading() const {
        return !eof && !fatal && !doomed && !backlog && !waiting &&
               pending_output() < kOutputHighWater;
    }
};

std::size_t Server::connections_of(uid_t uid) const {
    auto it = usage_.find(uid);
    return it == usage_.end() ? 0 : it->second.connections;
}

void Server::account(Connection& conn) {
    Usage& u = usage_[conn.caller.uid];
    std::size_t pending = conn.pending_output();
    if (pending > 0 && conn.counted_out == 0) conn.output_progress = Clock::now();
    u.input = u.input - conn.counted_in + conn.in.size();
    u.output = u.output - conn.counted_out + pending;
    conn.counted_in = conn.in.size();
    conn.counted_out = pending;
}

bool Server::over_output_quota(const Connection& conn) const {
    if (conn.caller.is_root()) return false;
    auto it = usage_.find(conn.caller.uid);
    return it != usage_.end() && it->second.output > kMaxOutputPerUser;
}

void Server::refuse(Connection& conn, const Error& error) {
    spdlog::debug("server: uid {} pid {}: {}; closing its connection", conn.caller.uid,
                  conn.caller.pid, error.message);
    // Never in the middle of an answer the client is still taking.
    if (conn.pending_output() == 0) send_refusal(conn.fd.get(), error);
    close_connection(conn.fd.get());
}

Server::Server(std::string path, UniqueFd dir, std::string name, UniqueFd listener, UniqueFd epoll,
               UniqueFd signals)
    : path_(std::move(path)),
      dir_(std::move(dir)),
      name_(std::move(name)),
      listener_(std::move(listener)),
      epoll_(std::move(epoll)),
      signals_(std::move(signals)),
      reserve_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {
    struct stat st {};
    if (::fstatat(dir_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        socket_dev_ = st.st_dev;
        socket_ino_ = st.st_ino;
    }
}

Server::~Server() {
    connections_.clear();
    if (listener_) remove_socket();
}

void Server::remove_socket() const {
    // Only the socket this pnsd made: never what has taken its name since.
    struct stat st {};
    if (::fstatat(dir_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISSOCK(st.st_mode) && st.st_dev == socket_dev_ && st.st_ino == socket_ino_)
        ::unlinkat(dir_.get(), name_.c_str(), 0);
}

Result<std::unique_ptr<Server>> Server::listen(const std::string& path) {
    auto addr = socket_address(path);
    if (!addr) return Error(std::move(addr).error());
    auto slash = path.rfind('/');
    std::string dir_path = slash == std::string::npos ? "."
                           : slash == 0               ? "/"
                                                      : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.empty() || name == "." || name == "..")
        return Error::invalid("socket path '" + path + "' does not name a file");
    auto dir = open_trusted_dir(dir_path, {.what = "socket directory"});
    if (!dir) return Error(std::move(dir).error());
    if (auto st = clear_stale_socket(dir->get(), name, path, *addr); !st) return st.error();

    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener) return sys_error("socket");
    // Everyone may connect: each request is authorized from the peer's credentials. The socket
    // is made with that mode (bind creates it as mknod would, 0777 less the umask: unix_bind,
    // unix_mknod), so no chmod by path follows, which a link put in its place would redirect.
    // The umask is the process's: pnsd has no other thread yet (serve() listens first).
    mode_t old_umask = ::umask(0111);
    int bound = ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
    int bind_errno = errno;
    ::umask(old_umask);
    if (bound != 0) return Error::from_errno(bind_errno, "bind '" + path + "'");
    std::unique_ptr<Server> server(new Server(path, std::move(*dir), std::move(name),
                                              std::move(listener), UniqueFd(), UniqueFd()));
    if (::listen(server->listener_.get(), SOMAXCONN) != 0)
        return sys_error("listen on '" + path + "'");

    server->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    server->signals_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!server->epoll_ || !server->signals_) return sys_error("epoll or signalfd");
    for (int fd : {server->listener_.get(), server->signals_.get()}) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (::epoll_ctl(server->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            return sys_error("epoll_ctl");
    }
    return server;
}

Status Server::run(const Handler& handler, const std::function<void()>& on_ready) {
    handler_ = &handler;
    if (on_ready) on_ready();
    std::array<epoll_event, 64> events;
    auto last_sweep = Clock::now();
    for (;;) {
        // Requests already read but not yet served are work to do now, not after a wait.
        int timeout = backlogged_.empty() ? 1000 : 0;
        int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("epoll_wait");
        }
        for (auto& [uid, usage] : usage_) usage.spent = Clock::duration::zero();
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == listener_.get()) {
                accept_all();
                continue;
            }
            if (fd == signals_.get()) {
                signalfd_siginfo info{};
                if (::read(signals_.get(), &info, sizeof info) == sizeof info) return {};
                continue;
            }
            if (auto w = watched_.find(fd); w != watched_.end()) {
                w->second();
                continue;
            }
            auto it = connections_.find(fd);
            if (it == connections_.end()) continue;
            Connection& conn = *it->second;
            if (conn.waiting && (events[i].events & (EPOLLHUP | EPOLLERR))) {
                close_connection(fd);  // gone before its answer came; the answer is dropped
                continue;
            }
            if (events[i].events & EPOLLOUT) flush(conn);
            if (!connections_.contains(fd)) continue;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(conn);
        }
        serve_backlog();
        auto now = Clock::now();
        if (now - last_sweep >= std::chrono::seconds(1)) {
            // Sweeps are a second apart while pnsd keeps up; a longer gap is time it spent
            // on one request, during which no client could be served.
            auto gap = now - last_sweep;
            close_idle(gap > std::chrono::seconds(2) ? gap - std::chrono::seconds(1)
                                                     : Clock::duration::zero());
            last_sweep = now;
        }
    }
}

bool Server::refuse_at_fd_limit() {
    // Out of file descriptors, a client in the listen backlog would wait for an answer forever
    // and the listener, still readable, would spin the event loop. Free the reserve fd, take
    // the client, tell it, and take the reserve back.
    if (!reserve_) return false;
    reserve_.reset();
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    bool accepted = fd.valid();
    if (accepted) send_busy(fd.get());
    fd.reset();
    reserve_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return accepted;
}

void Server::accept_all() {
    for (;;) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if ((errno == EMFILE || errno == ENFILE) && refuse_at_fd_limit()) continue;
            return;  // EAGAIN, or a client gone before we got to it
        }
        if (connections_.size() >= kMaxConnections) {
            send_busy(fd.get());
            continue;
        }
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
        if (cred.uid != 0) {
            // Checked before anything is spent on the client (its pidfd, an epoll entry).
            if (connections_.size() - connections_of(0) >= kMaxConnections - kRootReserve) {
                send_busy(fd.get());
                continue;
            }
            if (connections_of(cred.uid) >= kMaxConnectionsPerUser) {
                send_refusal(fd.get(),
                             Error{EDQUOT, "uid " + std::to_string(cred.uid) + " already has " +
                                               std::to_string(kMaxConnectionsPerUser) +
                                               " connections to pnsd, the most one user may "
                                               "have; close some"});
                continue;
            }
        }
        auto conn = std::make_unique<Connection>();
        conn->caller = Caller{cred.uid, cred.gid, cred.pid, pidfd_of(fd.get(), cred)};
        conn->serial = ++serial_;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd.get();
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) continue;
        conn->interest = EPOLLIN;
        int key = fd.get();
        conn->fd = std::move(fd);
        ++usage_[cred.uid].connections;
        connections_.emplace(key, std::move(conn));
    }
}

void Server::serve_lines(Connection& conn) {
    std::size_t start = 0;
    std::size_t served = 0;
    bool all_served = false;
    while (!conn.fatal && !conn.doomed && !conn.waiting &&
           conn.pending_output() < kOutputHighWater) {
        std::size_t newline = conn.in.find('\n', std::max(start, conn.scanned));
        if (newline == std::string::npos) {
            all_served = true;
            break;
        }
        Usage& usage = usage_[conn.caller.uid];
        if (served++ == kRequestsPerTurn || usage.spent >= kTimePerPass) {
            // The rest waits for this connection's next turn, after every other's; a uid
            // that used its time in this pass waits for the next, so 128 connections of one
            // user get no more of pnsd's time than one connection of another. One that got
            // nothing is first in the next pass, or another of the same uid could take the
            // uid's time in every pass before it.
            conn.starved = served == 1;
            if (!conn.backlog) {
                conn.backlog = true;
                backlogged_.push_back(conn.fd.get());
            }
            break;
        }
        std::string_view line(conn.in.data() + start, newline - start);
        auto began = Clock::now();
        auto response = (*handler_)(conn.caller, line, Ticket{conn.fd.get(), conn.serial});
        usage.spent += Clock::now() - began;
        ++requests_;
        start = newline + 1;
        if (!response) {
            conn.waiting = true;
            break;
        }
        conn.out += *response;
    }
    conn.in.erase(0, start);
    // Remember how far `in` is known to hold no '\n', so a client trickling a long line in
    // small pieces costs linear time, not quadratic.
    conn.scanned = all_served && !conn.waiting ? conn.in.size() : 0;
    if (start > 0) conn.last_activity = Clock::now();
    // The deadline of an unfinished request runs from when pnsd began reading it: the bytes
    // after the last complete request, once every complete one is served.
    if (!all_served || conn.waiting || conn.in.empty()) {
        conn.partial = false;
    } else if (start > 0 || !conn.partial) {
        conn.partial = true;
        conn.line_started = Clock::now();
    }
    // Only an unfinished request can be too large: complete ones are served or backlogged,
    // and nothing more is read from a connection while it has either.
    if (all_served && conn.in.size() > protocol::kMaxMessageBytes) {
        conn.out += protocol::encode_failure(Error{
            EPROTO,
            "request is larger than " + std::to_string(protocol::kMaxMessageBytes >> 20) + " MiB"});
        conn.in.clear();
        conn.fatal = true;
    }
    account(conn);
}

void Server::on_readable(Connection& conn) {
    char buf[kReadChunk];
    ssize_t n = ::recv(conn.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        // The client has finished sending (or is gone): answer what it sent, then close.
        conn.eof = true;
    } else {
        auto got = static_cast<std::size_t>(n);
        if (!conn.caller.is_root() && usage_[conn.caller.uid].input + got > kMaxInputPerUser) {
            refuse(conn, Error{EDQUOT, "uid " + std::to_string(conn.caller.uid) + " has " +
                                           mib(kMaxInputPerUser) +
                                           " of unfinished requests in pnsd, the most one "
                                           "user may have"});
            return;
        }
        conn.in.append(buf, got);
        account(conn);
    }
    serve_lines(conn);
    flush(conn);
}

void Server::flush(Connection& conn) {
    int fd = conn.fd.get();
    if (conn.doomed || (conn.pending_output() > 0 && over_output_quota(conn))) {
        spdlog::debug("server: uid {} pid {}: more than {} of answers unread; closing",
                      conn.caller.uid, conn.caller.pid, mib(kMaxOutputPerUser));
        close_connection(fd);
        return;
    }
    for (;;) {
        while (conn.pending_output() > 0) {
            ssize_t n = ::send(fd, conn.out.data() + conn.out_sent, conn.pending_output(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                close_connection(fd);  // EPIPE, ECONNRESET: the client left
                return;
            }
            conn.out_sent += static_cast<std::size_t>(n);
            conn.output_progress = Clock::now();
        }
        if (conn.pending_output() > 0) break;
        conn.out.clear();
        conn.out_sent = 0;
        conn.last_activity = Clock::now();
        account(conn);
        // Output drained: serve requests held back by the high-water mark, if any (those
        // held back for another's turn wait for serve_backlog).
        if (!conn.fatal && !conn.backlog && !conn.waiting && !conn.in.empty()) serve_lines(conn);
        if (conn.pending_output() > 0) continue;
        if (conn.fatal || (conn.eof && !conn.backlog && !conn.waiting)) {
            close_connection(fd);
            return;
        }
        break;
    }
    account(conn);
    update_interest(conn);
}

void Server::update_interest(Connection& conn) {
    std::uint32_t want = 0;
    if (conn.pending_output() > 0) want |= EPOLLOUT;
    if (conn.reading()) want |= EPOLLIN;
    if (want == conn.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = conn.fd.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, conn.fd.get(), &ev) != 0) {
        close_connection(conn.fd.get());
        return;
    }
    conn.interest = want;
}

void Server::close_connection(int fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    const Connection& conn = *it->second;
    if (auto u = usage_.find(conn.caller.uid); u != usage_.end()) {
        u->second.connections -= 1;
        u->second.input -= conn.counted_in;
        u->second.output -= conn.counted_out;
        if (u->second.connections == 0) usage_.erase(u);
    }
    connections_.erase(it);
}

void Server::serve_backlog() {
    // A connection's turn may put it back on the list: it is served again next pass, after
    // the connections that are ready by then.
    std::vector<int> turn;
    turn.swap(backlogged_);
    std::stable_partition(turn.begin(), turn.end(), [this](int fd) {
        auto it = connections_.find(fd);
        return it != connections_.end() && it->second->starved;
    });
    for (int fd : turn) {
        auto it = connections_.find(fd);
        // Closed since, or its fd already reused by a connection that was never backlogged.
        if (it == connections_.end() || !it->second->backlog) continue;
        Connection& conn = *it->second;
        conn.backlog = false;
        serve_lines(conn);
        flush(conn);
    }
}

void Server::answer(Ticket ticket, std::string response) {
    auto it = connections_.find(ticket.fd);
    if (it == connections_.end() || it->second->serial != ticket.connection) return;
    Connection& conn = *it->second;
    conn.waiting = false;
    conn.out += response;
    conn.last_activity = Clock::now();
    account(conn);
    if (!conn.fatal && !conn.backlog && !conn.in.empty()) serve_lines(conn);
    flush(conn);
}

bool Server::push(Ticket ticket, const std::string& response) {
    auto it = connections_.find(ticket.fd);
    if (it == connections_.end() || it->second->serial != ticket.connection) return false;
    Connection& conn = *it->second;
    if (conn.pending_output() > kOutputHighWater) {
        close_connection(ticket.fd);
        return false;
    }
    conn.out += response;
    account(conn);
    if (over_output_quota(conn)) {
        // Closed by the event loop (flush, or the next sweep): push() may be called while
        // this very connection's requests are being served.
        conn.doomed = true;
        return false;
    }
    // Sent when the socket is writable, from the event loop: push() may be called while this
    // very connection's requests are being served.
    update_interest(conn);
    return connections_.contains(ticket.fd);
}

bool Server::connected(Ticket ticket) const {
    auto it = connections_.find(ticket.fd);
    return it != connections_.end() && it->second->serial == ticket.connection &&
           !it->second->doomed;
}

Status Server::watch(int fd, std::function<void()> on_readable) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return sys_error("epoll_ctl");
    watched_[fd] = std::move(on_readable);
    return {};
}

std::shared_ptr<const UniqueFd> Server::pidfd_of(int socket, const ucred& cred) {
    // One pidfd per client process, whatever its number of connections. While the one kept is
    // alive, its process has not been reaped, so no other process can have that pid: a new
    // connection from the pid is from the same process.
    auto& kept = pidfds_[cred.pid];
    if (auto pidfd = kept.lock(); pidfd && proc::pidfd_alive(pidfd->get())) return pidfd;
    auto opened = proc::peer_pidfd(socket, cred.pid, cred.uid);
    if (!opened) {
        pidfds_.erase(cred.pid);
        return nullptr;
    }
    auto pidfd = std::make_shared<const UniqueFd>(std::move(*opened));
    kept = pidfd;
    return pidfd;
}

void Server::close_idle(Clock::duration stalled) {
    std::erase_if(pidfds_, [](const auto& entry) { return entry.second.expired(); });
    auto now = Clock::now();
    std::vector<int> idle, late, stuck;
    for (auto& [fd, conn] : connections_) {
        // Time pnsd itself spent away from its clients (one long request of someone else's)
        // is not held against them.
        conn->last_activity += stalled;
        conn->line_started += stalled;
        conn->output_progress += stalled;
        if (conn->doomed)
            stuck.push_back(fd);
        else if (conn->partial && conn->reading() && now - conn->line_started >= kRequestDeadline)
            late.push_back(fd);
        else if (conn->pending_output() > 0 && now - conn->output_progress >= kOutputDeadline)
            stuck.push_back(fd);
        else if (!conn->waiting && now - conn->last_activity >= kIdleTimeout)
            idle.push_back(fd);
    }
    for (int fd : idle) close_connection(fd);
    for (int fd : stuck) close_connection(fd);
    for (int fd : late) {
        auto it = connections_.find(fd);
        if (it == connections_.end()) continue;
        refuse(*it->second,
               Error{EDQUOT, "request not complete " + std::to_string(kRequestDeadline.count()) +
                                 " s after its first byte; closing"});
    }
}

}  // namespace pns::agent
