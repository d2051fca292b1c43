// The life of a namespace driven through the real pnsctl: create, list, show, every edit
// command, unbind, export/apply, remove; the --json output; the global options.
#include <sys/stat.h>

#include <filesystem>
#include <optional>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

class Lifecycle : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        src_ = make_dir(dir_.path() + "/src");
        dst_ = make_dir(dir_.path() + "/dst");
    }

    // A source directory that exists, and a target directory (made unless `exists` is false).
    std::string src(const std::string& name) { return make_dir(src_ + "/" + name); }
    std::string dst(const std::string& name, bool exists = true) {
        return exists ? make_dir(dst_ + "/" + name) : dst_ + "/" + name;
    }

    // Runs pnsctl as root and expects success.
    Output ok(const std::vector<std::string>& args, const RunOptions& options = {}) {
        auto r = pnsd().ctl(args, options);
        std::string joined;
        for (const auto& a : args) joined += " " + a;
        EXPECT_EQ(r.exit_code, 0) << "pnsctl" << joined << ": " << r.err;
        EXPECT_EQ(r.err, "") << "pnsctl" << joined;
        return r;
    }

    std::string src_, dst_;
};

// Without the LSM guard "locked" promises less (README: What "locked" promises), and the
// commands that make or show such a namespace say so; with it, and for unlocked ones, nothing.
TEST_F(Lifecycle, ALockedNamespaceSaysWhenTheGuardIsMissing) {
    const bool guarded = ctl_json(pnsd(), {"status"})["guard"]["state"] == "active";
    auto locked = pnsd().ctl({"ns", "create", "lk", "--locked"});
    auto show = pnsd().ctl({"ns", "show", "lk"});
    ASSERT_EQ(locked.exit_code, 0) << locked.err;
    ASSERT_EQ(show.exit_code, 0) << show.err;
    auto unlocked = ok({"ns", "create", "open"});
    EXPECT_EQ(unlocked.err, "");
    EXPECT_EQ(ok({"ns", "show", "open"}).err, "");
    if (guarded) {
        EXPECT_EQ(locked.err, "");
        EXPECT_EQ(show.err, "");
        return;
    }
    const std::string warning =
        "pnsctl: warning: namespace 'lk' is locked without the LSM guard (";
    EXPECT_TRUE(locked.err.starts_with(warning) && is_one_line(locked.err)) << locked.err;
    EXPECT_NE(locked.err.find("descriptors or /proc links from outside are not refused"),
              std::string::npos)
        << locked.err;
    EXPECT_TRUE(show.err.starts_with(warning)) << show.err;
}

TEST_F(Lifecycle, CreateListShowRemove) {
    ok({"ns", "create", "dev"});
    // (It may warn that the guard is missing: ALockedNamespaceSaysWhenTheGuardIsMissing.)
    ASSERT_EQ(pnsd().ctl({"ns", "create", "locked-one", "--locked"}).exit_code, 0);

    auto again = pnsd().ctl({"ns", "create", "dev"});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_TRUE(is_one_line(again.err)) << again.err;
    EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;

    auto ls = ok({"ns", "ls"});
    EXPECT_NE(ls.out.find("NAME"), std::string::npos) << ls.out;
    EXPECT_NE(ls.out.find("dev"), std::string::npos) << ls.out;
    EXPECT_NE(ls.out.find("locked-one"), std::string::npos) << ls.out;

    auto list = ctl_json(pnsd(), {"ns", "ls"});
    ASSERT_TRUE(list.contains("namespaces")) << list;
    ASSERT_EQ(list["namespaces"].size(), 2u) << list;
    // Sorted by name: "dev" before "locked-one".
    const json& dev = list["namespaces"][0];
    EXPECT_EQ(dev["name"], "dev");
    EXPECT_EQ(dev["owner"], 0);
    EXPECT_EQ(dev["owner_name"], "root");
    EXPECT_EQ(dev["locked"], false);
    EXPECT_EQ(dev["generation"], 1);
    EXPECT_EQ(dev["entry_count"], 0);
    EXPECT_EQ(list["namespaces"][1]["name"], "locked-one");
    EXPECT_EQ(list["namespaces"][1]["locked"], true);

    auto show = ok({"ns", "show", "dev"});
    EXPECT_NE(show.out.find("name:       dev"), std::string::npos) << show.out;
    EXPECT_NE(show.out.find("locked:     no"), std::string::npos) << show.out;
    EXPECT_NE(show.out.find("entries:    0"), std::string::npos) << show.out;

    ok({"ns", "rm", "dev"});
    list = ctl_json(pnsd(), {"ns", "ls"});
    ASSERT_EQ(list["namespaces"].size(), 1u) << list;
    EXPECT_EQ(list["namespaces"][0]["name"], "locked-one");

    for (auto args : {std::vector<std::string>{"ns", "show", "dev"},
                      std::vector<std::string>{"ns", "rm", "dev"},
                      std::vector<std::string>{"export", "--ns", "dev"}}) {
        auto r = pnsd().ctl(args);
        EXPECT_EQ(r.exit_code, 1) << args[1];
        EXPECT_TRUE(is_one_line(r.err)) << r.err;
        EXPECT_NE(r.err.find("no namespace 'dev'"), std::string::npos) << r.err;
    }
    // The name is free again, and the new namespace starts afresh.
    ok({"ns", "create", "dev"});
    EXPECT_EQ(generation_of(pnsd(), "dev"), 1u);
    EXPECT_EQ(export_of(pnsd(), "dev"), "");
}

