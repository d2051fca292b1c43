// Namespace tables: text form, parser errors and validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/table.hpp"
#include "test_util.hpp"

namespace pns {
namespace {

using test::Contains;
using test::FailsWith;
using test::S;
using test::Succeeds;

Entry bind(std::string src, std::string dst, UnionMode mode = UnionMode::kReplace,
           bool create = false) {
    return Entry{EntryKind::kBind, mode, create, std::move(src), std::move(dst)};
}
Entry hide(std::string dst) {
    return Entry{EntryKind::kHide, {}, false, {}, std::move(dst)};
}
Entry ro(std::string dst) {
    return Entry{EntryKind::kReadOnly, {}, false, {}, std::move(dst)};
}
Entry tmpfs(std::string dst) {
    return Entry{EntryKind::kTmpfs, {}, false, {}, std::move(dst)};
}
Entry deny(std::string dst) {
    return Entry{EntryKind::kDeny, {}, false, {}, std::move(dst)};
}

// Succeeds when parsing `text` fails with EINVAL, at line `line` and column `column`, with a
// message holding `needle`.
::testing::AssertionResult ParseFails(std::string_view text, std::size_t line, std::size_t column,
                                      std::string_view needle) {
    auto r = parse_table(text);
    if (r.ok())
        return ::testing::AssertionFailure() << "parsed, with " << r->entries.size() << " entries";
    if (r.error().code != EINVAL)
        return ::testing::AssertionFailure()
               << "errno " << r.error().code << ": " << r.error().message;
    std::string where =
        "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
    if (!r.error().message.starts_with(where))
        return ::testing::AssertionFailure()
               << "'" << r.error().message << "' does not start with '" << where << "'";
    return Contains(r.error().message, needle);
}

// parse(format(t)) == t and format(parse(format(t))) == format(t).
::testing::AssertionResult RoundTrips(const Table& table) {
    if (auto st = validate_table(table); !st)
        return ::testing::AssertionFailure() << "invalid table: " << st.error().message;
    std::string text = format_table(table);
    auto parsed = parse_table(text);
    if (!parsed)
        return ::testing::AssertionFailure()
               << "'" << text << "' does not parse: " << parsed.error().message;
    if (!(*parsed == table))
        return ::testing::AssertionFailure() << "'" << text << "' parses to another table:\n"
                                             << format_table(*parsed);
    if (format_table(*parsed) != text)
        return ::testing::AssertionFailure()
               << "'" << text << "' formats back as '" << format_table(*parsed) << "'";
    return ::testing::AssertionSuccess();
}

// Every valid entry over a few paths: all verbs, all flag combinations.
std::vector<Entry> all_entries(const std::vector<std::string>& paths) {
    std::vector<Entry> out;
    for (const auto& dst : paths) {
        for (const auto& src : paths) {
            for (auto mode : {UnionMode::kReplace, UnionMode::kBefore, UnionMode::kAfter}) {
                for (bool create : {false, true}) {
                    Entry e = bind(src, dst, mode, create);
                    if (validate_entry(e)) out.push_back(e);
                }
            }
        }
        for (const Entry& e : {hide(dst), ro(dst), tmpfs(dst), deny(dst)}) {
            if (validate_entry(e)) out.push_back(e);
        }
    }
    return out;
}

// ---------------------------------------------------------------- format

TEST(Table, RoundTrip) {
    auto t = parse_table("bind -bc /usr/bin \"/opt/my bin\"\nhide /dev\n");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(format_table(*t), "bind -bc /usr/bin \"/opt/my bin\"\nhide /dev\n");
}

TEST(Format, EveryVerbAndFlag) {
    EXPECT_EQ(format_entry(bind("/a", "/b")), "bind /a /b");
    EXPECT_EQ(format_entry(bind("/a", "/b", UnionMode::kBefore)), "bind -b /a /b");
    EXPECT_EQ(format_entry(bind("/a", "/b", UnionMode::kAfter)), "bind -a /a /b");
    EXPECT_EQ(format_entry(bind("/a", "/b", UnionMode::kBefore, true)), "bind -bc /a /b");
    EXPECT_EQ(format_entry(bind("/a", "/b", UnionMode::kAfter, true)), "bind -ac /a /b");
    EXPECT_EQ(format_entry(hide("/d")), "hide /d");
    EXPECT_EQ(format_entry(ro("/d")), "ro /d");
    EXPECT_EQ(format_entry(ro("/")), "ro /");
    EXPECT_EQ(format_entry(tmpfs("/tmp")), "tmpfs /tmp");
    EXPECT_EQ(format_entry(deny("/etc/shadow")), "deny /etc/shadow");
    EXPECT_EQ(format_table(Table{}), "");
    EXPECT_EQ(format_table(Table{{hide("/a"), ro("/b")}}), "hide /a\nro /b\n");
}

TEST(Format, QuotesOnlyWhatNeedsIt) {
    EXPECT_EQ(format_entry(hide("/a b")), "hide \"/a b\"");
    EXPECT_EQ(format_entry(hide("/a\"b")), "hide \"/a\\\"b\"");
    EXPECT_EQ(format_entry(hide("/a\\b")), "hide \"/a\\\\b\"");
    EXPECT_EQ(format_entry(hide("/\"\\\" \\")), "hide \"/\\\"\\\\\\\" \\\\\"");
    EXPECT_EQ(format_entry(hide("/a#b")), "hide /a#b");
    EXPECT_EQ(format_entry(hide("/#")), "hide /#");
    EXPECT_EQ(format_entry(hide("/caf\xc3\xa9")), "hide /caf\xc3\xa9");
    EXPECT_EQ(format_entry(bind("/s p", "/d")), "bind \"/s p\" /d");
}

// ---------------------------------------------------------------- round trips

TEST(RoundTrip, EveryVerbAndFlagCombination) {
    std::vector<std::string> paths = {
        "/",         "/a",     "/a/b", "/with space", "/q\"uote", "/back\\slash",
        "/hash#tag", "/#lead", "/\"",  "/\\",         "/ ",       "/caf\xc3\xa9/\xf0\x9f\x98\x80",
        "/-a",       "/-c"};
    Table table{all_entries(paths)};
    // 14 targets x 14 sources x 5 bind forms + 14 x (hide, ro, tmpfs, deny) less hide /,
    // tmpfs / and deny /.
    ASSERT_EQ(table.entries.size(), 14u * 14 * 5 + 14 * 4 - 3);
    EXPECT_TRUE(RoundTrips(table));
    // One entry at a time too, so a failure names the entry.
    for (const auto& entry : table.entries) EXPECT_TRUE(RoundTrips(Table{{entry}})) << entry;
}

TEST(RoundTrip, EmptyTable) {
    EXPECT_TRUE(RoundTrips(Table{}));
    auto t = parse_table("");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_TRUE(t->entries.empty());
}

TEST(RoundTrip, LongestPaths) {
    std::string longest;
    while (longest.size() < kMaxPathLength) {
        longest += '/';
        longest += std::string(
            std::min<std::size_t>(kMaxComponentLength, kMaxPathLength - longest.size()), ' ');
    }
    ASSERT_EQ(longest.size(), kMaxPathLength);
    EXPECT_TRUE(
        RoundTrips(Table{{bind(longest, longest, UnionMode::kAfter, true), hide(longest)}}));
}

TEST(RoundTrip, TenThousandEntries) {
    Table table;
    for (int i = 0; i < 10000; ++i) {
        std::string n = std::to_string(i);
        switch (i % 5) {
            case 0:
                table.entries.push_back(bind("/src/" + n, "/dst/" + n));
                break;
            case 1:
                table.entries.push_back(bind("/s " + n, "/d/" + n, UnionMode::kBefore, true));
                break;
            case 2:
                table.entries.push_back(hide("/h/\"" + n + "\""));
                break;
            case 3:
                table.entries.push_back(ro("/r/" + n));
                break;
            case 4:
                table.entries.push_back(tmpfs("/t\\" + n));
                break;
        }
    }
    EXPECT_TRUE(RoundTrips(table));
}

TEST(RoundTrip, MaxEntriesExactly) {
    std::string text;
    for (std::size_t i = 0; i < kMaxEntries; ++i) text += "hide /" + std::to_string(i) + "\n";
    auto t = parse_table(text);
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(t->entries.size(), kMaxEntries);
    EXPECT_TRUE(Succeeds(validate_table(*t)));
    EXPECT_EQ(format_table(*t), text);
}

// ---------------------------------------------------------------- parsing

TEST(Parse, CommentsBlankLinesWhitespaceAndCrlf) {
    std::string text =
        "# a private /dev\n"
        "\n"
        "   \n"
        "\t\n"
        "hide /dev   # everything goes\r\n"
        "\r\n"
        "  bind\t/dev/null   /dev/null\t\r\n"
        "\tbind  -a\t-c  /x \"/y z\"# comment right after a quote\n"
        "#hide /not-this\n"
        "  # indented comment\n"
        "ro /etc";  // no final newline
    auto t = parse_table(text);
    ASSERT_TRUE(Succeeds(t));
    Table want{{hide("/dev"), bind("/dev/null", "/dev/null"),
                bind("/x", "/y z", UnionMode::kAfter, true), ro("/etc")}};
    EXPECT_EQ(*t, want);
}

TEST(Parse, HashInsideAWordIsPartOfThePath) {
    auto t = parse_table("hide /a#b\nhide /c #d\nhide \"/#e\" # no\n");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(*t, (Table{{hide("/a#b"), hide("/c"), hide("/#e")}}));
}

TEST(Parse, QuotedPathsAndEscapes) {
    auto t = parse_table(R"(bind "/a b" "/c\"d"
hide "/e\\f"
ro "/plain"
tmpfs "/\\\"\\"
)");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(*t, (Table{{bind("/a b", "/c\"d"), hide("/e\\f"), ro("/plain"), tmpfs("/\\\"\\")}}));
}

