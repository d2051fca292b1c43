#include "agent/namespaces/namespace.hpp"

#include <sys/random.h>

#include <cstdio>

namespace pns::agent {

std::string NamespaceId::hex() const {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(high),
                  static_cast<unsigned long long>(low));
    return buf;
}

std::optional<NamespaceId> NamespaceId::parse(std::string_view text) {
    if (text.size() != 32) return std::nullopt;
    NamespaceId id;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f')
            digit = static_cast<unsigned>(c - 'a' + 10);
        else
            return std::nullopt;
        std::uint64_t& half = i < 16 ? id.high : id.low;
        half = (half << 4) | digit;
    }
    if (id.empty()) return std::nullopt;
    return id;
}

Result<NamespaceId> NamespaceId::random() {
    NamespaceId id;
    // getrandom(2) without flags blocks only until the pool is first initialized at boot, and
    // reads of up to 256 bytes are never cut short once it is.
    do {
        std::uint64_t bits[2];
        ssize_t n;
        while ((n = ::getrandom(bits, sizeof bits, 0)) < 0 && errno == EINTR) {
        }
        if (n != static_cast<ssize_t>(sizeof bits)) return sys_error("getrandom");
        id.high = bits[0];
        id.low = bits[1];
    } while (id.empty());
    return id;
}

}  // namespace pns::agent
