// Small assertion helpers shared by the unit tests (gmock is not linked, so no matchers).
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/table.hpp"

namespace pns {

// Readable gtest output for entries and tables: their text form.
inline std::ostream& operator<<(std::ostream& os, const Entry& entry) {
    return os << format_entry(entry);
}
inline std::ostream& operator<<(std::ostream& os, const Table& table) {
    return os << "\n" << format_table(table);
}

}  // namespace pns

namespace pns::test {

inline ::testing::AssertionResult Contains(std::string_view haystack, std::string_view needle) {
    if (haystack.find(needle) != std::string_view::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "'" << haystack << "' does not contain '" << needle << "'";
}

// Succeeds when `r` failed with errno `code` and a message holding `needle`.
template <typename R>
::testing::AssertionResult FailsWith(const R& r, int code, std::string_view needle = {}) {
    if (r.ok()) return ::testing::AssertionFailure() << "succeeded, expected errno " << code;
    if (r.error().code != code)
        return ::testing::AssertionFailure() << "failed with errno " << r.error().code
                                             << " instead of " << code << ": " << r.error().message;
    if (!needle.empty()) return Contains(r.error().message, needle);
    return ::testing::AssertionSuccess();
}

template <typename R>
::testing::AssertionResult Succeeds(const R& r) {
    if (r.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "failed: " << r.error().message;
}

// A string with embedded NUL bytes from a literal: S("a\0b") keeps all three bytes.
template <std::size_t N>
std::string S(const char (&literal)[N]) {
    return std::string(literal, N - 1);
}

}  // namespace pns::test