TEST(Parse, FlagSpellings) {
    struct Case {
        std::string flags;
        UnionMode mode;
        bool create;
    };
    for (const auto& c : std::initializer_list<Case>{
             {"-a", UnionMode::kAfter, false},
             {"-b", UnionMode::kBefore, false},
             {"-ac", UnionMode::kAfter, true},
             {"-ca", UnionMode::kAfter, true},
             {"-bc", UnionMode::kBefore, true},
             {"-cb", UnionMode::kBefore, true},
             {"-a -c", UnionMode::kAfter, true},
             {"-c -b", UnionMode::kBefore, true},
             {"-aa", UnionMode::kAfter, false},
             {"-b -b", UnionMode::kBefore, false},
             {"-bcbc", UnionMode::kBefore, true},
         }) {
        auto t = parse_table("bind " + c.flags + " /s /d\n");
        ASSERT_TRUE(Succeeds(t)) << c.flags;
        ASSERT_EQ(t->entries.size(), 1u);
        EXPECT_EQ(t->entries[0], bind("/s", "/d", c.mode, c.create)) << c.flags;
    }
}

TEST(Parse, NormalizesPaths) {
    auto t = parse_table("bind //a//b/ /c/./d/.\nhide /e/\nro //\n");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(*t, (Table{{bind("/a/b", "/c/d"), hide("/e"), ro("/")}}));
    EXPECT_EQ(format_table(*t), "bind /a/b /c/d\nhide /e\nro /\n");
}

