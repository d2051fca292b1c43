// The operations of the pnsd protocol (common/protocol.hpp), by name: what pnsctl sends and
// what pnsd's request table (agent/server/requests.hpp) serves. README.md's "Protocol" list
// names each of them; tests/unit/requests_test.cpp checks that it names exactly these.
#pragma once

#include <array>
#include <string_view>

namespace pns::protocol::op {

inline constexpr char kStatus[] = "status";
inline constexpr char kNsCreate[] = "ns.create";
inline constexpr char kNsRm[] = "ns.rm";
inline constexpr char kNsLs[] = "ns.ls";
inline constexpr char kNsShow[] = "ns.show";
inline constexpr char kNsExport[] = "ns.export";
inline constexpr char kNsApply[] = "ns.apply";
inline constexpr char kNsExplain[] = "ns.explain";
inline constexpr char kNsView[] = "ns.view";
inline constexpr char kEntryAdd[] = "entry.add";
inline constexpr char kEntryRm[] = "entry.rm";
inline constexpr char kProcJoin[] = "proc.join";
inline constexpr char kProcDetach[] = "proc.detach";
inline constexpr char kProcLs[] = "proc.ls";
inline constexpr char kProcEvents[] = "proc.events";
inline constexpr char kPolicySet[] = "policy.set";
inline constexpr char kPolicyRm[] = "policy.rm";
inline constexpr char kPolicyLs[] = "policy.ls";

// Every operation, once.
inline constexpr std::array<std::string_view, 18> kAll = {
    kStatus,     kNsCreate,  kNsRm,        kNsLs,      kNsShow,     kNsExport,
    kNsApply,    kNsExplain, kNsView,      kEntryAdd,  kEntryRm,    kProcJoin,
    kProcDetach, kProcLs,    kProcEvents,  kPolicySet, kPolicyRm,   kPolicyLs,
};

}  // namespace pns::protocol::op
