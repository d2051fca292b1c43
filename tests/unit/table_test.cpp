#include <gtest/gtest.h>

#include "pns/table.hpp"

namespace pns {
namespace {

TEST(Table, RoundTrip) {
    auto t = parse_table("bind -bc /usr/bin \"/opt/my bin\"\nhide /dev\n");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(format_table(*t), "bind -bc /usr/bin \"/opt/my bin\"\nhide /dev\n");
}

}  // namespace
}  // namespace pns