TEST(Parse, ResultPassesValidateTable) {
    auto t = parse_table("bind -a / /\nbind -b / /\nbind / /\nro /\nhide /x\ntmpfs /y\n");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_TRUE(Succeeds(validate_table(*t)));
    for (const auto& e : t->entries) EXPECT_TRUE(Succeeds(validate_entry(e))) << e;
}

// ---------------------------------------------------------------- parse errors: where

TEST(ParseError, UnknownVerb) {
    EXPECT_TRUE(ParseFails("mount /a /b\n", 1, 1, "unknown verb 'mount'"));
    EXPECT_TRUE(ParseFails("hide /a\n  \tunmount /a\n", 2, 4, "unknown verb 'unmount'"));
    EXPECT_TRUE(ParseFails("HIDE /a\n", 1, 1, "unknown verb"));
    EXPECT_TRUE(ParseFails("bind-a /a /b\n", 1, 1, "unknown verb"));
    EXPECT_TRUE(ParseFails("/a\n", 1, 1, "unknown verb"));
}

TEST(ParseError, UnknownFlag) {
    EXPECT_TRUE(ParseFails("bind -x /a /b\n", 1, 7, "unknown flag '-x'"));
    EXPECT_TRUE(ParseFails("bind -ax /a /b\n", 1, 8, "unknown flag '-x'"));
    EXPECT_TRUE(ParseFails("bind -a -cR /a /b\n", 1, 11, "unknown flag '-R'"));
    EXPECT_TRUE(ParseFails("bind --a /a /b\n", 1, 7, "unknown flag '--'"));
    EXPECT_TRUE(ParseFails("bind - /a /b\n", 1, 6, "'-' without a flag letter"));
}

