#include "common/table.hpp"

#include <unordered_map>

#include "common/text.hpp"

namespace pns {

namespace {

bool is_control(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}

// Splits an absolute path into its components, keeping empty ones so callers can tell "//".
std::vector<std::string_view> split_components(std::string_view path) {
    std::vector<std::string_view> parts;
    std::size_t start = 1;
    while (start <= path.size()) {
        std::size_t slash = path.find('/', start);
        if (slash == std::string_view::npos) slash = path.size();
        parts.push_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    return parts;
}

std::string join_components(const std::vector<std::string_view>& parts) {
    if (parts.empty()) return "/";
    std::string out;
    for (auto part : parts) {
        out += '/';
        out += part;
    }
    return out;
}

// Checks what every path must satisfy whatever its shape: length, bytes, encoding.
Status check_path_bytes(std::string_view path) {
    if (path.empty()) return Error::invalid("path is empty");
    if (path.size() > kMaxPathLength)
        return Error::invalid("path is longer than " + std::to_string(kMaxPathLength) + " bytes");
    for (unsigned char c : path) {
        if (c == '\0') return Error::invalid("path " + quote(path) + " contains a NUL byte");
        if (is_control(c))
            return Error::invalid("path " + quote(path) + " contains a control character");
    }
    if (!is_valid_utf8(path)) return Error::invalid("path " + quote(path) + " is not valid UTF-8");
    return {};
}

Status check_component_lengths(const std::vector<std::string_view>& parts, std::string_view path) {
    for (auto part : parts) {
        if (part.size() > kMaxComponentLength)
            return Error::invalid("path " + quote(path) + " has a component longer than " +
                                  std::to_string(kMaxComponentLength) + " bytes");
    }
    return {};
}

char flag_letter(UnionMode mode) {
    return mode == UnionMode::kBefore ? 'b' : 'a';
}

bool needs_quotes(std::string_view token) {
    if (token.empty() || token.front() == '#') return true;
    for (char c : token) {
        if (c == ' ' || c == '\t' || c == '"' || c == '\\') return true;
    }
    return false;
}

void append_token(std::string& out, std::string_view token) {
    if (!needs_quotes(token)) {
        out += token;
        return;
    }
    out += '"';
    for (char c : token) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

}  // namespace

std::optional<EntryKind> kind_of_verb(std::string_view verb) {
    for (EntryKind kind : {EntryKind::kBind, EntryKind::kHide, EntryKind::kReadOnly,
                           EntryKind::kTmpfs, EntryKind::kDeny})
        if (to_string(kind) == verb) return kind;
    return std::nullopt;
}

std::string_view to_string(EntryKind kind) {
    switch (kind) {
        case EntryKind::kBind:
            return "bind";
        case EntryKind::kHide:
            return "hide";
        case EntryKind::kReadOnly:
            return "ro";
        case EntryKind::kTmpfs:
            return "tmpfs";
        case EntryKind::kDeny:
            return "deny";
    }
    return "?";
}

Status validate_name(std::string_view name) {
    if (name.empty()) return Error::invalid("namespace name is empty");
    if (name.size() > kMaxNameLength)
        return Error::invalid("namespace name " + quote(name) + " is longer than " +
                              std::to_string(kMaxNameLength) + " characters");
    auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!lower_or_digit(name.front()))
        return Error::invalid("namespace name " + quote(name) +
                              " must start with a lower-case letter or a digit");
    for (char c : name) {
        if (!lower_or_digit(c) && c != '.' && c != '_' && c != '-')
            return Error::invalid("namespace name " + quote(name) +
                                  " may hold only a-z, 0-9, '.', '_' and '-'");
    }
    return {};
}

Status validate_path(std::string_view path) {
    if (auto st = check_path_bytes(path); !st) return st;
    if (path.front() != '/') return Error::invalid("path " + quote(path) + " is not absolute");
    if (path == "/") return {};
    auto parts = split_components(path);
    for (auto part : parts) {
        if (part.empty())
            return Error::invalid("path " + quote(path) + " is not normalized (empty component)");
        if (part == "." || part == "..")
            return Error::invalid("path " + quote(path) + " is not normalized ('" +
                                  std::string(part) + "' component)");
    }
    return check_component_lengths(parts, path);
}

Result<std::string> normalize_path(std::string_view path) {
    if (auto st = check_path_bytes(path); !st) return Error(st.error());
    if (path.front() != '/') return Error::invalid("path " + quote(path) + " is not absolute");
    std::vector<std::string_view> kept;
    for (auto part : split_components(path)) {
        if (part.empty() || part == ".") continue;
        if (part == "..")
            return Error::invalid("path " + quote(path) + " contains '..', which is not allowed");
        kept.push_back(part);
    }
    if (auto st = check_component_lengths(kept, path); !st) return Error(st.error());
    return join_components(kept);
}

Result<std::string> absolutize_path(std::string_view path, std::string_view cwd) {
    // The limits apply to the path as the user wrote it and to the result, as the kernel applies
    // them to the string it is given: "../x" from a working directory near PATH_MAX is fine.
    if (auto st = check_path_bytes(path); !st) return Error(st.error());
    std::string combined;
    if (path.front() != '/') {
        if (cwd.empty() || cwd.front() != '/')
            return Error::invalid("working directory " + quote(cwd) + " is not absolute");
        if (auto st = check_path_bytes(cwd); !st) return Error(st.error());
        combined.assign(cwd);
        combined += '/';
    }
    combined += path;
    auto parts = split_components(combined);
    // Before folding: the kernel refuses "NAME_MAX+1 bytes/.." too.
    if (auto st = check_component_lengths(parts, combined); !st) return Error(st.error());
    std::vector<std::string_view> kept;
    for (auto part : parts) {
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            if (!kept.empty()) kept.pop_back();
            continue;
        }
        kept.push_back(part);
    }
    std::string result = join_components(kept);
    if (result.size() > kMaxPathLength)
        return Error::invalid("path " + quote(combined) + " is longer than " +
                              std::to_string(kMaxPathLength) + " bytes");
    return result;
}

Status validate_entry(const Entry& entry) {
    if (auto st = validate_path(entry.target); !st) return st;
    if (entry.kind == EntryKind::kBind) {
        if (entry.source.empty()) return Error::invalid("bind needs a source path");
        if (auto st = validate_path(entry.source); !st) return st;
        if (entry.create && entry.mode == UnionMode::kReplace)
            return Error::invalid("-c (create in source) needs -a or -b (a union)");
        return {};
    }
    std::string verb(to_string(entry.kind));
    if (!entry.source.empty()) return Error::invalid(verb + " takes no source path");
    if (entry.mode != UnionMode::kReplace || entry.create)
        return Error::invalid(verb + " takes no -a, -b or -c");
    if (entry.target == "/" && entry.kind != EntryKind::kReadOnly)
        return Error::invalid(verb + " of '/' would leave the view without a root file system");
    return {};
}

Status validate_table(const Table& table) {
    if (table.entries.size() > kMaxEntries)
        return Error::invalid("table has " + std::to_string(table.entries.size()) +
                              " entries; at most " + std::to_string(kMaxEntries) + " are allowed");
    std::unordered_map<std::string, std::size_t> seen;
    seen.reserve(table.entries.size());
    std::size_t text_bytes = 0;
    for (std::size_t i = 0; i < table.entries.size(); ++i) {
        const Entry& entry = table.entries[i];
        if (auto st = validate_entry(entry); !st)
            return Error::invalid("entry " + std::to_string(i + 1) + ": " + st.error().message);
        auto [it, inserted] = seen.emplace(format_entry(entry), i);
        if (!inserted)
            return Error::invalid("entry " + std::to_string(i + 1) + " repeats entry " +
                                  std::to_string(it->second + 1) + " (" + it->first + ")");
        // The text limit holds for a table however it was built (entry by entry too), as its
        // export must fit what apply accepts.
        text_bytes += it->first.size() + 1;
        if (text_bytes > kMaxTableTextBytes)
            return Error{EDQUOT, "table text would be larger than " +
                                     std::to_string(kMaxTableTextBytes >> 20) + " MiB (at entry " +
                                     std::to_string(i + 1) + ")"};
    }
    return {};
}

std::string format_entry(const Entry& entry) {
    std::string out(to_string(entry.kind));
    if (entry.kind == EntryKind::kBind) {
        if (entry.mode != UnionMode::kReplace) {
            out += " -";
            out += flag_letter(entry.mode);
            if (entry.create) out += 'c';
        }
        out += ' ';
        append_token(out, entry.source);
    }
    out += ' ';
    append_token(out, entry.target);
    return out;
}

std::string format_table(const Table& table) {
    std::string out;
    for (const auto& entry : table.entries) {
        out += format_entry(entry);
        out += '\n';
    }
    return out;
}

namespace {

struct Token {
    std::string text;
    std::size_t column;      // 1-based byte column of its first character
    std::size_t end_column;  // 1-based byte column just past it as written (quotes included)
};

class TableParser {
  public:
    explicit TableParser(std::string_view text) : text_(text) {}

