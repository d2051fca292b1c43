// Human-readable output of pnsctl; --json prints pnsd's result objects instead.
#pragma once

#include <cstdio>

#include <nlohmann/json.hpp>

namespace pns::cli {

void print_status(std::FILE* out, const nlohmann::json& status);
void print_namespace_list(std::FILE* out, const nlohmann::json& list);
void print_namespace(std::FILE* out, const nlohmann::json& ns);
void print_explanation(std::FILE* out, const nlohmann::json& explanation);
void print_processes(std::FILE* out, const nlohmann::json& list);
void print_event(std::FILE* out, const nlohmann::json& event);
// What `attach`, `run` and `detach` say beyond plain success (warnings go to stderr).
void print_join(std::FILE* out, const nlohmann::json& result);

}  // namespace pns::cli