TEST(ParseError, AfterAndBeforeExcludeEachOther) {
    EXPECT_TRUE(ParseFails("bind -a -b /a /b\n", 1, 10, "-a and -b exclude each other"));
    EXPECT_TRUE(ParseFails("bind -b -a /a /b\n", 1, 10, "-a and -b exclude each other"));
    EXPECT_TRUE(ParseFails("bind -ab /a /b\n", 1, 8, "exclude"));
    EXPECT_TRUE(ParseFails("bind -bca /a /b\n", 1, 9, "exclude"));
    EXPECT_TRUE(ParseFails("\n\n  bind  -ac  -b /a /b\n", 3, 15, "exclude"));
}

TEST(ParseError, CreateWithoutUnion) {
    EXPECT_TRUE(ParseFails("bind -c /a /b\n", 1, 7, "-c"));
    EXPECT_TRUE(ParseFails("hide /x\n  bind   -cc /a /b\n", 2, 11, "needs -a or -b"));
}

TEST(ParseError, FlagsOnOtherVerbs) {
    EXPECT_TRUE(ParseFails("hide -a /x\n", 1, 9, "unexpected '/x'"));
    EXPECT_TRUE(ParseFails("ro -a\n", 1, 4, "not an absolute path"));
}

TEST(ParseError, MissingPaths) {
    EXPECT_TRUE(ParseFails("bind\n", 1, 5, "missing path; usage: bind [-a|-b] [-c] SRC DST"));
    EXPECT_TRUE(ParseFails("bind /a\n", 1, 8, "missing path"));
    EXPECT_TRUE(ParseFails("bind -a /a\n", 1, 11, "missing path"));
    EXPECT_TRUE(ParseFails("bind -a\n", 1, 8, "missing path"));
    EXPECT_TRUE(ParseFails("bind /a   # the target is missing\n", 1, 8, "missing path"));
    EXPECT_TRUE(ParseFails("hide\n", 1, 5, "missing path; usage: hide DST"));
    EXPECT_TRUE(ParseFails("ro\n", 1, 3, "usage: ro DST"));
    EXPECT_TRUE(ParseFails("tmpfs\r\n", 1, 6, "usage: tmpfs DST"));
    EXPECT_TRUE(ParseFails("deny\n", 1, 5, "usage: deny DST"));
    EXPECT_TRUE(ParseFails("\thide\t# nothing\n", 1, 6, "missing path"));
    // The column is just past the token as written, quotes and escapes included.
    EXPECT_TRUE(ParseFails("bind \"/a b\"\n", 1, 12, "missing path"));
    EXPECT_TRUE(ParseFails("bind \"/a\\\\b\\\"\"\n", 1, 15, "missing path"));
}

TEST(ParseError, ExtraPaths) {
    EXPECT_TRUE(ParseFails("hide /a /b\n", 1, 9, "unexpected '/b'; usage: hide DST"));
    EXPECT_TRUE(ParseFails("ro /a \"/b c\" /d\n", 1, 7, "unexpected '/b c'"));
    EXPECT_TRUE(ParseFails("bind /a /b /c\n", 1, 12, "unexpected '/c'"));
    EXPECT_TRUE(ParseFails("bind /a /b -a\n", 1, 12, "unexpected '-a'"));
    EXPECT_TRUE(ParseFails("\thide\t/a\t/b\n", 1, 10, "unexpected"));
}

TEST(ParseError, RelativePaths) {
    EXPECT_TRUE(ParseFails("bind a /b\n", 1, 6, "SRC 'a' is not an absolute path"));
    EXPECT_TRUE(ParseFails("bind /a b\n", 1, 9, "DST 'b' is not an absolute path"));
    EXPECT_TRUE(ParseFails("hide ./x\n", 1, 6, "not an absolute path"));
    EXPECT_TRUE(ParseFails("hide ~/x\n", 1, 6, "not an absolute path"));
    EXPECT_TRUE(ParseFails("hide \"\"\n", 1, 6, "DST '' is not an absolute path"));
    EXPECT_TRUE(ParseFails("hide \" /x\"\n", 1, 6, "not an absolute path"));
}