    Result<Table> run() {
        if (text_.size() > kMaxTableTextBytes)
            return fail(
                1, 1,
                "table text is larger than " + std::to_string(kMaxTableTextBytes >> 20) + " MiB");
        Table table;
        std::unordered_map<std::string, std::size_t> seen;  // formatted entry -> its line
        std::size_t line_no = 0;
        std::size_t pos = 0;
        while (pos < text_.size()) {
            std::size_t end = text_.find('\n', pos);
            if (end == std::string_view::npos) end = text_.size();
            std::string_view line = text_.substr(pos, end - pos);
            pos = end + 1;
            ++line_no;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

            std::vector<Token> tokens;
            if (auto st = tokenize(line, line_no, tokens); !st) return Error(st.error());
            if (tokens.empty()) continue;

            auto entry = parse_entry(tokens, line_no);
            if (!entry) return Error(std::move(entry).error());
            if (table.entries.size() == kMaxEntries)
                return fail(
                    line_no, tokens[0].column,
                    "too many entries; at most " + std::to_string(kMaxEntries) + " are allowed");
            auto [it, inserted] = seen.emplace(format_entry(*entry), line_no);
            if (!inserted)
                return fail(line_no, tokens[0].column,
                            "entry repeats line " + std::to_string(it->second) + ": " + it->first);
            table.entries.push_back(std::move(*entry));
        }
        return table;
    }

