#include "agent/log.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

namespace pns::agent {

namespace {

// systemd documents JOURNAL_STREAM as "device:inode" of the stream it connected to stderr;
// only when they match is stderr still the journal (and not redirected by a wrapper).
bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

Status setup_logging(const std::string& level) {
    auto parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off")
        return Error::invalid("unknown log level '" + level +
                              "' (expected trace, debug, info, warn or error)");
    // Thread-safe sinks (_mt): the tracer thread and the lanes log too.
    std::shared_ptr<spdlog::logger> logger;
    if (stderr_is_journal()) {
        logger = std::make_shared<spdlog::logger>(
            "pnsd", std::make_shared<spdlog::sinks::systemd_sink_mt>("pnsd"));
        logger->set_pattern("%v");  // the journal adds time, priority and unit itself
    } else {
        logger = std::make_shared<spdlog::logger>(
            "pnsd", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    }
    logger->set_level(parsed);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
    return {};
}

}  // namespace pns::agent