TEST(ParseError, DotDot) {
    EXPECT_TRUE(ParseFails("hide /a/../b\n", 1, 6, "'..'"));
    EXPECT_TRUE(ParseFails("bind /.. /b\n", 1, 6, "'..'"));
    EXPECT_TRUE(ParseFails("bind /a \"/b/..\"\n", 1, 9, "'..'"));
}

TEST(ParseError, BadPathBytes) {
    EXPECT_TRUE(ParseFails("hide /a\x01\n", 1, 6, "control character"));
    EXPECT_TRUE(ParseFails("hide /a\rb\n", 1, 6, "control character"));
    EXPECT_TRUE(ParseFails("hide /a\n\nbind /x \"/a\x1b\"\n", 3, 9, "control character"));
    EXPECT_TRUE(ParseFails("hide /\xff\n", 1, 6, "UTF-8"));
    EXPECT_TRUE(ParseFails("hide /\xed\xa0\x80\n", 1, 6, "UTF-8"));
    EXPECT_TRUE(ParseFails("hide /" + std::string(kMaxComponentLength + 1, 'x') + "\n", 1, 6,
                           "component longer"));
    EXPECT_TRUE(ParseFails("hide /" + std::string(kMaxPathLength, 'x') + "\n", 1, 6, "longer"));
    // Control characters between tokens are not white space.
    EXPECT_TRUE(ParseFails("hide\v/a\n", 1, 1, "unknown verb"));
}

TEST(ParseError, NulBytes) {
    EXPECT_TRUE(ParseFails(S("hide /a\0b\n"), 1, 6, "NUL"));
    EXPECT_TRUE(ParseFails(S("hide /x\nbind /a \"/b\0\"\n"), 2, 9, "NUL"));
    EXPECT_TRUE(ParseFails(S("hi\0de /a\n"), 1, 1, "unknown verb"));
    EXPECT_TRUE(ParseFails(S("\0\n"), 1, 1, "unknown verb"));
    // A NUL inside a comment is part of the comment.
    auto t = parse_table(S("hide /a # \0\n"));
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(*t, Table{{hide("/a")}});
}

TEST(ParseError, Quotes) {
    EXPECT_TRUE(ParseFails("hide \"/a\n", 1, 6, "unterminated quoted path"));
    EXPECT_TRUE(ParseFails("hide /x\nbind  \"/a b /c\n", 2, 7, "unterminated"));
    EXPECT_TRUE(ParseFails("hide \"/a\\\"\n", 1, 6, "unterminated"));  // \" does not close
    EXPECT_TRUE(ParseFails("hide \"/a\\\n", 1, 6, "unterminated"));    // \ at the end
    EXPECT_TRUE(ParseFails("hide \"/a\r\n", 1, 6, "unterminated"));    // CR is stripped first
    EXPECT_TRUE(ParseFails("hide \"\n", 1, 6, "unterminated"));
    EXPECT_TRUE(ParseFails("hide \"/a\\nb\"\n", 1, 9, "unknown escape '\\\\n'"));
    EXPECT_TRUE(ParseFails("hide \"/a\\tb\"\n", 1, 9, "unknown escape"));
    EXPECT_TRUE(ParseFails("hide \"/a\\ b\"\n", 1, 9, "unknown escape"));
    EXPECT_TRUE(ParseFails("hide \"/a\\'b\"\n", 1, 9, "unknown escape"));
    EXPECT_TRUE(ParseFails("hide /a\"b\"\n", 1, 8, "a quote inside a word"));
    EXPECT_TRUE(ParseFails("hide /a\"\n", 1, 8, "a quote inside a word"));
    EXPECT_TRUE(ParseFails("hide /a\\b\n", 1, 8, "a backslash inside a word"));
    EXPECT_TRUE(ParseFails("bind /a/\\\" /b\n", 1, 9, "backslash inside a word"));
    EXPECT_TRUE(ParseFails("hide \"/a\"b\n", 1, 10, "expected a space after the closing quote"));
    EXPECT_TRUE(ParseFails("hide \"/a\"\"/b\"\n", 1, 10, "expected a space"));
    EXPECT_TRUE(ParseFails("bi\"nd\" /a /b\n", 1, 3, "quote inside a word"));
}