  private:
    static Error fail(std::size_t line, std::size_t column, std::string_view message) {
        return Error::invalid("line " + std::to_string(line) + ", column " +
                              std::to_string(column) + ": " + std::string(message));
    }

    static Status tokenize(std::string_view line, std::size_t line_no, std::vector<Token>& out) {
        std::size_t i = 0;
        while (i < line.size()) {
            char c = line[i];
            if (c == ' ' || c == '\t') {
                ++i;
                continue;
            }
            if (c == '#') break;  // a comment runs to the end of the line
            Token token{{}, i + 1, 0};
            if (c == '"') {
                std::size_t j = i + 1;
                bool closed = false;
                while (j < line.size()) {
                    char d = line[j];
                    if (d == '"') {
                        closed = true;
                        break;
                    }
                    if (d == '\\') {
                        if (j + 1 >= line.size()) break;
                        char e = line[j + 1];
                        if (e != '"' && e != '\\')
                            return fail(line_no, j + 1,
                                        "unknown escape " + quote(line.substr(j, 2)) +
                                            " (only \\\" and \\\\ are known)");
                        token.text += e;
                        j += 2;
                        continue;
                    }
                    token.text += d;
                    ++j;
                }
                if (!closed) return fail(line_no, i + 1, "unterminated quoted path");
                i = j + 1;
                if (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '#')
                    return fail(line_no, i + 1, "expected a space after the closing quote");
            } else {
                std::size_t j = i;
                while (j < line.size() && line[j] != ' ' && line[j] != '\t') {
                    if (line[j] == '"' || line[j] == '\\')
                        return fail(line_no, j + 1,
                                    std::string("a ") + (line[j] == '"' ? "quote" : "backslash") +
                                        " inside a word; put the whole path in double quotes");
                    ++j;
                }
                token.text.assign(line.substr(i, j - i));
                i = j;
            }
            token.end_column = i + 1;
            out.push_back(std::move(token));
        }
        return {};
    }