TEST_F(Lifecycle, EditCommandsBuildTheTable) {
    ok({"ns", "create", "dev"});
    const std::string work = make_dir(dir_.path() + "/work/sub");
    make_file(dir_.path() + "/work/alt/app.conf", "mine\n");
    make_dir(work + "/x/y");
    make_dir(work + "/z");
    dst("z");

    ok({"bind", "--ns", "dev", src("a"), dst("a")});
    ok({"bind", "--ns", "dev", "-a", src("b"), dst("b")});
    ok({"bind", "--ns", "dev", "-b", src("c"), dst("c")});
    ok({"bind", "--ns", "dev", "-b", "-c", src("d"), dst("d")});
    ok({"hide", "--ns", "dev", dst("hidden")});
    ok({"ro", "--ns", "dev", dst("readonly")});
    ok({"tmpfs", "--ns", "dev", dst("scratch", false)});
    // A relative SRC is taken against pnsctl's working directory; DST is normalized.
    ok({"bind", "--ns", "dev", "../alt/app.conf", dst_ + "//app.conf"}, {.cwd = work});
    ok({"bind", "--ns", "dev", "./x/./y", dst("y") + "/"}, {.cwd = work});
    ok({"bind", "--ns", "dev", "-b", "z", dst_ + "/./z"}, {.cwd = work});

    const std::string& d = dir_.path();
    const std::string expected =
        "bind " + d + "/src/a " + d + "/dst/a\n" + "bind -a " + d + "/src/b " + d + "/dst/b\n" +
        "bind -b " + d + "/src/c " + d + "/dst/c\n" + "bind -bc " + d + "/src/d " + d + "/dst/d\n" +
        "hide " + d + "/dst/hidden\n" + "ro " + d + "/dst/readonly\n" + "tmpfs " + d +
        "/dst/scratch\n" + "bind " + d + "/work/alt/app.conf " + d + "/dst/app.conf\n" + "bind " +
        d + "/work/sub/x/y " + d + "/dst/y\n" + "bind -b " + d + "/work/sub/z " + d + "/dst/z\n";
    EXPECT_EQ(export_of(pnsd(), "dev"), expected);
    EXPECT_EQ(generation_of(pnsd(), "dev"), 11u);  // 1 at creation, one per edit

    auto show = ctl_json(pnsd(), {"ns", "show", "dev"});
    ASSERT_TRUE(show.contains("entries")) << show;
    ASSERT_EQ(show["entries"].size(), 10u);
    EXPECT_EQ(show["entry_count"], 10);
    EXPECT_EQ(show["entries"][0],
              (json{{"verb", "bind"}, {"src", d + "/src/a"}, {"dst", d + "/dst/a"}}));
    EXPECT_EQ(
        show["entries"][1],
        (json{{"verb", "bind"}, {"union", "after"}, {"src", d + "/src/b"}, {"dst", d + "/dst/b"}}));
    EXPECT_EQ(show["entries"][3], (json{{"verb", "bind"},
                                        {"union", "before"},
                                        {"create", true},
                                        {"src", d + "/src/d"},
                                        {"dst", d + "/dst/d"}}));
    EXPECT_EQ(show["entries"][4], (json{{"verb", "hide"}, {"dst", d + "/dst/hidden"}}));
    EXPECT_EQ(show["entries"][5], (json{{"verb", "ro"}, {"dst", d + "/dst/readonly"}}));
    EXPECT_EQ(show["entries"][6], (json{{"verb", "tmpfs"}, {"dst", d + "/dst/scratch"}}));

    auto human = ok({"ns", "show", "dev"});
    EXPECT_NE(human.out.find("entries:    10"), std::string::npos) << human.out;
    EXPECT_NE(human.out.find("   4  bind -bc " + d + "/src/d " + d + "/dst/d\n"), std::string::npos)
        << human.out;

    // The same entry twice is refused, and so changes nothing.
    auto dup = pnsd().ctl({"bind", "--ns", "dev", "-b", "-c", src("d"), dst("d")});
    EXPECT_EQ(dup.exit_code, 1);
    EXPECT_NE(dup.err.find("already has"), std::string::npos) << dup.err;
    EXPECT_EQ(export_of(pnsd(), "dev"), expected);
    EXPECT_EQ(generation_of(pnsd(), "dev"), 11u);
}