TEST(ParseError, Duplicates) {
    EXPECT_TRUE(ParseFails("hide /a\nro /a\n\nhide /a\n", 4, 1, "entry repeats line 1: hide /a"));
    EXPECT_TRUE(ParseFails("hide /a/\n# c\nhide //a\n", 3, 1, "repeats line 1"));
    EXPECT_TRUE(ParseFails("bind -ac /s /d\nbind -ca /s /d/\n", 2, 1, "repeats line 1"));
    EXPECT_TRUE(ParseFails("bind /x \"/a b\"\nhide /q\n  bind /x \"/a b\"\n", 3, 3,
                           "repeats line 1: bind /x \"/a b\""));
    // Same paths, different meaning: not duplicates.
    auto t = parse_table(
        "bind /s /d\nbind -a /s /d\nbind -b /s /d\nbind -ac /s /d\n"
        "bind -bc /s /d\nbind /d /s\nhide /d\nro /d\ntmpfs /d\n");
    ASSERT_TRUE(Succeeds(t));
    EXPECT_EQ(t->entries.size(), 9u);
}

TEST(ParseError, HideOrTmpfsOfRoot) {
    EXPECT_TRUE(ParseFails("hide /\n", 1, 6, "would leave the view without a root"));
    EXPECT_TRUE(ParseFails("ro /a\n tmpfs  //\n", 2, 9, "tmpfs of '/'"));
    EXPECT_TRUE(ParseFails("hide /.\n", 1, 6, "hide of '/'"));
    EXPECT_TRUE(ParseFails("deny /\n", 1, 6, "deny of '/'"));
    EXPECT_TRUE(ParseFails("deny /a /b\n", 1, 9, "unexpected '/b'"));
    auto t = parse_table("ro /\nbind /new /\n");
    ASSERT_TRUE(Succeeds(t));
}

TEST(ParseError, TooManyEntries) {
    std::string text;
    for (std::size_t i = 0; i <= kMaxEntries; ++i) text += "ro /" + std::to_string(i) + "\n";
    EXPECT_TRUE(ParseFails(text, kMaxEntries + 1, 1, "too many entries; at most 65536"));
    // Comments and blank lines do not count.
    text = "# header\n\n";
    for (std::size_t i = 0; i <= kMaxEntries; ++i) text += "ro /" + std::to_string(i) + "\n";
    EXPECT_TRUE(ParseFails(text, kMaxEntries + 3, 1, "too many entries"));
}

TEST(ParseError, TextTooLarge) {
    std::string text(kMaxTableTextBytes, '#');
    auto t = parse_table(text);
    EXPECT_TRUE(Succeeds(t));  // one long comment, exactly at the limit
    text += '\n';
    EXPECT_TRUE(ParseFails(text, 1, 1, "larger than 8 MiB"));
}

TEST(ParseError, FirstErrorWins) {
    EXPECT_TRUE(ParseFails("hide /ok\nbogus\nhide a\n", 2, 1, "unknown verb"));
    EXPECT_TRUE(ParseFails("hide /a\r\nbind /a\r\nro /b\r\n", 2, 8, "missing path"));
}

// ---------------------------------------------------------------- generated inputs

// Random valid tables round-trip.
TEST(Generated, RandomTablesRoundTrip) {
    std::mt19937 rng(20240601);
    const std::vector<std::string> pieces = {
        "a",  "b", " ", "\"", "\\", "#", ".", "..", "-", "/", "//", "\xc3\xa9", "\xf0\x9f\x98\x80",
        "x y"};
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    auto random_path = [&] {
        std::string p = "/";
        for (std::size_t k = pick(6); k > 0; --k) p += pieces[pick(pieces.size())];
        return p;
    };
    int tables = 0;
    for (int round = 0; round < 3000; ++round) {
        Table t;
        for (std::size_t k = pick(12); k > 0; --k) {
            auto dst = normalize_path(random_path());
            auto src = normalize_path(random_path());
            if (!dst || !src) continue;
            Entry e;
            e.kind = static_cast<EntryKind>(pick(5));
            if (e.kind == EntryKind::kBind) {
                e.mode = static_cast<UnionMode>(pick(3));
                e.create = e.mode != UnionMode::kReplace && pick(2) == 1;
                e.source = *src;
            }
            e.target = *dst;
            if (!validate_entry(e)) continue;
            t.entries.push_back(e);
            if (!validate_table(t)) t.entries.pop_back();  // a duplicate
        }
        ASSERT_TRUE(RoundTrips(t)) << "round " << round;
        ++tables;
    }
    EXPECT_EQ(tables, 3000);
}

