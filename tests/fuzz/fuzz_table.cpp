// Fuzzes the table text parser: it must never crash, and whatever it accepts must format to
// text that parses back to the same table (the export/apply round trip).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto table = pns::parse_table(text);
    if (!table) return 0;
    if (!pns::validate_table(*table)) std::abort();
    std::string formatted = pns::format_table(*table);
    auto again = pns::parse_table(formatted);
    if (!again || !(*again == *table)) std::abort();
    if (pns::format_table(*again) != formatted) std::abort();
    return 0;
}