TEST_F(Lifecycle, Unbind) {
    ok({"ns", "create", "dev"});
    const std::string x = dst("x"), y = dst("y"), r = dst("r");
    make_dir(src_ + "/rel");
    ok({"bind", "--ns", "dev", src("a"), x});
    ok({"bind", "--ns", "dev", src("b"), x});
    ok({"bind", "--ns", "dev", "-a", src("c"), x});
    ok({"hide", "--ns", "dev", y});
    ok({"bind", "--ns", "dev", "rel", r}, {.cwd = src_});
    ok({"bind", "--ns", "dev", src("other"), r});

    // By DST and SRC: only that entry goes.
    ok({"unbind", "--ns", "dev", x, src_ + "/b"});
    EXPECT_EQ(export_of(pnsd(), "dev"), "bind " + src_ + "/a " + x + "\nbind -a " + src_ + "/c " +
                                            x + "\nhide " + y + "\nbind " + src_ + "/rel " + r +
                                            "\nbind " + src_ + "/other " + r + "\n");
    // A relative SRC is resolved as bind resolved it; DST is normalized.
    ok({"unbind", "--ns", "dev", r + "/", "rel"}, {.cwd = src_});
    EXPECT_EQ(export_of(pnsd(), "dev"), "bind " + src_ + "/a " + x + "\nbind -a " + src_ + "/c " +
                                            x + "\nhide " + y + "\nbind " + src_ + "/other " + r +
                                            "\n");
    // By DST alone: every entry at DST goes, whatever its kind.
    auto gen = generation_of(pnsd(), "dev");
    auto removed = ctl_json(pnsd(), {"unbind", "--ns", "dev", x});
    EXPECT_EQ(removed["changed"], true) << removed;
    EXPECT_EQ(removed["entries"], 2) << removed;
    EXPECT_EQ(removed["generation"], gen + 1) << removed;
    EXPECT_EQ(export_of(pnsd(), "dev"), "hide " + y + "\nbind " + src_ + "/other " + r + "\n");
    ok({"unbind", "--ns", "dev", y});
    EXPECT_EQ(export_of(pnsd(), "dev"), "bind " + src_ + "/other " + r + "\n");

    // Nothing to unbind: an error, and nothing changes.
    gen = generation_of(pnsd(), "dev");
    for (auto args : {std::vector<std::string>{"unbind", "--ns", "dev", x},
                      std::vector<std::string>{"unbind", "--ns", "dev", r, src_ + "/a"},
                      std::vector<std::string>{"unbind", "--ns", "dev", "/nowhere"}}) {
        auto fail = pnsd().ctl(args);
        EXPECT_EQ(fail.exit_code, 1) << args[3];
        EXPECT_TRUE(is_one_line(fail.err)) << fail.err;
        EXPECT_NE(fail.err.find("no entry for"), std::string::npos) << fail.err;
    }
    EXPECT_EQ(export_of(pnsd(), "dev"), "bind " + src_ + "/other " + r + "\n");
    EXPECT_EQ(generation_of(pnsd(), "dev"), gen);
}

