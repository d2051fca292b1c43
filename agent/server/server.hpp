// The socket pnsd serves on: a Unix stream socket open to everyone (mode 0666), one event
// loop over non-blocking connections. Requests are newline-terminated JSON; each connection
// has its own input and output buffers, so a slow or stalled client holds only its own
// connection and never blocks another.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/namespaces/namespace.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent {

class Server {
  public:
    // Names a request whose answer comes later (Server::answer). A connection with such a
    // request outstanding serves none of its later ones until then, so answers stay in order.
    struct Ticket {
        int fd = -1;
        std::uint64_t connection = 0;  // serial number: the fd may be reused meanwhile
    };
    // Takes one complete request line, returns one complete response line (with '\n'), or
    // nothing when the answer will be given later with answer(ticket, ...).
    using Handler =
        std::function<std::optional<std::string>(const Caller&, std::string_view request, Ticket)>;

    // Fair sharing (DESIGN.md, decision 8): every uid but root has bounds of its own, so one
    // user holding all of them keeps nobody else out.
    //
    // Most connections served at once; further clients are told so and closed.
    static constexpr std::size_t kMaxConnections = 4096;
    // Of those, the slots only root may take: root's pnsctl gets in while every other uid
    // together holds all the rest.
    static constexpr std::size_t kRootReserve = 256;
    // Connections one non-root uid may hold at once (pnsctl needs one per command; `events`,
    // `run` and a pending `attach` hold theirs while they wait).
    static constexpr std::size_t kMaxConnectionsPerUser = 128;
    // A connection with no complete request and no answer taken for this long is closed
    // (bytes of an unfinished request do not count: a byte every few seconds keeps nothing
    // open).
    static constexpr std::chrono::seconds kIdleTimeout{60};
    // A request line must be complete this long after its first byte arrived, or the
    // connection is told so and closed. The largest legal request (an `apply` of an 8 MiB
    // table, at most 32 MiB of JSON) crosses a Unix socket in milliseconds.
    static constexpr std::chrono::seconds kRequestDeadline{10};
    // A connection whose client takes none of the answers (or streamed lines) waiting for it
    // for this long is closed.
    static constexpr std::chrono::seconds kOutputDeadline{60};
    // Bytes of unfinished requests one non-root uid may have buffered in pnsd over all its
    // connections: two of the largest legal requests at once.
    static constexpr std::size_t kMaxInputPerUser = 64u << 20;
    // Bytes of answers one non-root uid may leave unread in pnsd over all its connections; a
    // connection that takes its uid past this is closed.
    static constexpr std::size_t kMaxOutputPerUser = 64u << 20;
    // Requests served from one connection before the others get their turn: a client that
    // pipelines thousands of writes (each one fsynced) must not hold up everybody else.
    static constexpr std::size_t kRequestsPerTurn = 16;
    // Time on pnsd's main thread each uid gets in one pass over the ready connections (at
    // least one request, however long); the rest of its requests wait for the next pass.
    static constexpr std::chrono::milliseconds kTimePerPass{1};

    // Binds and listens on `path`, made with mode 0666. Its directory must be one only root
    // controls (agent/trusted_dir.hpp). An existing socket there is replaced only when nothing
    // answers on it (a leftover of a crash); a live pnsd there, or anything else at that name
    // (a symbolic link included: never followed), is an error.
    static Result<std::unique_ptr<Server>> listen(const std::string& path);
    ~Server();

    // Serves until SIGTERM or SIGINT arrives (the caller blocks them in every thread first).
    // `on_ready` runs once, just before the first wait.
    Status run(const Handler& handler, const std::function<void()>& on_ready);

    // Gives the answer to a request the handler deferred; dropped if its client is gone.
    // Main thread only (the one in run()).
    void answer(Ticket ticket, std::string response);

    // Sends one more response line for a deferred request that streams (the request stays
    // open). False when the client is gone, or reads so slowly that its answers pile up past
    // the high-water mark (then it is disconnected).
    bool push(Ticket ticket, const std::string& response);

    // Whether the client of `ticket` is still connected.
    bool connected(Ticket ticket) const;

    // Calls `on_readable` in the event loop whenever `fd` is readable.
    Status watch(int fd, std::function<void()> on_readable);

    std::size_t connections() const { return connections_.size(); }
    // Connections of `uid` open now.
    std::size_t connections_of(uid_t uid) const;
    std::uint64_t requests_served() const { return requests_; }
    const std::string& path() const { return path_; }

  private:
    struct Connection;
    // What one uid holds in pnsd now.
    struct Usage {
        std::size_t connections = 0;
        std::size_t input = 0;                        // bytes of requests read and not yet served
        std::size_t output = 0;                       // bytes of answers not yet taken
        std::chrono::steady_clock::duration spent{};  // serving its requests, in this pass
    };

    Server(std::string path, UniqueFd dir, std::string name, UniqueFd listener, UniqueFd epoll,
           UniqueFd signals);
    void remove_socket() const;
    void accept_all();
    bool refuse_at_fd_limit();
    void on_readable(Connection& conn);
    void serve_lines(Connection& conn);
    void flush(Connection& conn);
    void update_interest(Connection& conn);
    void close_connection(int fd);
    void close_idle(std::chrono::steady_clock::duration stalled);
    // Brings the uid's Usage in line with what `conn` buffers now.
    void account(Connection& conn);
    // Answers `conn` with `error` (best effort) and closes it.
    void refuse(Connection& conn, const Error& error);
    bool over_output_quota(const Connection& conn) const;
    std::shared_ptr<const UniqueFd> pidfd_of(int socket, const struct ucred& cred);
    void serve_backlog();

    std::string path_;
    UniqueFd dir_;      // the socket's directory
    std::string name_;  // the socket's name in it
    dev_t socket_dev_ = 0;
    ino_t socket_ino_ = 0;  // the socket this pnsd made: removed at exit only if still there
    UniqueFd listener_;
    UniqueFd epoll_;
    UniqueFd signals_;
    UniqueFd reserve_;  // given up to answer a client when pnsd is out of fds
    std::unordered_map<int, std::unique_ptr<Connection>> connections_;
    // Connections holding complete requests that their turn did not reach, in turn order.
    std::vector<int> backlogged_;
    std::uint64_t requests_ = 0;
    std::uint64_t serial_ = 0;
    const Handler* handler_ = nullptr;
    std::unordered_map<int, std::function<void()>> watched_;
    // The pidfd of each client process with connections open (Caller::pidfd).
    std::unordered_map<pid_t, std::weak_ptr<const UniqueFd>> pidfds_;
    std::unordered_map<uid_t, Usage> usage_;
};

}  // namespace pns::agent
