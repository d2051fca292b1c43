// Which entry decides what a view shows at a path (agent/views/explain.hpp), from the table
// and the path alone, and the answer `pnsctl explain` gets.
#include <gtest/gtest.h>

#include "agent/views/explain.hpp"
#include "test_util.hpp"

namespace pns::agent {
namespace {

using Layers = std::vector<std::string>;

Table table(std::string_view text) {
    auto t = parse_table(text);
    EXPECT_TRUE(t) << t.error().message;
    return t ? *t : Table{};
}

TEST(Explain, NoEntryShowsTheHost) {
    auto x = explain_path(table("bind /srv/data /data\n"), "/etc/passwd");
    EXPECT_FALSE(x.entry);
    EXPECT_EQ(x.resolves_to, "/etc/passwd");
    EXPECT_EQ(to_json(x, {}), (nlohmann::json{{"path", "/etc/passwd"},
                                               {"entry", nullptr},
                                               {"resolves_to", "/etc/passwd"}}));
    EXPECT_FALSE(explain_path({}, "/").entry);
}

TEST(Explain, ExactMatch) {
    Table t = table("tmpfs /tmp\nbind /home/alice/app.conf /etc/app.conf\n");
    auto x = explain_path(t, "/etc/app.conf");
    EXPECT_EQ(x.entry, 2u);
    EXPECT_EQ(x.resolves_to, "/home/alice/app.conf");
    EXPECT_FALSE(x.is_union);
    EXPECT_EQ(to_json(x, t), (nlohmann::json{{"path", "/etc/app.conf"},
                                              {"entry", 2},
                                              {"line", "bind /home/alice/app.conf /etc/app.conf"},
                                              {"resolves_to", "/home/alice/app.conf"}}));
}

TEST(Explain, AParentEntryServesWhatIsBelowIt) {
    Table t = table("bind /srv/data /data\n");
    EXPECT_EQ(explain_path(t, "/data/a/b").resolves_to, "/srv/data/a/b");
    EXPECT_EQ(explain_path(t, "/data/a/b").entry, 1u);
    // Prefixes are compared by component: /database is not below /data.
    EXPECT_FALSE(explain_path(t, "/database").entry);
    EXPECT_FALSE(explain_path(t, "/").entry);
}

TEST(Explain, AnEntryAtTheRoot) {
    Table t = table("bind / /mnt/host\nro /\n");
    auto x = explain_path(t, "/mnt/host/etc");
    EXPECT_EQ(x.entry, 2u);  // ro / is on top of everything
    EXPECT_TRUE(x.read_only);
    EXPECT_EQ(x.resolves_to, "/mnt/host/etc");
    t = table("bind / /mnt/host\n");
    EXPECT_EQ(explain_path(t, "/mnt/host/etc").resolves_to, "/etc");
    EXPECT_EQ(explain_path(t, "/mnt/host").resolves_to, "/");
}

TEST(Explain, HideAboveABind) {
    Table t = table("bind /srv/data /data\nhide /data\n");
    auto x = explain_path(t, "/data/file");
    EXPECT_EQ(x.entry, 2u);
    EXPECT_TRUE(x.hidden);
    EXPECT_FALSE(x.resolves_to);
    EXPECT_EQ(to_json(x, t), (nlohmann::json{{"path", "/data/file"},
                                              {"entry", 2},
                                              {"line", "hide /data"},
                                              {"hidden", true}}));
    // The other way round the bind is on top.
    t = table("hide /data\nbind /srv/data /data\n");
    EXPECT_EQ(explain_path(t, "/data/file").entry, 2u);
    EXPECT_EQ(explain_path(t, "/data/file").resolves_to, "/srv/data/file");
}

TEST(Explain, UnionBeforeSearchesSrcFirst) {
    Table t = table("bind -b /home/alice/bin /usr/bin\n");
    auto x = explain_path(t, "/usr/bin/ls");
    EXPECT_EQ(x.entry, 1u);
    EXPECT_TRUE(x.is_union);
    EXPECT_EQ(x.layers, (Layers{"/home/alice/bin/ls", "/usr/bin/ls"}));
    EXPECT_EQ(x.resolves_to, "/home/alice/bin/ls");
    EXPECT_EQ(to_json(x, t)["union"], true);
}

TEST(Explain, UnionAfterSearchesDstFirst) {
    Table t = table("bind -a /home/alice/bin /usr/bin\n");
    auto x = explain_path(t, "/usr/bin/ls");
    EXPECT_TRUE(x.is_union);
    EXPECT_EQ(x.layers, (Layers{"/usr/bin/ls", "/home/alice/bin/ls"}));
    EXPECT_EQ(x.resolves_to, "/usr/bin/ls");
}

TEST(Explain, ReadOnlyOverABind) {
    Table t = table("bind /srv/data /data\nro /data\n");
    auto x = explain_path(t, "/data/x");
    EXPECT_EQ(x.entry, 2u);
    EXPECT_TRUE(x.read_only);
    EXPECT_EQ(x.resolves_to, "/data/x");
    EXPECT_EQ(to_json(x, t)["line"], "ro /data");
}

TEST(Explain, TmpfsIsPrivate) {
    auto x = explain_path(table("tmpfs /tmp\n"), "/tmp/a");
    EXPECT_TRUE(x.private_tmpfs);
    EXPECT_FALSE(x.resolves_to);
}

TEST(Explain, DenyServesNothingButIsReported) {
    Table t = table("bind /srv/etc /etc\ndeny /etc/shadow\n");
    auto x = explain_path(t, "/etc/shadow");
    EXPECT_EQ(x.entry, 1u);
    EXPECT_EQ(x.denied_by_entry, 2u);
    EXPECT_EQ(x.resolves_to, "/srv/etc/shadow");
    EXPECT_EQ(to_json(x, t)["denied_by_entry"], 2);
    // Only the exact path is denied; without another entry the host's file shows.
    t = table("deny /etc/shadow\n");
    x = explain_path(t, "/etc/shadow");
    EXPECT_FALSE(x.entry);
    EXPECT_EQ(x.denied_by_entry, 1u);
    EXPECT_FALSE(explain_path(t, "/etc/shadow/x").denied_by_entry);
}

TEST(Explain, PathsAreTakenAsTablesStoreThem) {
    // ns.explain refuses a path that is not canonical (validate_path, in the registry) and
    // pnsctl normalizes what it sends, so explain compares stored forms as strings.
    Table t = table("bind /srv/data /data\n");
    for (const char* raw : {"/data//x", "/data/./x", "/data/x/"}) {
        EXPECT_FALSE(validate_path(raw)) << raw;
        auto path = normalize_path(raw);
        ASSERT_TRUE(path) << raw;
        EXPECT_EQ(*path, "/data/x");
        EXPECT_EQ(explain_path(t, *path).resolves_to, "/srv/data/x") << raw;
    }
    EXPECT_FALSE(normalize_path("/data/../etc"));
}

}  // namespace
}  // namespace pns::agent