// Paths that need quoting, comments, blank lines, CRLF, odd spacing: apply reads them all,
// export writes the canonical form, and export -> apply -> export is the identity.
TEST_F(Lifecycle, ExportApplyRoundTrip) {
    const std::string& d = dir_.path();
    src("my bin");
    src("with \"quote\"");
    src("plain");
    src("upper");
    dst("my bin");
    dst("q");
    dst("root");
    dst("back\\slash");
    dst("#hash x");
    dst("#not a comment");
    dst("ünïcødé/路径");
    dst("a#b");
    dst("scratch");
    // Every line of the input, as typed: odd spacing, comments, CRLF, a tab, no final newline.
    const std::vector<std::string> input = {
        "# a table with everything the text form can hold",
        "",
        "bind   " + d + "/src/plain    \"" + d + "/dst/my bin\"   # trailing comment",
        "bind -b \"" + d + "/src/with \\\"quote\\\"\" " + d + "/dst/q",
        "bind -b -c " + d + "/src/upper \"" + d + "/dst/back\\\\slash\"\r",
        "\tbind -cb \"" + d + "/src//my bin/./\" \"" + d + "/dst/#hash x\"",
        "hide \"" + d + "/dst/#not a comment\"",
        "ro " + d + "/dst/ünïcødé/路径",
        "ro " + d + "/dst/a#b",
        "tmpfs " + d + "/dst/scratch",
        "   ",
        "bind " + d + "/src " + d + "/dst/root",
    };
    // What export makes of it.
    const std::vector<std::string> output = {
        "bind " + d + "/src/plain \"" + d + "/dst/my bin\"",
        "bind -b \"" + d + "/src/with \\\"quote\\\"\" " + d + "/dst/q",
        "bind -bc " + d + "/src/upper \"" + d + "/dst/back\\\\slash\"",
        "bind -bc \"" + d + "/src/my bin\" \"" + d + "/dst/#hash x\"",
        "hide \"" + d + "/dst/#not a comment\"",
        "ro " + d + "/dst/ünïcødé/路径",
        "ro " + d + "/dst/a#b",
        "tmpfs " + d + "/dst/scratch",
        "bind " + d + "/src " + d + "/dst/root",
    };
    std::string table, canonical;
    for (const auto& line : input) table += (table.empty() ? "" : "\n") + line;
    for (const auto& line : output) canonical += line + "\n";

    ok({"ns", "create", "a"});
    ok({"ns", "create", "b"});
    std::string file = d + "/table.txt";
    write_file(file, table);
    auto applied = ctl_json(pnsd(), {"apply", "--ns", "a", file});
    EXPECT_EQ(applied["changed"], true) << applied;
    EXPECT_EQ(applied["entries"], 9) << applied;
    EXPECT_EQ(applied["generation"], 2) << applied;
    std::string exported = export_of(pnsd(), "a");
    EXPECT_EQ(exported, canonical);

    // Through stdin into another namespace: identical.
    ok({"apply", "--ns", "b", "-"}, {.stdin_data = exported});
    EXPECT_EQ(export_of(pnsd(), "b"), exported);
    auto show_a = ctl_json(pnsd(), {"ns", "show", "a"});
    auto show_b = ctl_json(pnsd(), {"ns", "show", "b"});
    EXPECT_EQ(show_a["entries"], show_b["entries"]);

    // Applying a table's own export changes nothing, not even the generation.
    auto same = ctl_json(pnsd(), {"apply", "--ns", "a", "-"}, {.stdin_data = exported});
    EXPECT_EQ(same["changed"], false) << same;
    EXPECT_EQ(generation_of(pnsd(), "a"), 2u);

    // ns create --from takes the same text.
    std::string exported_file = d + "/exported.txt";
    write_file(exported_file, exported);
    ok({"ns", "create", "c", "--from", exported_file});
    EXPECT_EQ(export_of(pnsd(), "c"), exported);
    ok({"ns", "create", "d", "--from", "-"}, {.stdin_data = exported});
    EXPECT_EQ(export_of(pnsd(), "d"), exported);

    // An empty table empties the namespace.
    ok({"apply", "--ns", "a", "-"}, {.stdin_data = "# nothing\n\n"});
    EXPECT_EQ(export_of(pnsd(), "a"), "");
    EXPECT_EQ(generation_of(pnsd(), "a"), 3u);
}

