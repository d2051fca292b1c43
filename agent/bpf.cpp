#include "agent/bpf.hpp"

#include <cstdio>

#include <spdlog/spdlog.h>

namespace pns::agent::bpf {

namespace {
bool quiet = false;  // pnsd loads BPF objects from its main thread only
}  // namespace

QuietLibbpf::QuietLibbpf() {
    quiet = true;
}
QuietLibbpf::~QuietLibbpf() {
    quiet = false;
}

int log_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
    char buf[2048];
    std::vsnprintf(buf, sizeof buf, format, args);
    std::string line(buf);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    auto at = quiet                  ? spdlog::level::trace
              : level == LIBBPF_WARN ? spdlog::level::warn
                                     : spdlog::level::debug;
    spdlog::log(at, "libbpf: {}", line);
    return 0;
}

}  // namespace pns::agent::bpf