    static Result<std::string> parse_path(const Token& token, std::size_t line_no,
                                          std::string_view role) {
        if (token.text.empty() || token.text.front() != '/')
            return fail(line_no, token.column,
                        std::string(role) + " " + quote(token.text) + " is not an absolute path");
        auto path = normalize_path(token.text);
        if (!path) return fail(line_no, token.column, path.error().message);
        return path;
    }

    static Result<Entry> parse_entry(const std::vector<Token>& tokens, std::size_t line_no) {
        const Token& verb = tokens[0];
        Entry entry;
        auto kind = kind_of_verb(verb.text);
        if (!kind)
            return fail(
                line_no, verb.column,
                "unknown verb " + quote(verb.text) + " (expected " + std::string(kVerbs) + ")");
        entry.kind = *kind;

        std::size_t next = 1;
        std::size_t create_column = 0;  // of the first -c, to point at it if it is refused
        if (entry.kind == EntryKind::kBind) {
            for (; next < tokens.size() && tokens[next].text.starts_with('-'); ++next) {
                const Token& flags = tokens[next];
                if (flags.text.size() == 1)
                    return fail(line_no, flags.column, "'-' without a flag letter");
                for (std::size_t k = 1; k < flags.text.size(); ++k) {
                    char f = flags.text[k];
                    std::size_t column = flags.column + k;
                    if (f == 'a' || f == 'b') {
                        UnionMode mode = f == 'a' ? UnionMode::kAfter : UnionMode::kBefore;
                        if (entry.mode != UnionMode::kReplace && entry.mode != mode)
                            return fail(line_no, column, "-a and -b exclude each other");
                        entry.mode = mode;
                    } else if (f == 'c') {
                        if (!entry.create) create_column = column;
                        entry.create = true;
                    } else {
                        return fail(line_no, column,
                                    "unknown flag " + quote(std::string("-") + f) +
                                        " (bind takes -a, -b and -c)");
                    }
                }
            }
        }

        std::size_t wanted = entry.kind == EntryKind::kBind ? 2 : 1;
        std::size_t have = tokens.size() - next;
        std::string usage = entry.kind == EntryKind::kBind
                                ? "bind [-a|-b] [-c] SRC DST"
                                : std::string(to_string(entry.kind)) + " DST";
        if (have < wanted) {
            return fail(line_no, tokens.back().end_column, "missing path; usage: " + usage);
        }
        if (have > wanted)
            return fail(line_no, tokens[next + wanted].column,
                        "unexpected " + quote(tokens[next + wanted].text) + "; usage: " + usage);

        if (entry.kind == EntryKind::kBind) {
            auto source = parse_path(tokens[next], line_no, "SRC");
            if (!source) return Error(std::move(source).error());
            entry.source = std::move(*source);
            ++next;
        }
        const Token& dst = tokens[next];
        auto target = parse_path(dst, line_no, "DST");
        if (!target) return Error(std::move(target).error());
        entry.target = std::move(*target);

        // Paths passed already, so what is left is a flag or a target this verb refuses.
        if (auto st = validate_entry(entry); !st) {
            std::size_t column = verb.column;
            if (entry.create && entry.mode == UnionMode::kReplace)
                column = create_column;
            else if (entry.target == "/")
                column = dst.column;
            return fail(line_no, column, st.error().message);
        }
        return entry;
    }

    std::string_view text_;
};

}  // namespace

Result<Table> parse_table(std::string_view text) {
    return TableParser(text).run();
}

}  // namespace pns
