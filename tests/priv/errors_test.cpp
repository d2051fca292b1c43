// pnsctl's failures: a non-zero exit code and exactly one line on stderr, whether the command
// line is wrong, pnsd refuses, or pnsd is not there at all.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

struct Case {
    std::vector<std::string> args;
    int exit_code;        // 1: pnsd refused; 2: the command line is wrong
    std::string message;  // a part of the one line on stderr
};

std::string joined(const std::vector<std::string>& args) {
    std::string out = "pnsctl";
    for (const auto& a : args) out += " " + a;
    return out;
}

class Errors : public PrivTest {};

TEST_F(Errors, OneLineAndNonZeroExit) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    const std::string a = make_dir(dir.path() + "/src/a"), b = make_dir(dir.path() + "/dst/b");
    const std::string h = make_dir(dir.path() + "/dst/h");
    ASSERT_EQ(pnsd.ctl({"ns", "create", "dev"}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"bind", "--ns", "dev", a, b}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"hide", "--ns", "dev", h}).exit_code, 0);
    const std::string table = export_of(pnsd, "dev");
    const auto generation = generation_of(pnsd, "dev");

    const std::string long_name(65, 'a');
    const std::vector<Case> cases = {
        // unknown namespace
        {{"bind", "--ns", "nope", "/a", "/b"}, 1, "no namespace 'nope'"},
        {{"hide", "--ns", "nope", "/a"}, 1, "no namespace 'nope'"},
        {{"ns", "show", "nope"}, 1, "no namespace 'nope'"},
        {{"ns", "rm", "nope"}, 1, "no namespace 'nope'"},
        {{"export", "--ns", "nope"}, 1, "no namespace 'nope'"},
        {{"apply", "--ns", "nope", "-"}, 1, "no namespace 'nope'"},
        // bad names
        {{"ns", "create", "Dev"}, 1, "must start with a lower-case letter or a digit"},
        {{"ns", "create", "-dev"}, 2, ""},  // an option, as far as the parser knows
        {{"ns", "create", ".dev"}, 1, "must start with"},
        {{"ns", "create", "a/b"}, 1, "may hold only"},
        {{"ns", "create", "a b"}, 1, "may hold only"},
        {{"ns", "create", "dév"}, 1, "may hold only"},
        {{"ns", "create", long_name}, 1, "longer than 64"},
        {{"ns", "create", ""}, 1, "empty"},
        {{"bind", "--ns", "Dev", "/a", "/b"}, 1, "must start with"},
        // relative or otherwise unusable DST
        {{"bind", "--ns", "dev", "/a", "relative"}, 2, "must be an absolute path"},
        {{"bind", "--ns", "dev", "/a", "./b"}, 2, "must be an absolute path"},
        {{"hide", "--ns", "dev", "relative"}, 2, "must be an absolute path"},
        {{"ro", "--ns", "dev", "relative"}, 2, "must be an absolute path"},
        {{"tmpfs", "--ns", "dev", "relative"}, 2, "must be an absolute path"},
        {{"unbind", "--ns", "dev", "relative"}, 2, "must be an absolute path"},
        {{"hide", "--ns", "dev", "/"}, 2, "without a root file system"},
        {{"hide", "--ns", "dev", "/a\x01"}, 2, "control character"},
        {{"hide", "--ns", "dev", "/" + std::string(256, 'x')}, 2, "longer than 255"},
        // a source that is not there (the view cannot be made; the stored table is restored)
        {{"bind", "--ns", "dev", dir.path() + "/missing", b}, 1, "missing"},
        {{"bind", "--ns", "dev", "-b", dir.path() + "/missing", b}, 1, "missing"},
        // duplicate entries
        {{"bind", "--ns", "dev", a, b}, 1, "already has 'bind " + a + " " + b + "'"},
        {{"bind", "--ns", "dev", a + "/", "/" + b}, 1, "already has 'bind " + a + " " + b + "'"},
        {{"hide", "--ns", "dev", h}, 1, "already has 'hide " + h + "'"},
        // flags that exclude each other or need another
        {{"bind", "--ns", "dev", "-a", "-b", "/a", "/c"}, 2, "excludes"},
        {{"bind", "--ns", "dev", "-c", "/a", "/c"}, 2, "needs -a or -b"},
        // unknown commands and options
        {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
        {{"ns", "frob"}, 2, "unknown command 'frob'"},
        {{"--json", "frob", "--socket", "/x"}, 2, "unknown command 'frob'"},
        {{"bind", "--ns", "dev", "--frob", "/a", "/c"}, 2, "--frob"},
        // missing arguments
        {{}, 2, "subcommand"},
        {{"ns"}, 2, "subcommand"},
        {{"ns", "create"}, 2, "NAME"},
        {{"ns", "show"}, 2, "NAME"},
        {{"bind", "--ns", "dev", "/a"}, 2, "DST"},
        {{"bind", "/a", "/c"}, 2, "--ns"},
        {{"hide", "--ns", "dev"}, 2, "DST"},
        {{"apply", "--ns", "dev"}, 2, "FILE"},
        {{"export"}, 2, "--ns"},
        {{"bind", "--ns"}, 2, "--ns"},
        // a table file that is not there
        {{"apply", "--ns", "dev", dir.path() + "/missing.txt"}, 1, "missing.txt"},
        {{"ns", "create", "x", "--from", dir.path() + "/missing.txt"}, 1, "missing.txt"},
        // --if-generation that is not a number
        {{"hide", "--ns", "dev", "--if-generation", "soon", "/x"}, 2, "if-generation"},
        // a newline in what the user typed stays out of the one line
        {{"ns", "ls", "x\ny"}, 2, "x\\x0ay"},
        {{"fr\nob"}, 2, "unknown command 'fr\\x0aob'"},
        {{"hide", "--ns", "dev", "--if-generation", "1\n2", "/x"}, 2, "1\\x0a2"},
        {{"ns", "show", "a\nb"}, 1, "'a\\x0ab'"},
        {{"hide", "--ns", "dev", "/a\nb"}, 2, "'/a\\x0ab'"},
        {{"apply", "--ns", "dev", dir.path() + "/no\nfile"}, 1, "no\\x0afile"},
    };
    for (const auto& c : cases) {
        auto r = pnsd.ctl(c.args);
        EXPECT_EQ(r.exit_code, c.exit_code) << joined(c.args) << ": " << r.err;
        EXPECT_TRUE(is_one_line(r.err)) << joined(c.args) << ": [" << r.err << "]";
        EXPECT_TRUE(r.err.starts_with("pnsctl: ")) << joined(c.args) << ": " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << joined(c.args) << ": " << r.err;
        EXPECT_EQ(r.out, "") << joined(c.args);
    }
    // None of it changed anything, in memory or on disk.
    EXPECT_EQ(export_of(pnsd, "dev"), table);
    EXPECT_EQ(generation_of(pnsd, "dev"), generation);
    auto list = ctl_json(pnsd, {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), 1u) << list;
    ASSERT_EQ(pnsd.stop(), 0);
    ASSERT_TRUE(pnsd.start());
    EXPECT_EQ(export_of(pnsd, "dev"), table);
    EXPECT_EQ(generation_of(pnsd, "dev"), generation);
}

