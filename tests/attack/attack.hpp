// The attack tier: each test runs an attack on pnsd as an ordinary user against a real pnsd,
// and asserts that it fails *and* that its control (the same steps without the malicious part)
// succeeds, so no test here can pass by everything failing. Races run for a bounded time.
#pragma once

#include "tests/priv/harness.hpp"

namespace pns::test {

// The attacker is kOtherUid (4242); the victim, another ordinary user whose files and
// processes the attacker must never reach, is kVictimUid.
inline constexpr uid_t kVictimUid = 4343;
inline constexpr gid_t kVictimGid = 4343;

}  // namespace pns::test
