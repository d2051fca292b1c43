// pnsctl's connection to pnsd: one Unix socket, newline-delimited JSON requests.
#pragma once

#include <chrono>
#include <string>

#include "common/protocol.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pns::cli {

inline constexpr const char* kDefaultSocket = "/run/pns/pnsd.sock";

class Client {
  public:
    // Connects to pnsd; when nothing listens there, the error says so and how to start it.
    static Result<Client> connect(const std::string& path);

    // Sends one request and waits for its response, at most `timeout`.
    Result<protocol::Response> call(const protocol::Request& request,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(60));

    // Sends a request without waiting; then next() reads its responses (a streaming request
    // has many), waiting at most `timeout` each (negative: for ever).
    Status send(const protocol::Request& request);
    Result<protocol::Response> next(std::chrono::milliseconds timeout);

  private:
    Client(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    UniqueFd fd_;
    std::string path_;
    std::string pending_;  // bytes received past the last response
};

}  // namespace pns::cli