// Random text: either a table that round-trips, or an error that points inside the text.
TEST(Generated, RandomTextParsesOrPointsAtTheError) {
    std::mt19937 rng(7);
    const std::vector<std::string> words = {
        "bind", "hide",     "ro",          "tmpfs",      "mount", "-a",        "-b",      "-c",
        "-ac",  "-x",       "-",           "/a",         "/b/c",  "//d/",      "/e/.",    "/..",
        "a",    "\"/q r\"", "\"/s\\\"t\"", "\"/u\\\\\"", "\"/v",  "\"/w\\n\"", "/x\"y",   "/z\\",
        "#",    "# c",      "\"\"",        "/",          "/\xff", "/\x01",     "\xc3\xa9"};
    const std::vector<std::string> spaces = {" ", "  ", "\t", " \t "};
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    int parsed = 0, failed = 0;
    for (int round = 0; round < 20000; ++round) {
        std::vector<std::string> lines;
        for (std::size_t l = pick(5) + 1; l > 0; --l) {
            std::string line = pick(4) == 0 ? spaces[pick(spaces.size())] : "";
            for (std::size_t w = pick(5); w > 0; --w) {
                if (!line.empty() && line.back() != ' ' && line.back() != '\t')
                    line += spaces[pick(spaces.size())];
                line += words[pick(words.size())];
            }
            lines.push_back(line);
        }
        std::string text;
        for (const auto& line : lines) text += line + (pick(3) == 0 ? "\r\n" : "\n");
        auto r = parse_table(text);
        if (r) {
            ++parsed;
            ASSERT_TRUE(RoundTrips(*r)) << text;
            continue;
        }
        ++failed;
        unsigned long line_no = 0, column = 0;
        ASSERT_EQ(
            std::sscanf(r.error().message.c_str(), "line %lu, column %lu: ", &line_no, &column), 2)
            << r.error().message;
        ASSERT_GE(line_no, 1u) << text;
        ASSERT_LE(line_no, lines.size()) << text;
        ASSERT_GE(column, 1u) << r.error().message << "\n" << text;
        ASSERT_LE(column, lines[line_no - 1].size() + 1) << r.error().message << "\n" << text;
        // Every line before the failing one parses on its own.
        std::string before;
        for (std::size_t i = 0; i + 1 < line_no; ++i) before += lines[i] + "\n";
        EXPECT_TRUE(Succeeds(parse_table(before))) << text;
    }
    EXPECT_GT(parsed, 100);
    EXPECT_GT(failed, 100);
}

// ---------------------------------------------------------------- validate_entry / _table

TEST(ValidateEntry, AcceptsEveryValidForm) {
    for (const auto& e : all_entries({"/", "/a", "/b c"})) {
        EXPECT_TRUE(Succeeds(validate_entry(e))) << e;
    }
    EXPECT_TRUE(Succeeds(validate_entry(ro("/"))));
    EXPECT_TRUE(Succeeds(validate_entry(bind("/", "/"))));
}