// "A DST that does not exist is created in the view only" (DESIGN.md): a table holding such
// an entry stays editable like any other, whatever comes before or after it.
TEST_F(Lifecycle, TableWithAMissingTargetStaysEditable) {
    ok({"ns", "create", "dev"});
    const std::string deep = dst("x/y"), missing = dst("missing", false), other = dst("other");
    ok({"ro", "--ns", "dev", deep});
    ok({"tmpfs", "--ns", "dev", missing});
    ok({"hide", "--ns", "dev", other});
    EXPECT_FALSE(exists(missing)) << "made on the host, not in the view only";
    ok({"unbind", "--ns", "dev", deep});
    EXPECT_EQ(export_of(pnsd(), "dev"), "tmpfs " + missing + "\nhide " + other + "\n");
    ok({"apply", "--ns", "dev", "-"}, {.stdin_data = "ro " + deep + "\n"});
    EXPECT_EQ(export_of(pnsd(), "dev"), "ro " + deep + "\n");
    ok({"apply", "--ns", "dev", "-"}, {.stdin_data = ""});
    EXPECT_EQ(export_of(pnsd(), "dev"), "");
}

TEST_F(Lifecycle, ApplyWithParseErrorChangesNothing) {
    ok({"ns", "create", "dev"});
    ok({"bind", "--ns", "dev", src("a"), dst("b")});
    ok({"hide", "--ns", "dev", dst("c")});
    const std::string before = export_of(pnsd(), "dev");
    const auto generation = generation_of(pnsd(), "dev");

    struct Case {
        std::string table;
        std::string where;  // "line L, column C"
    };
    const Case cases[] = {
        {"bind /x /y\nhide /z\nhide relative\n", "line 3, column 6"},
        {"# comment\nbind /x /y\n  frob /z\n", "line 3, column 3"},
        {"bind /x \"/unterminated\n", "line 1, column 9"},
        {"ro /a\nbind -a -b /x /y\n", "line 2, column 10"},
        {"bind /x\n", "line 1, column 8"},
        {"hide /a\nhide /a\n", "line 2, column 1"},
        {"tmpfs /a/../b\n", "line 1, column 7"},
        {"bind -x /a /b\n", "line 1, column 7"},
        {"hide /a b\n", "line 1, column 9"},
        {"bind /a/\"b\" /c\n", "line 1, column 9"},
    };
    for (const auto& c : cases) {
        std::string file = dir_.path() + "/bad.txt";
        write_file(file, c.table);
        for (const std::string& source : {file, std::string("-")}) {
            auto r = pnsd().ctl({"apply", "--ns", "dev", source},
                                {.stdin_data = source == "-" ? c.table : ""});
            EXPECT_EQ(r.exit_code, 1) << c.table;
            EXPECT_TRUE(is_one_line(r.err)) << r.err;
            EXPECT_NE(r.err.find(c.where), std::string::npos) << c.table << " -> " << r.err;
        }
        // ns create --from with the same table fails the same way and creates nothing.
        auto create = pnsd().ctl({"ns", "create", "other", "--from", file});
        EXPECT_EQ(create.exit_code, 1);
        EXPECT_NE(create.err.find(c.where), std::string::npos) << create.err;
    }
    EXPECT_EQ(export_of(pnsd(), "dev"), before);
    EXPECT_EQ(generation_of(pnsd(), "dev"), generation);
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    EXPECT_EQ(list["namespaces"].size(), 1u) << list;
}

