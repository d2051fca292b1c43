// Logging set-up for pnsd: journald's native protocol when stderr is connected to the journal
// (systemd sets JOURNAL_STREAM), a timestamped console otherwise.
#pragma once

#include <string>

#include "common/result.hpp"

namespace pns::agent {

// `level` is one of trace, debug, info, warn, error. Routes spdlog's default logger.
Status setup_logging(const std::string& level);

}  // namespace pns::agent
