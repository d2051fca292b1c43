// Fuzzes what pnsd reads from any local user: request decoding, and the entry decoding behind
// it. Nothing may crash; an accepted entry is valid and survives a JSON round trip.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pns::protocol;
    std::string_view line(reinterpret_cast<const char*>(data), size);
    auto request = decode_request(line);
    if (!request) {
        // Every refusal must map to a protocol code and encode as a response.
        if (code_from_errno(request.error().code) == Code::kOk) std::abort();
        (void)encode_failure(request.error());
        return 0;
    }
    for (const char* key : {"entry", "args"}) {
        auto it = request->args.find(key);
        if (it == request->args.end()) continue;
        auto entry = entry_from_json(*it);
        if (!entry) continue;
        if (!pns::validate_entry(*entry)) std::abort();
        auto again = entry_from_json(entry_to_json(*entry));
        if (!again || !(*again == *entry)) std::abort();
    }
    (void)get_string(request->args, "name");
    (void)get_bool(request->args, "locked", false);
    (void)decode_response(line);
    (void)encode_success(request->args);
    return 0;
}
