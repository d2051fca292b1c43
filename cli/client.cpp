#include "cli/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "common/text.hpp"

namespace pns::cli {

Result<Client> Client::connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return Error{ENAMETOOLONG, "socket path " + quote(path) + " is empty or too long"};
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return sys_error("socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        int err = errno;
        if (err == ENOENT || err == ECONNREFUSED)
            return Error{err, "pnsd is not running (cannot connect to " + quote(path) + ": " +
                                  std::strerror(err) +
                                  "); start it with 'systemctl start pnsd', or run 'pnsd' as root"};
        return Error::from_errno(err, "cannot connect to pnsd at " + quote(path));
    }
    return Client(std::move(fd), path);
}

Status Client::send(const protocol::Request& request) {
    std::string wire = protocol::encode_request(request);
    std::string_view rest = wire;
    while (!rest.empty()) {
        ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("send to pnsd at " + quote(path_));
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

Result<protocol::Response> Client::next(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t newline;
    while ((newline = pending_.find('\n')) == std::string::npos) {
        int wait = -1;
        if (timeout.count() >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return Error{ETIMEDOUT, "pnsd at " + quote(path_) + " did not answer within " +
                                            std::to_string(timeout.count() / 1000) + " s"};
            wait = static_cast<int>(left.count());
        }
        pollfd pfd{fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, wait);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return sys_error("poll");
        if (ready == 0) continue;
        char buf[65536];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("receive from pnsd at " + quote(path_));
        if (n == 0) return Error{ECONNRESET, "pnsd closed the connection without an answer"};
        pending_.append(buf, static_cast<std::size_t>(n));
    }
    std::string line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return protocol::decode_response(line);
}

Result<protocol::Response> Client::call(const protocol::Request& request,
                                        std::chrono::milliseconds timeout) {
    if (auto st = send(request); !st) return st.error();
    return next(timeout);
}

}  // namespace pns::cli
