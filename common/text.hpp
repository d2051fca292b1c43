// Small text helpers shared by pnsd and pnsctl.
#pragma once

#include <string>
#include <string_view>

namespace pns {

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). Paths travel in JSON, which carries only Unicode text.
bool is_valid_utf8(std::string_view s);

// A user-supplied string fit for a one-line message: in single quotes, with control
// characters, quotes and backslashes escaped, and cut at 200 bytes.
std::string quote(std::string_view s);

}  // namespace pns
