// The request table's check against the protocol, and the README's list of operations against
// common/ops.hpp: an operation added to one and not the others fails here, not in a user's hands.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "agent/server/requests.hpp"
#include "common/ops.hpp"

namespace pns::agent {
namespace {

namespace op = protocol::op;

std::vector<std::string_view> all_ops() {
    return {op::kAll.begin(), op::kAll.end()};
}

TEST(RequestTable, NamingEveryOperationOnceIsComplete) {
    EXPECT_EQ(compare_with_protocol(all_ops()), "");
}

TEST(RequestTable, AMissingOperationIsNamed) {
    auto ops = all_ops();
    std::erase(ops, std::string_view(op::kNsExplain));
    EXPECT_EQ(compare_with_protocol(ops), "missing: ns.explain");
}

TEST(RequestTable, AnUnknownOrRepeatedOperationIsNamed) {
    auto ops = all_ops();
    ops.push_back("ns.frob");
    ops.push_back(op::kStatus);
    EXPECT_EQ(compare_with_protocol(ops), "not in the protocol or twice: ns.frob, status");
}

TEST(RequestTable, MakeRefusesAnIncompleteTable) {
    std::vector<Route> routes;
    for (auto name : op::kAll)
        if (name != op::kPolicyLs)
            routes.push_back(Route{name, Effect::kReads,
                                   [](const Caller&, const protocol::Request&, Server::Ticket) {
                                       return Reply(nlohmann::json::object());
                                   },
                                   {}});
    auto made = Requests::make(routes);
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().message, "request table: missing: policy.ls");
}

TEST(RequestTable, AnUnknownOperationIsRefusedByName) {
    std::vector<Route> routes;
    for (auto name : op::kAll)
        routes.push_back(Route{name, Effect::kReads,
                               [](const Caller&, const protocol::Request&, Server::Ticket) {
                                   return Reply(nlohmann::json{{"served", true}});
                               },
                               {}});
    auto requests = Requests::make(routes);
    ASSERT_TRUE(requests);
    Caller caller{1000, 1000, 1, nullptr};
    auto unknown = requests->serve(caller, R"({"version":1,"op":"ns.frob","args":{}})", {});
    ASSERT_TRUE(unknown);
    EXPECT_NE(unknown->find("unknown operation 'ns.frob'"), std::string::npos) << *unknown;
    auto known = requests->serve(caller, R"({"version":1,"op":"ns.ls","args":{}})", {});
    ASSERT_TRUE(known);
    EXPECT_NE(known->find(R"("served":true)"), std::string::npos) << *known;
}

TEST(RequestTable, ALaterAnswerIsNotEncoded) {
    std::vector<Route> routes;
    for (auto name : op::kAll)
        routes.push_back(Route{name, Effect::kChanges,
                               [](const Caller&, const protocol::Request&, Server::Ticket) {
                                   return Reply::later();
                               },
                               {}});
    auto requests = Requests::make(routes);
    ASSERT_TRUE(requests);
    Caller caller{0, 0, 1, nullptr};
    EXPECT_FALSE(requests->serve(caller, R"({"version":1,"op":"proc.join","args":{}})", {}));
}

// README.md's "Operations:" paragraph names each operation as `op` or `op {args}`.
TEST(RequestTable, TheReadmeListsExactlyTheProtocolsOperations) {
    // README.md as it was when the tests were built (tests/CMakeLists.txt).
    const std::string readme =
#include "readme.inc"
        ;
    auto start = readme.find("\nOperations: ");
    ASSERT_NE(start, std::string::npos) << "README.md has no \"Operations:\" paragraph";
    auto end = readme.find("\n\n", start + 1);
    auto end_codes = readme.find("Error codes", start);
    std::string paragraph = readme.substr(start, std::min(end, end_codes) - start);
    std::vector<std::string> names;
    std::regex op_name("`([a-z]+(\\.[a-z]+)?)( \\{[^}`]*\\})?`");
    for (auto it = std::sregex_iterator(paragraph.begin(), paragraph.end(), op_name);
         it != std::sregex_iterator(); ++it)
        names.push_back((*it)[1]);
    std::vector<std::string_view> views(names.begin(), names.end());
    EXPECT_EQ(compare_with_protocol(views), "") << paragraph;
}

}  // namespace
}  // namespace pns::agent