TEST_F(Lifecycle, IfGenerationConflictChangesNothing) {
    ok({"ns", "create", "dev"});
    const std::string b = dst("b"), q = dst("q");
    ok({"bind", "--ns", "dev", src("a"), b});
    ASSERT_EQ(generation_of(pnsd(), "dev"), 2u);
    const std::string before = export_of(pnsd(), "dev");
    const std::string table = "hide " + q + "\n";

    for (auto args :
         {std::vector<std::string>{"bind", "--ns", "dev", "--if-generation", "1", src("c"),
                                   dst("d")},
          std::vector<std::string>{"hide", "--ns", "dev", "--if-generation", "3", dst("e")},
          std::vector<std::string>{"unbind", "--ns", "dev", "--if-generation", "1", b},
          std::vector<std::string>{"apply", "--ns", "dev", "--if-generation", "1", "-"}}) {
        auto r = pnsd().ctl(args, {.stdin_data = table});
        EXPECT_EQ(r.exit_code, 1) << args[0];
        EXPECT_TRUE(is_one_line(r.err)) << r.err;
        EXPECT_NE(r.err.find("is at generation 2"), std::string::npos) << r.err;
        args.push_back("--json");
        r = pnsd().ctl(args, {.stdin_data = table});
        auto j = parse_json(r.out);
        EXPECT_EQ(j["ok"], false) << r.out;
        EXPECT_EQ(j["error"]["code"], 9) << r.out;
        EXPECT_EQ(j["error"]["name"], "conflict") << r.out;
    }
    EXPECT_EQ(export_of(pnsd(), "dev"), before);
    EXPECT_EQ(generation_of(pnsd(), "dev"), 2u);

    // The right generation goes through.
    ok({"bind", "--ns", "dev", "--if-generation", "2", src("c"), dst("d")});
    ok({"apply", "--ns", "dev", "--if-generation", "3", "-"}, {.stdin_data = table});
    EXPECT_EQ(export_of(pnsd(), "dev"), table);
    EXPECT_EQ(generation_of(pnsd(), "dev"), 4u);
}