TEST(ValidateEntry, Rejections) {
    EXPECT_TRUE(FailsWith(validate_entry(bind("", "/d")), EINVAL, "needs a source"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("s", "/d")), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("/s/", "/d")), EINVAL, "not normalized"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("/s", "/d/..")), EINVAL, "not normalized"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("/s", "")), EINVAL, "empty"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("/s", "/d", UnionMode::kReplace, true)), EINVAL,
                          "needs -a or -b"));
    for (Entry e : {hide("/d"), ro("/d"), tmpfs("/d")}) {
        std::string verb(to_string(e.kind));
        Entry with_source = e;
        with_source.source = "/s";
        EXPECT_TRUE(FailsWith(validate_entry(with_source), EINVAL, verb + " takes no source"));
        Entry with_union = e;
        with_union.mode = UnionMode::kAfter;
        EXPECT_TRUE(FailsWith(validate_entry(with_union), EINVAL, "takes no -a, -b or -c"));
        Entry with_create = e;
        with_create.create = true;
        EXPECT_TRUE(FailsWith(validate_entry(with_create), EINVAL, "takes no -a, -b or -c"));
        Entry bad_target = e;
        bad_target.target = "/d//e";
        EXPECT_TRUE(FailsWith(validate_entry(bad_target), EINVAL, "not normalized"));
        Entry no_target = e;
        no_target.target.clear();
        EXPECT_TRUE(FailsWith(validate_entry(no_target), EINVAL, "empty"));
    }
    EXPECT_TRUE(FailsWith(validate_entry(hide("/")), EINVAL, "hide of '/'"));
    EXPECT_TRUE(FailsWith(validate_entry(tmpfs("/")), EINVAL, "tmpfs of '/'"));
    EXPECT_TRUE(FailsWith(validate_entry(hide(S("/a\0"))), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(validate_entry(bind("/\xc0\x80", "/d")), EINVAL, "UTF-8"));
}

TEST(ValidateTable, NamesTheEntry) {
    EXPECT_TRUE(Succeeds(validate_table(Table{})));
    Table t{{hide("/a"), ro("/b"), bind("s", "/c")}};
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 3: "));
    t = Table{{hide("/a"), ro("/b"), hide("/a")}};
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 3 repeats entry 1 (hide /a)"));
    t = Table{{bind("/s", "/d", UnionMode::kAfter, true), bind("/s", "/d", UnionMode::kAfter)}};
    EXPECT_TRUE(Succeeds(validate_table(t)));
    t.entries.push_back(bind("/s", "/d", UnionMode::kAfter, true));
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 3 repeats entry 1"));
    t = Table{{tmpfs("/x"), hide("/")}};
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 2: hide of '/'"));
    t = Table{{hide("/x"), bind("/s", "/d", UnionMode::kReplace, true)}};
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 2: -c"));
    t = Table{{hide("/x"), Entry{EntryKind::kHide, {}, false, "/s", "/d"}}};
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "entry 2: hide takes no source"));
}

TEST(ValidateTable, EntryLimit) {
    Table t;
    for (std::size_t i = 0; i < kMaxEntries; ++i)
        t.entries.push_back(hide("/" + std::to_string(i)));
    EXPECT_TRUE(Succeeds(validate_table(t)));
    t.entries.push_back(hide("/last"));
    EXPECT_TRUE(FailsWith(validate_table(t), EINVAL, "65537 entries; at most 65536"));
}

// However a table is built (entry by entry too), its text stays within what apply accepts.
TEST(ValidateTable, TextLimit) {
    const std::string long_dir = "/" + std::string(250, 'd') + "/" + std::string(250, 'e');
    Table t;
    std::size_t bytes = 0;
    for (std::size_t i = 0;; ++i) {
        Entry e = hide(long_dir + "/" + std::to_string(i));
        std::size_t line = format_entry(e).size() + 1;
        if (bytes + line > kMaxTableTextBytes) break;
        bytes += line;
        t.entries.push_back(e);
    }
    EXPECT_TRUE(Succeeds(validate_table(t)));
    EXPECT_EQ(format_table(t).size(), bytes);
    t.entries.push_back(hide(long_dir + "/last"));
    EXPECT_TRUE(FailsWith(validate_table(t), EDQUOT, "larger than 8 MiB"));
}

TEST(ToString, Verbs) {
    EXPECT_EQ(to_string(EntryKind::kBind), "bind");
    EXPECT_EQ(to_string(EntryKind::kHide), "hide");
    EXPECT_EQ(to_string(EntryKind::kReadOnly), "ro");
    EXPECT_EQ(to_string(EntryKind::kTmpfs), "tmpfs");
    EXPECT_EQ(to_string(EntryKind::kDeny), "deny");
    for (auto kind : {EntryKind::kBind, EntryKind::kHide, EntryKind::kReadOnly, EntryKind::kTmpfs,
                      EntryKind::kDeny})
        EXPECT_EQ(kind_of_verb(to_string(kind)), kind);
    EXPECT_FALSE(kind_of_verb("mount"));
}

}  // namespace
}  // namespace pns
