// Names, paths and the text helpers behind them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "common/table.hpp"
#include "common/text.hpp"
#include "test_util.hpp"

namespace pns {
namespace {

using test::Contains;
using test::FailsWith;
using test::S;
using test::Succeeds;

// ---------------------------------------------------------------- validate_name

TEST(ValidateName, AcceptsGoodNames) {
    for (std::string name : {"a", "0", "dev", "my-ns", "my_ns", "my.ns", "a1.b2-c3_d4", "9lives",
                             "x.", "x-", "x_", "a..b", "0-0"}) {
        EXPECT_TRUE(Succeeds(validate_name(name))) << name;
    }
    EXPECT_TRUE(Succeeds(validate_name(std::string(kMaxNameLength, 'a'))));
    EXPECT_TRUE(Succeeds(validate_name("1" + std::string(kMaxNameLength - 1, '-'))));
}

TEST(ValidateName, RejectsEmptyAndTooLong) {
    EXPECT_TRUE(FailsWith(validate_name(""), EINVAL, "empty"));
    EXPECT_TRUE(FailsWith(validate_name(std::string(kMaxNameLength + 1, 'a')), EINVAL, "longer"));
    EXPECT_TRUE(FailsWith(validate_name(std::string(65, 'a')), EINVAL));
}

TEST(ValidateName, RejectsBadFirstCharacter) {
    for (std::string name : {".", "..", ".hidden", "-x", "_x", "..x", "-", "_"}) {
        EXPECT_TRUE(FailsWith(validate_name(name), EINVAL, "must start")) << name;
    }
}

TEST(ValidateName, RejectsBadCharacters) {
    for (std::string name :
         {"Dev",       "dEv",  "DEV", "a/b",  "/",    "a b", " a",   "a ", "a\tb",
          "a:b",       "a@b",  "a+b", "a\\b", "a\"b", "a'b", "a\nb", "a*", "\xc3\xa9t\xc3\xa9",
          "a\xc3\xa9", "a\xff"}) {
        EXPECT_TRUE(FailsWith(validate_name(name), EINVAL)) << name;
    }
    EXPECT_TRUE(FailsWith(validate_name(S("a\0b")), EINVAL, "may hold only"));
    EXPECT_TRUE(FailsWith(validate_name(S("\0")), EINVAL));
    EXPECT_TRUE(FailsWith(validate_name(S("ab\0")), EINVAL));
    EXPECT_TRUE(FailsWith(validate_name("A"), EINVAL, "must start"));
    EXPECT_TRUE(FailsWith(validate_name("\xc3\xa9"), EINVAL, "must start"));
}

TEST(ValidateName, MessageQuotesTheNameSafely) {
    auto st = validate_name(S("a\nb\0c"));
    ASSERT_FALSE(st);
    EXPECT_TRUE(Contains(st.error().message, "'a\\x0ab\\x00c'"));
    EXPECT_EQ(st.error().message.find('\n'), std::string::npos);
}

// ---------------------------------------------------------------- validate_path

TEST(ValidatePath, AcceptsCanonicalPaths) {
    for (std::string path : {"/",
                             "/a",
                             "/a/b",
                             "/usr/local/bin",
                             "/a b/c d",
                             "/.hidden",
                             "/a/...",
                             "/a/..b",
                             "/a/b..",
                             "/a/.b",
                             "/#x",
                             "/a#b",
                             "/\"q\"",
                             "/back\\slash",
                             "/caf\xc3\xa9",
                             "/\xe2\x82\xac",
                             "/\xf0\x9f\x98\x80",
                             "/\xf4\x8f\xbf\xbf",
                             "/\xed\x9f\xbf",
                             "/\xee\x80\x80",
                             "/-",
                             "/~"}) {
        EXPECT_TRUE(Succeeds(validate_path(path))) << path;
    }
}

TEST(ValidatePath, RejectsRelativeAndEmpty) {
    EXPECT_TRUE(FailsWith(validate_path(""), EINVAL, "empty"));
    for (std::string path : {"a", "a/b", "./a", "../a", ".", "..", " /a", "~/a"}) {
        EXPECT_TRUE(FailsWith(validate_path(path), EINVAL, "not absolute")) << path;
    }
}

TEST(ValidatePath, RejectsNonNormalizedPaths) {
    for (std::string path : {"//", "//a", "/a//b", "/a/", "/a/b/", "/a///"}) {
        EXPECT_TRUE(FailsWith(validate_path(path), EINVAL, "empty component")) << path;
    }
    for (std::string path : {"/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a/./b", "/a/../b"}) {
        EXPECT_TRUE(FailsWith(validate_path(path), EINVAL, "not normalized")) << path;
    }
}

TEST(ValidatePath, RejectsNulAndControlCharacters) {
    EXPECT_TRUE(FailsWith(validate_path(S("/a\0b")), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(validate_path(S("/\0")), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(validate_path(S("\0/a")), EINVAL, "NUL"));
    for (std::string path : {"/a\nb", "/a\tb", "/a\rb", "/\x01", "/\x1f", "/a\x7f", "/\x1b[31m"}) {
        EXPECT_TRUE(FailsWith(validate_path(path), EINVAL, "control character")) << path;
    }
}

TEST(ValidatePath, RejectsInvalidUtf8) {
    for (std::string path : {
             "/\xc0\xaf",              // overlong '/'
             "/\xc1\xbf",              // overlong 2-byte
             "/\xe0\x80\xaf",          // overlong 3-byte
             "/\xf0\x80\x80\xaf",      // overlong 4-byte
             "/\xed\xa0\x80",          // high surrogate U+D800
             "/\xed\xbf\xbf",          // low surrogate U+DFFF
             "/\xf4\x90\x80\x80",      // U+110000
             "/\xf5\x80\x80\x80",      // lead byte past U+10FFFF
             "/\xe2\x82",              // truncated 3-byte
             "/\xe2\x82/a",            // truncated, followed by more
             "/\xc3",                  // truncated 2-byte at end
             "/\xf0\x9f\x98",          // truncated 4-byte
             "/\x80",                  // lone continuation byte
             "/\xbf",                  //
             "/\xfe",                  // never valid
             "/\xff",                  //
             "/\xf8\x88\x80\x80\x80",  // 5-byte form
         }) {
        EXPECT_TRUE(FailsWith(validate_path(path), EINVAL, "UTF-8")) << path;
    }
}

TEST(ValidatePath, EnforcesPathMaxAndNameMax) {
    std::string component(kMaxComponentLength, 'c');
    EXPECT_TRUE(Succeeds(validate_path("/" + component)));
    EXPECT_TRUE(Succeeds(validate_path("/a/" + component + "/b")));
    EXPECT_TRUE(FailsWith(validate_path("/" + component + "c"), EINVAL, "component longer"));
    EXPECT_TRUE(FailsWith(validate_path("/a/" + component + "c/b"), EINVAL, "component longer"));

    // Exactly PATH_MAX - 1 bytes, in components of legal length.
    std::string longest;
    while (longest.size() < kMaxPathLength) {
        longest += '/';
        longest += std::string(std::min<std::size_t>(200, kMaxPathLength - longest.size()), 'p');
    }
    ASSERT_EQ(longest.size(), kMaxPathLength);
    ASSERT_NE(longest.back(), '/');
    EXPECT_TRUE(Succeeds(validate_path(longest)));
    EXPECT_TRUE(FailsWith(validate_path(longest + "q"), EINVAL, "longer than 4095"));
    EXPECT_TRUE(FailsWith(validate_path(std::string(1 << 20, '/')), EINVAL, "longer"));
}

// ---------------------------------------------------------------- normalize_path

TEST(NormalizePath, CollapsesSlashesAndDots) {
    struct Case {
        std::string in, out;
    };
    for (const auto& c : std::initializer_list<Case>{
             {"/", "/"},
             {"//", "/"},
             {"///", "/"},
             {"/.", "/"},
             {"/./", "/"},
             {"/./.", "/"},
             {"/a", "/a"},
             {"/a/", "/a"},
             {"/a//", "/a"},
             {"//a//b//", "/a/b"},
             {"/a/./b/.", "/a/b"},
             {"/./a", "/a"},
             {"/a/.../b", "/a/.../b"},
             {"/a/.b/b.", "/a/.b/b."},
             {"/a b/ c ", "/a b/ c "},
             {"/caf\xc3\xa9//x", "/caf\xc3\xa9/x"},
         }) {
        auto r = normalize_path(c.in);
        ASSERT_TRUE(Succeeds(r)) << c.in;
        EXPECT_EQ(*r, c.out) << c.in;
        EXPECT_TRUE(Succeeds(validate_path(*r))) << c.in;
        // Normalizing twice changes nothing.
        auto again = normalize_path(*r);
        ASSERT_TRUE(Succeeds(again));
        EXPECT_EQ(*again, *r);
    }
}

TEST(NormalizePath, RefusesDotDot) {
    for (std::string path : {"/..", "/../a", "/a/..", "/a/../b", "/a/b/../../c", "//..//"}) {
        EXPECT_TRUE(FailsWith(normalize_path(path), EINVAL, "'..'")) << path;
    }
}

TEST(NormalizePath, RefusesRelativeEmptyAndBadBytes) {
    EXPECT_TRUE(FailsWith(normalize_path(""), EINVAL, "empty"));
    EXPECT_TRUE(FailsWith(normalize_path("a/b"), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(normalize_path("./a"), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(normalize_path("."), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(normalize_path(S("/a\0b")), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(normalize_path("/a\nb"), EINVAL, "control"));
    EXPECT_TRUE(FailsWith(normalize_path("/\xed\xa0\x80"), EINVAL, "UTF-8"));
    EXPECT_TRUE(FailsWith(normalize_path("/\xc0\x80"), EINVAL, "UTF-8"));
    EXPECT_TRUE(FailsWith(normalize_path("/a/\xe2\x82"), EINVAL, "UTF-8"));
}

TEST(NormalizePath, EnforcesLimits) {
    std::string component(kMaxComponentLength, 'c');
    auto r = normalize_path("//" + component + "//");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(*r, "/" + component);
    EXPECT_TRUE(FailsWith(normalize_path("/" + component + "c/"), EINVAL, "component longer"));
    // The input itself is bounded, as the kernel bounds the string it is given.
    EXPECT_TRUE(FailsWith(normalize_path(std::string(kMaxPathLength + 1, '/')), EINVAL, "longer"));
    EXPECT_TRUE(Succeeds(normalize_path(std::string(kMaxPathLength, '/'))));
}

// ---------------------------------------------------------------- absolutize_path

TEST(AbsolutizePath, ResolvesAgainstCwd) {
    struct Case {
        std::string path, cwd, out;
    };
    for (const auto& c : std::initializer_list<Case>{
             {"a", "/home/u", "/home/u/a"},
             {"a/b/", "/home/u", "/home/u/a/b"},
             {".", "/home/u", "/home/u"},
             {"./a", "/home/u", "/home/u/a"},
             {"..", "/home/u", "/home"},
             {"../alt", "/home/u", "/home/alt"},
             {"../../..", "/home/u", "/"},
             {"../../../../etc", "/home/u", "/etc"},  // ".." above the root stays at the root
             {"..", "/", "/"},
             {"a/../b", "/", "/b"},
             {"a//b/./c/..", "/x", "/x/a/b"},
             {"a", "/", "/a"},
             {"a", "/home/u/", "/home/u/a"},
             {"a", "//home//u", "/home/u/a"},
             {"a", "/home/./u/../v", "/home/v/a"},
             {"/abs/../x", "/ignored", "/x"},
             {"/", "/home", "/"},
             {"/..", "/home", "/"},
             {"//a/./b/../c", "/cwd", "/a/c"},
             {"...", "/x", "/x/..."},
             {"a b", "/c d", "/c d/a b"},
         }) {
        auto r = absolutize_path(c.path, c.cwd);
        ASSERT_TRUE(Succeeds(r)) << c.path << " in " << c.cwd;
        EXPECT_EQ(*r, c.out) << c.path << " in " << c.cwd;
        EXPECT_TRUE(Succeeds(validate_path(*r)));
    }
}

TEST(AbsolutizePath, AbsolutePathIgnoresCwd) {
    auto r = absolutize_path("/a/b", "");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(*r, "/a/b");
    r = absolutize_path("/a/b", "relative");
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(*r, "/a/b");
}

TEST(AbsolutizePath, Rejections) {
    EXPECT_TRUE(FailsWith(absolutize_path("", "/home"), EINVAL, "empty"));
    EXPECT_TRUE(FailsWith(absolutize_path("a", ""), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(absolutize_path("a", "home"), EINVAL, "not absolute"));
    EXPECT_TRUE(FailsWith(absolutize_path(S("a\0b"), "/home"), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(absolutize_path("a", S("/ho\0me")), EINVAL, "NUL"));
    EXPECT_TRUE(FailsWith(absolutize_path("a\x01", "/home"), EINVAL, "control"));
    EXPECT_TRUE(FailsWith(absolutize_path("\xed\xa0\x80", "/home"), EINVAL, "UTF-8"));
    EXPECT_TRUE(FailsWith(absolutize_path("\xc0\xae\xc0\xae", "/home"), EINVAL, "UTF-8"));
    EXPECT_TRUE(FailsWith(absolutize_path(std::string(kMaxComponentLength + 1, 'x'), "/home"),
                          EINVAL, "component longer"));
    EXPECT_TRUE(
        FailsWith(absolutize_path(std::string(kMaxPathLength + 1, 'x'), "/"), EINVAL, "longer"));
}

TEST(AbsolutizePath, LengthLimitAppliesToTheResult) {
    // A deep working directory, as getcwd(3) may return it: near PATH_MAX.
    std::string cwd;
    while (cwd.size() + 201 <= kMaxPathLength) cwd += "/" + std::string(200, 'd');
    cwd += "/" + std::string(kMaxPathLength - cwd.size() - 1, 'e');
    ASSERT_EQ(cwd.size(), kMaxPathLength);
    ASSERT_TRUE(Succeeds(validate_path(cwd)));
    // "../x" from there is short and valid, and the kernel would resolve it.
    auto r = absolutize_path("../x", cwd);
    ASSERT_TRUE(Succeeds(r));
    EXPECT_EQ(*r, cwd.substr(0, cwd.rfind('/')) + "/x");
    // A result longer than PATH_MAX is refused.
    EXPECT_TRUE(FailsWith(absolutize_path(std::string(200, 'x'), cwd), EINVAL, "longer"));
    // A ".." that escapes a too-long component does not excuse it.
    EXPECT_TRUE(FailsWith(absolutize_path(std::string(kMaxComponentLength + 1, 'x') + "/..", "/"),
                          EINVAL, "component longer"));
}

// ---------------------------------------------------------------- text helpers

TEST(Utf8, ValidAndInvalid) {
    EXPECT_TRUE(is_valid_utf8(""));
    EXPECT_TRUE(is_valid_utf8("plain ascii"));
    EXPECT_TRUE(is_valid_utf8(S("nul\0inside")));
    EXPECT_TRUE(is_valid_utf8("\xc2\x80"));          // U+0080, smallest 2-byte
    EXPECT_TRUE(is_valid_utf8("\xdf\xbf"));          // U+07FF
    EXPECT_TRUE(is_valid_utf8("\xe0\xa0\x80"));      // U+0800, smallest 3-byte
    EXPECT_TRUE(is_valid_utf8("\xef\xbf\xbf"));      // U+FFFF
    EXPECT_TRUE(is_valid_utf8("\xf0\x90\x80\x80"));  // U+10000, smallest 4-byte
    EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
    EXPECT_FALSE(is_valid_utf8("\xc0\x80"));
    EXPECT_FALSE(is_valid_utf8("\xe0\x9f\xbf"));
    EXPECT_FALSE(is_valid_utf8("\xf0\x8f\xbf\xbf"));
    EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));
    EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));
    EXPECT_FALSE(is_valid_utf8("\xc2"));
    EXPECT_FALSE(is_valid_utf8("\xc2\x41"));  // continuation byte missing
    EXPECT_FALSE(is_valid_utf8("a\x80"));
}

TEST(Quote, EscapesAndCuts) {
    EXPECT_EQ(quote(""), "''");
    EXPECT_EQ(quote("abc"), "'abc'");
    EXPECT_EQ(quote("it's"), "'it\\'s'");
    EXPECT_EQ(quote("a\\b"), "'a\\\\b'");
    EXPECT_EQ(quote(S("a\0b\n\x7f")), "'a\\x00b\\x0a\\x7f'");
    EXPECT_EQ(quote("caf\xc3\xa9"), "'caf\xc3\xa9'");
    std::string long_text(300, 'x');
    EXPECT_EQ(quote(long_text), "'" + std::string(200, 'x') + "...'");
    EXPECT_EQ(quote(std::string(200, 'x')), "'" + std::string(200, 'x') + "'");
}

}  // namespace
}  // namespace pns