// A table file that cannot be read completely is an error: applying what was read, or
// nothing, would silently replace the table.
TEST_F(Errors, UnreadableTableFileChangesNothing) {
    TempDir dir;
    Pnsd pnsd(dir.path());
    ASSERT_TRUE(pnsd.start());
    const std::string x = make_dir(dir.path() + "/dst/x");
    ASSERT_EQ(pnsd.ctl({"ns", "create", "dev"}).exit_code, 0);
    ASSERT_EQ(pnsd.ctl({"hide", "--ns", "dev", x}).exit_code, 0);
    const std::string unreadable = dir.path() + "/private.txt";
    write_file(unreadable, "hide /y\n");
    ::chmod(unreadable.c_str(), 0600);

    struct FileCase {
        std::vector<std::string> args;
        RunOptions options;
        std::string message;
    };
    const std::vector<FileCase> cases = {
        {{"apply", "--ns", "dev", dir.path()}, {}, "Is a directory"},
        {{"apply", "--ns", "dev", "/dev/zero"}, {}, "larger than 8 MiB"},
        {{"apply", "--ns", "dev", "-"},
         {.stdin_data = std::string((8u << 20) + 10, '#')},
         "larger than 8 MiB"},
        {{"apply", "--ns", "dev", unreadable}, {.uid = kOtherUid}, "Permission denied"},
        {{"ns", "create", "new", "--from", dir.path()}, {}, "Is a directory"},
    };
    for (const auto& c : cases) {
        auto r = pnsd.ctl(c.args, c.options);
        EXPECT_EQ(r.exit_code, 1) << joined(c.args) << ": " << r.err;
        EXPECT_TRUE(is_one_line(r.err)) << joined(c.args) << ": " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << joined(c.args) << ": " << r.err;
    }
    EXPECT_EQ(export_of(pnsd, "dev"), "hide " + x + "\n");
    EXPECT_EQ(generation_of(pnsd, "dev"), 2u);
    EXPECT_EQ(ctl_json(pnsd, {"ns", "ls"})["namespaces"].size(), 1u);
}

// A socket file with nothing listening, as a killed pnsd leaves it.
void make_dead_socket(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
        << std::strerror(errno);
    ::close(fd);
}

TEST_F(Errors, PnsdNotRunning) {
    TempDir dir;
    const std::string missing = dir.path() + "/missing.sock";
    const std::string dead = dir.path() + "/dead.sock";
    const std::string odd = dir.path() + "/new\nline.sock";
    make_dead_socket(dead);
    for (const auto& sock : {missing, dead, odd}) {
        for (auto args : {std::vector<std::string>{"ns", "ls"},
                          std::vector<std::string>{"bind", "--ns", "dev", "/a", "/b"},
                          std::vector<std::string>{"status"}}) {
            args.insert(args.begin(), pnsctl_path());
            auto r = run(args, {.env = {"PNS_SOCKET=" + sock}});
            EXPECT_EQ(r.exit_code, 1) << r.err;
            EXPECT_TRUE(is_one_line(r.err)) << r.err;
            EXPECT_NE(r.err.find("pnsd is not running"), std::string::npos) << r.err;
            EXPECT_NE(r.err.find(sock == odd ? dir.path() + "/new\\x0aline.sock" : sock),
                      std::string::npos)
                << r.err;
            // ... and how to start it.
            EXPECT_NE(r.err.find("systemctl start pnsd"), std::string::npos) << r.err;
            EXPECT_NE(r.err.find("run 'pnsd' as root"), std::string::npos) << r.err;
        }
    }
    // A user without access gets the same advice (not an unrelated error).
    Pnsd never_started(dir.path());  // its socket is dir/pnsd.sock, which does not exist
    auto r = never_started.ctl({"ns", "ls"}, {.uid = kOtherUid});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("pnsd is not running"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pns::test
