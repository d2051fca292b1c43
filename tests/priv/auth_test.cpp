// Authorization from SO_PEERCRED, exercised by a real second uid: anyone lists, only the owner
// and root see entries and edit; root may hand a namespace to a user.
#include <sys/stat.h>

#include <optional>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace pns::test {
namespace {

using nlohmann::json;

constexpr uid_t kThirdUid = kOtherUid + 1;

class Authorization : public PnsdTest {
  protected:
    void SetUp() override {
        PnsdTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        // Sources every uid can reach (the test dir is 0755).
        src_ = make_dir(dir_.path() + "/src");
        dst_ = make_dir(dir_.path() + "/dst");
    }
    std::string src(const std::string& name) { return make_dir(src_ + "/" + name); }
    std::string dst(const std::string& name) { return make_dir(dst_ + "/" + name); }

    Output as(uid_t uid, const std::vector<std::string>& args, std::string stdin_data = "") {
        return pnsd().ctl(args, {.uid = uid, .stdin_data = std::move(stdin_data)});
    }
    void expect_ok(const Output& r, const std::string& what) {
        EXPECT_EQ(r.exit_code, 0) << what << ": " << r.err;
    }
    void expect_denied(const Output& r, const std::string& what) {
        EXPECT_EQ(r.exit_code, 1) << what;
        EXPECT_TRUE(is_one_line(r.err)) << what << ": " << r.err;
        EXPECT_NE(r.err.find("only its owner or root"), std::string::npos) << what << ": " << r.err;
    }