TEST_F(Lifecycle, JsonOutput) {
    auto created = ctl_json(pnsd(), {"ns", "create", "dev"});
    EXPECT_EQ(created["name"], "dev") << created;
    EXPECT_EQ(created["owner"], 0) << created;
    EXPECT_EQ(created["generation"], 1) << created;
    EXPECT_EQ(created["locked"], false) << created;

    const std::string a = src("a"), b = dst("b");
    auto bound = ctl_json(pnsd(), {"bind", "--ns", "dev", a, b});
    EXPECT_EQ(bound, (json{{"name", "dev"}, {"generation", 2}, {"entries", 1}, {"changed", true}}));

    auto exported = ctl_json(pnsd(), {"export", "--ns", "dev"});
    EXPECT_EQ(exported,
              (json{{"name", "dev"}, {"generation", 2}, {"table", "bind " + a + " " + b + "\n"}}));

    auto status = ctl_json(pnsd(), {"status"});
    EXPECT_EQ(status["protocol"], 1) << status;
    EXPECT_EQ(status["pid"], pnsd().pid()) << status;
    EXPECT_EQ(status["socket"], pnsd().socket()) << status;
    EXPECT_EQ(status["state_dir"], pnsd().state_dir()) << status;
    EXPECT_EQ(status["runtime_dir"], pnsd().runtime_dir()) << status;
    EXPECT_EQ(status["namespaces"], 1) << status;
    EXPECT_TRUE(status["version"].is_string()) << status;
    EXPECT_TRUE(status["uptime_seconds"].is_number()) << status;
    EXPECT_GE(status["clients"].get<int>(), 1) << status;
    EXPECT_GE(status["requests"].get<int>(), 3) << status;
    EXPECT_EQ(status["caller"]["uid"], 0) << status;
    EXPECT_GT(status["caller"]["pid"].get<int>(), 0) << status;
    auto human = pnsd().ctl({"status"});
    EXPECT_EQ(human.exit_code, 0);
    EXPECT_NE(human.out.find("socket:      " + pnsd().socket()), std::string::npos) << human.out;

    auto removed = ctl_json(pnsd(), {"ns", "rm", "dev"});
    EXPECT_EQ(removed["name"], "dev") << removed;

    // A failure with --json: one line on stderr, and the error as JSON on stdout.
    auto r = pnsd().ctl({"ns", "show", "dev", "--json"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(is_one_line(r.err)) << r.err;
    auto error = parse_json(r.out);
    EXPECT_EQ(error["ok"], false) << r.out;
    EXPECT_EQ(error["error"]["code"], 5) << r.out;
    EXPECT_EQ(error["error"]["name"], "not-found") << r.out;
    EXPECT_NE(error["error"]["message"].get<std::string>().find("no namespace 'dev'"),
              std::string::npos);
}

TEST_F(Lifecycle, GlobalOptionsBeforeAndAfterSubcommand) {
    const std::string a = src("a"), b = dst("b"), h = dst("h");
    ok({"ns", "create", "dev"});
    ok({"bind", "--ns", "dev", a, b});
    const std::string& sock = pnsd().socket();
    const std::string nowhere = dir_.path() + "/nothing-here.sock";

    // --json before and after the subcommand, at every depth.
    auto before = pnsd().ctl({"--json", "ns", "ls"});
    auto middle = pnsd().ctl({"ns", "--json", "ls"});
    auto after = pnsd().ctl({"ns", "ls", "--json"});
    ASSERT_EQ(before.exit_code, 0) << before.err;
    ASSERT_EQ(middle.exit_code, 0) << middle.err;
    ASSERT_EQ(after.exit_code, 0) << after.err;
    EXPECT_EQ(parse_json(before.out), parse_json(after.out));
    EXPECT_EQ(parse_json(middle.out), parse_json(after.out));
    EXPECT_EQ(parse_json(after.out)["namespaces"][0]["name"], "dev");

    // --socket wins over a wrong PNS_SOCKET, before or after the subcommand.
    RunOptions wrong_env{.env = {"PNS_SOCKET=" + nowhere}};
    for (auto args : {std::vector<std::string>{"--socket", sock, "ns", "ls", "--json"},
                      std::vector<std::string>{"ns", "ls", "--socket", sock, "--json"},
                      std::vector<std::string>{"--json", "export", "--ns", "dev", "--socket", sock},
                      std::vector<std::string>{"hide", "--socket", sock, "--ns", "dev", h},
                      std::vector<std::string>{"--socket=" + sock, "ns", "show", "dev"}}) {
        args.insert(args.begin(), pnsctl_path());
        auto r = run(args, wrong_env);
        EXPECT_EQ(r.exit_code, 0) << args[1] << " " << args[2] << ": " << r.err;
    }
    EXPECT_EQ(export_of(pnsd(), "dev"), "bind " + a + " " + b + "\nhide " + h + "\n");

    // PNS_SOCKET alone is honoured: the right one works, a wrong one is named in the error.
    auto via_env = run({pnsctl_path(), "ns", "ls"}, {.env = {"PNS_SOCKET=" + sock}});
    EXPECT_EQ(via_env.exit_code, 0) << via_env.err;
    EXPECT_NE(via_env.out.find("dev"), std::string::npos);
    auto wrong = run({pnsctl_path(), "ns", "ls"}, wrong_env);
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_NE(wrong.err.find(nowhere), std::string::npos) << wrong.err;
    // And --socket names a wrong one the same way.
    auto wrong_option =
        run({pnsctl_path(), "ns", "ls", "--socket", nowhere}, {.env = {"PNS_SOCKET=" + sock}});
    EXPECT_EQ(wrong_option.exit_code, 1);
    EXPECT_NE(wrong_option.err.find(nowhere), std::string::npos) << wrong_option.err;
}

}  // namespace
}  // namespace pns::test
