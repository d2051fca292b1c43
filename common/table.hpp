// Namespace tables: the ordered list of path redirections that defines one namespace, its
// text form (the `apply`/`export` format) and the validation every table passes before pnsd
// accepts it. Pure code: no system calls, so it is unit-tested and fuzzed without privilege.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pns {

// Limits that keep one namespace from exhausting pnsd or the kernel's mount table.
inline constexpr std::size_t kMaxNameLength = 64;
inline constexpr std::size_t kMaxPathLength = 4095;      // PATH_MAX less the NUL
inline constexpr std::size_t kMaxComponentLength = 255;  // NAME_MAX
inline constexpr std::size_t kMaxEntries = 65536;
inline constexpr std::size_t kMaxTableTextBytes = 8u << 20;

enum class EntryKind : std::uint8_t {
    kBind,      // bind [-a|-b] [-c] SRC DST
    kHide,      // hide DST
    kReadOnly,  // ro DST
    kTmpfs,     // tmpfs DST
    kDeny,      // deny DST: members get EACCES opening or executing the file (the LSM guard)
};

// Where a bind places SRC relative to what DST already holds.
enum class UnionMode : std::uint8_t {
    kReplace,  // plain bind: DST shows SRC only
    kBefore,   // -b: union, SRC searched first
    kAfter,    // -a: union, SRC searched last
};

struct Entry {
    EntryKind kind = EntryKind::kBind;
    UnionMode mode = UnionMode::kReplace;  // kBind only
    bool create = false;                   // -c, kBind with a union only: new files go to SRC
    std::string source;                    // kBind only; absolute, normalized
    std::string target;                    // absolute, normalized

    friend bool operator==(const Entry&, const Entry&) = default;
};

struct Table {
    std::vector<Entry> entries;
    friend bool operator==(const Table&, const Table&) = default;
};

// A namespace name: [a-z0-9][a-z0-9._-]{0,63}. It is also a file name in the state dir.
Status validate_name(std::string_view name);

// A stored path must already be canonical: absolute, no "." or ".." components, no "//", no
// trailing "/", no NUL or control characters, valid UTF-8, within PATH_MAX and NAME_MAX.
Status validate_path(std::string_view path);

// Lexical normalization of an absolute path: collapses "//" and "." and drops a trailing "/".
// ".." is refused rather than folded: only the kernel knows what ".." means once symlinks and
// mounts are involved, and a table must not depend on that. The result passes validate_path.
Result<std::string> normalize_path(std::string_view path);

// For the command line, where "../alt" is natural: makes `path` absolute against `cwd` (itself
// absolute, as getcwd returns it) and folds "." and ".." lexically. `cwd` from getcwd(3) has
// no symlinks, so a leading ".." is exact; a ".." after a symlink the user named is folded as
// the shell's `cd -L` would.
Result<std::string> absolutize_path(std::string_view path, std::string_view cwd);

// Checks one entry on its own: kinds and flags agree, paths are valid.
Status validate_entry(const Entry& entry);

// Checks a whole table: every entry valid, no entry repeated, no more than kMaxEntries, its
// text form within kMaxTableTextBytes (EDQUOT).
Status validate_table(const Table& table);

// One line of the text form, without newline: `bind -bc /src "/dst with space"`.
std::string format_entry(const Entry& entry);

// The whole text form, one entry per line, each line ending in '\n'.
std::string format_table(const Table& table);

// Parses the text form: one entry a line, `#` starts a comment where a token could start,
// blank lines ignored, double quotes around a path that holds spaces (`\"` and `\\` inside).
// The result is validated as by validate_table; paths are normalized (so `/a//b/` is read as
// `/a/b`, and `format_table(parse_table(format_table(t))) == format_table(t)`).
// Errors read "line L, column C: what is wrong".
Result<Table> parse_table(std::string_view text);

std::string_view to_string(EntryKind kind);

// The kind a verb names ("bind", "hide", ...), or nothing.
std::optional<EntryKind> kind_of_verb(std::string_view verb);
inline constexpr std::string_view kVerbs = "bind, hide, ro, tmpfs or deny";

}  // namespace pns