    std::string src_, dst_;
};

TEST_F(Authorization, OtherUserSeesNamesButNotEntries) {
    ASSERT_EQ(pnsd().ctl({"ns", "create", "rootns"}).exit_code, 0);
    ASSERT_EQ(pnsd().ctl({"bind", "--ns", "rootns", src("secret"), dst("secret")}).exit_code, 0);

    auto ls = as(kOtherUid, {"ns", "ls"});
    expect_ok(ls, "ns ls");
    EXPECT_NE(ls.out.find("rootns"), std::string::npos) << ls.out;
    EXPECT_EQ(ls.out.find("secret"), std::string::npos) << ls.out;

    auto list = parse_json(as(kOtherUid, {"ns", "ls", "--json"}).out);
    ASSERT_EQ(list["namespaces"].size(), 1u) << list;
    const json& ns = list["namespaces"][0];
    EXPECT_EQ(ns["name"], "rootns");
    EXPECT_EQ(ns["owner"], 0);
    EXPECT_EQ(ns["generation"], 2);
    EXPECT_FALSE(ns.contains("entry_count")) << ns;
    // Root sees the count.
    EXPECT_EQ(ctl_json(pnsd(), {"ns", "ls"})["namespaces"][0]["entry_count"], 1);

    auto show = as(kOtherUid, {"ns", "show", "rootns"});
    expect_ok(show, "ns show");
    EXPECT_NE(show.out.find("hidden"), std::string::npos) << show.out;
    EXPECT_EQ(show.out.find("secret"), std::string::npos) << show.out;
    auto show_json = parse_json(as(kOtherUid, {"ns", "show", "rootns", "--json"}).out);
    EXPECT_EQ(show_json["entries_hidden"], true) << show_json;
    EXPECT_FALSE(show_json.contains("entries")) << show_json;

    auto exported = as(kOtherUid, {"export", "--ns", "rootns"});
    EXPECT_EQ(exported.exit_code, 1);
    EXPECT_TRUE(is_one_line(exported.err)) << exported.err;
    EXPECT_NE(exported.err.find("only its owner or root may read its entries"), std::string::npos)
        << exported.err;
    EXPECT_EQ(exported.out.find("secret"), std::string::npos) << exported.out;
    auto exported_json = parse_json(as(kOtherUid, {"export", "--ns", "rootns", "--json"}).out);
    EXPECT_EQ(exported_json["ok"], false);
    EXPECT_EQ(exported_json["error"]["code"], 7) << exported_json;
    EXPECT_EQ(exported_json["error"]["name"], "permission-denied") << exported_json;

    // status tells the user who pnsd thinks they are: the kernel's answer, not a claim.
    auto status = parse_json(as(kOtherUid, {"status", "--json"}).out);
    EXPECT_EQ(status["caller"]["uid"], kOtherUid) << status;
}

TEST_F(Authorization, OtherUserCannotChangeRootNamespace) {
    const std::string a = src("a"), b = dst("b"), h = dst("h"), mine = dst("mine");
    ASSERT_EQ(pnsd().ctl({"ns", "create", "rootns"}).exit_code, 0);
    ASSERT_EQ(pnsd().ctl({"bind", "--ns", "rootns", a, b}).exit_code, 0);
    ASSERT_EQ(pnsd().ctl({"hide", "--ns", "rootns", h}).exit_code, 0);
    const std::string table = export_of(pnsd(), "rootns");
    const auto generation = generation_of(pnsd(), "rootns");
    std::string file = make_file(dir_.path() + "/table.txt", "hide " + mine + "\n");

    struct Attempt {
        std::vector<std::string> args;
        std::string stdin_data;
    };
    const std::vector<Attempt> attempts = {
        {{"bind", "--ns", "rootns", src("x"), dst("y")}, ""},
        {{"bind", "--ns", "rootns", "-b", "-c", src("x"), dst("y")}, ""},
        {{"hide", "--ns", "rootns", dst("e")}, ""},
        {{"ro", "--ns", "rootns", dst("e")}, ""},
        {{"tmpfs", "--ns", "rootns", dst("t")}, ""},
        {{"unbind", "--ns", "rootns", b}, ""},
        {{"unbind", "--ns", "rootns", b, a}, ""},
        {{"unbind", "--ns", "rootns", "/nothing"}, ""},
        {{"apply", "--ns", "rootns", file}, ""},
        {{"apply", "--ns", "rootns", "-"}, "hide " + mine + "\n"},
        {{"apply", "--ns", "rootns", "-"}, ""},  // emptying it is an edit too
        {{"bind", "--ns", "rootns", "--if-generation", std::to_string(generation), src("x"),
          dst("y")},
         ""},
        {{"ns", "rm", "rootns"}, ""},
    };
    for (const auto& attempt : attempts) {
        std::string what;
        for (const auto& arg : attempt.args) what += arg + " ";
        auto r = as(kOtherUid, attempt.args, attempt.stdin_data);
        expect_denied(r, what);
        EXPECT_NE(r.err.find("only its owner or root may change it"), std::string::npos) << r.err;
        EXPECT_EQ(export_of(pnsd(), "rootns"), table) << what;
        EXPECT_EQ(generation_of(pnsd(), "rootns"), generation) << what;
    }
    auto denied = parse_json(as(kOtherUid, {"hide", "--ns", "rootns", dst("e"), "--json"}).out);
    EXPECT_EQ(denied["error"]["code"], 7) << denied;

    // Nor may a user create a namespace for somebody else.
    for (const auto& owner : {"root", "0", "4243"}) {
        auto r = as(kOtherUid, {"ns", "create", "stolen", "--owner", owner});
        EXPECT_EQ(r.exit_code, 1) << owner;
        EXPECT_TRUE(is_one_line(r.err)) << r.err;
        EXPECT_NE(r.err.find("only root may create a namespace owned by another user"),
                  std::string::npos)
            << r.err;
    }
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    ASSERT_EQ(list["namespaces"].size(), 1u) << list;
    EXPECT_EQ(list["namespaces"][0]["name"], "rootns");
}

TEST_F(Authorization, UserCreatesAndEditsOwnNamespace) {
    auto created = parse_json(as(kOtherUid, {"ns", "create", "mine", "--json"}).out);
    EXPECT_EQ(created["owner"], kOtherUid) << created;
    // Naming oneself as owner is allowed.
    expect_ok(as(kOtherUid, {"ns", "create", "mine2", "--owner", std::to_string(kOtherUid)}),
              "create --owner self");

    const std::string conf = make_file(src_ + "/app.conf", "mine\n");
    const std::string etc_conf = dst_ + "/app.conf";  // made in the view only
    const std::string bin = src("bin"), usr_bin = dst("bin"), dev = dst("dev"), srv = dst("srv"),
                      tmp = dst("tmp"), etc = dst("etc"), only = dst("only");
    expect_ok(as(kOtherUid, {"bind", "--ns", "mine", conf, etc_conf}), "bind");
    expect_ok(as(kOtherUid, {"bind", "--ns", "mine", "-b", bin, usr_bin}), "bind -b");
    expect_ok(as(kOtherUid, {"hide", "--ns", "mine", dev}), "hide");
    expect_ok(as(kOtherUid, {"ro", "--ns", "mine", srv}), "ro");
    expect_ok(as(kOtherUid, {"tmpfs", "--ns", "mine", tmp}), "tmpfs");
    expect_ok(as(kOtherUid, {"unbind", "--ns", "mine", srv}), "unbind");
    auto exported = as(kOtherUid, {"export", "--ns", "mine"});
    expect_ok(exported, "export");
    EXPECT_EQ(exported.out, "bind " + conf + " " + etc_conf + "\nbind -b " + bin + " " + usr_bin +
                                "\nhide " + dev + "\ntmpfs " + tmp + "\n");
    auto show = parse_json(as(kOtherUid, {"ns", "show", "mine", "--json"}).out);
    EXPECT_EQ(show["entries"].size(), 4u) << show;

    // Root reads and edits it too, and the owner sees root's edit.
    EXPECT_EQ(export_of(pnsd(), "mine"), exported.out);
    ASSERT_EQ(pnsd().ctl({"ro", "--ns", "mine", etc}).exit_code, 0);
    EXPECT_EQ(as(kOtherUid, {"export", "--ns", "mine"}).out, exported.out + "ro " + etc + "\n");
    // The owner stays the user after root's edit.
    EXPECT_EQ(ctl_json(pnsd(), {"ns", "show", "mine"})["owner"], kOtherUid);

    // A third user is refused, and sees no entries.
    expect_denied(as(kThirdUid, {"hide", "--ns", "mine", dst("x")}), "third user hide");
    expect_denied(as(kThirdUid, {"export", "--ns", "mine"}), "third user export");
    expect_denied(as(kThirdUid, {"ns", "rm", "mine"}), "third user rm");

    // apply as the owner, from stdin.
    expect_ok(as(kOtherUid, {"apply", "--ns", "mine", "-"}, "hide " + only + "\n"), "apply");
    EXPECT_EQ(export_of(pnsd(), "mine"), "hide " + only + "\n");

    // The owner may remove it.
    expect_ok(as(kOtherUid, {"ns", "rm", "mine"}), "rm");
    auto list = ctl_json(pnsd(), {"ns", "ls"});
    ASSERT_EQ(list["namespaces"].size(), 1u) << list;
    EXPECT_EQ(list["namespaces"][0]["name"], "mine2");
}

// Sources are looked up with the caller's credentials: a user cannot show in their view what
// they could not read themselves, even in their own namespace. Root can.
TEST_F(Authorization, UserCannotBindWhatTheyCannotReach) {
    const std::string secret = make_dir(dir_.path() + "/private/secret");
    ASSERT_EQ(::chmod((dir_.path() + "/private").c_str(), 0700), 0);
    const std::string target = dst("t");
    auto created = as(kOtherUid, {"ns", "create", "mine"});
    expect_ok(created, "create");

    for (auto args : {std::vector<std::string>{"bind", "--ns", "mine", secret, target},
                      std::vector<std::string>{"bind", "--ns", "mine", "-b", secret, target}}) {
        auto r = as(kOtherUid, args);
        EXPECT_EQ(r.exit_code, 1) << args[3];
        EXPECT_TRUE(is_one_line(r.err)) << r.err;
        EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
    }
    EXPECT_EQ(export_of(pnsd(), "mine"), "");
    EXPECT_EQ(generation_of(pnsd(), "mine"), 1u);
    // Root may put it there (root edits every namespace and reaches every path).
    EXPECT_EQ(pnsd().ctl({"bind", "--ns", "mine", secret, target}).exit_code, 0);
    EXPECT_EQ(export_of(pnsd(), "mine"), "bind " + secret + " " + target + "\n");
}

// A user's edits change their own view and nothing else. Showing a tree that holds mounts
// ('/', with /proc, /sys and /dev below it) and taking it away again must leave those mounts
// where they are. pnsd runs in a mount namespace of its own here, a slave of the machine's,
// so that if this fails it is that namespace that loses /proc, not the machine.
TEST_F(Authorization, UserEditsNeverUnmountAnythingOutsideTheView) {
    TempDir dir;
    Pnsd sandboxed(dir.path());
    sandboxed.isolate_mounts();
    ASSERT_TRUE(sandboxed.start());
    const pid_t sandbox = sandboxed.sandbox_pid();
    const std::vector<std::string> watched = {"/proc", "/sys", "/dev"};
    std::vector<long> before;
    for (const auto& path : watched) before.push_back(mount_id(path, sandbox));
    for (std::size_t i = 0; i < watched.size(); ++i)
        ASSERT_GE(before[i], 0) << watched[i] << " is not mounted to begin with";

    const std::string target = make_dir(dir.path() + "/dst/root");
    auto as_user = [&](const std::vector<std::string>& args) {
        auto r = sandboxed.ctl(args, {.uid = kOtherUid});
        EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    };
    as_user({"ns", "create", "u"});
    as_user({"bind", "--ns", "u", "/", target});
    as_user({"unbind", "--ns", "u", target});
    // A user's union of a tree with mounts below it is refused (made as the user, overlayfs may
    // not take a layer that would show what they cover), after its copy was staged in the
    // view and taken off again.
    auto union_of_sys =
        sandboxed.ctl({"bind", "--ns", "u", "-b", "/sys", target}, {.uid = kOtherUid});
    EXPECT_NE(union_of_sys.exit_code, 0);
    EXPECT_NE(union_of_sys.err.find("mounted below"), std::string::npos) << union_of_sys.err;
    as_user({"bind", "--ns", "u", "-b", make_dir(dir.path() + "/plain"), target});
    as_user({"apply", "--ns", "u", "-"});
    for (std::size_t i = 0; i < watched.size(); ++i)
        EXPECT_EQ(mount_id(watched[i], sandbox), before[i])
            << watched[i] << " was unmounted outside the view by a user's unbind";
}

TEST_F(Authorization, RootCreatesNamespaceForUser) {
    auto created =
        ctl_json(pnsd(), {"ns", "create", "theirs", "--owner", std::to_string(kOtherUid)});
    EXPECT_EQ(created["owner"], kOtherUid) << created;
    // A user without a passwd entry is shown by number.
    EXPECT_EQ(created["owner_name"], std::to_string(kOtherUid)) << created;
    auto by_name = ctl_json(pnsd(), {"ns", "create", "roots", "--owner", "root"});
    EXPECT_EQ(by_name["owner"], 0) << by_name;
    auto unknown = pnsd().ctl({"ns", "create", "x", "--owner", "no-such-user-pns"});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_NE(unknown.err.find("no user named"), std::string::npos) << unknown.err;

    const std::string a = src("a"), b = dst("b");
    expect_ok(as(kOtherUid, {"bind", "--ns", "theirs", a, b}), "owner bind");
    expect_ok(as(kOtherUid, {"export", "--ns", "theirs"}), "owner export");
    expect_denied(as(kThirdUid, {"bind", "--ns", "theirs", src("c"), dst("d")}), "third user bind");
    expect_denied(as(kOtherUid, {"bind", "--ns", "roots", src("c"), dst("d")}), "user on root's");
    EXPECT_EQ(export_of(pnsd(), "theirs"), "bind " + a + " " + b + "\n");
    EXPECT_EQ(export_of(pnsd(), "roots"), "");

    auto ls = as(kOtherUid, {"ns", "ls", "--json"});
    auto list = parse_json(ls.out);
    ASSERT_EQ(list["namespaces"].size(), 2u) << list;
    EXPECT_EQ(list["namespaces"][0]["name"], "roots");
    EXPECT_FALSE(list["namespaces"][0].contains("entry_count"));
    EXPECT_EQ(list["namespaces"][1]["name"], "theirs");
    EXPECT_EQ(list["namespaces"][1]["entry_count"], 1);
}

}  // namespace
}  // namespace pns::test
