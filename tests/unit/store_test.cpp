// The on-disk store: file format, atomic saves, locking, and loading what a crash or a stranger
// left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/namespaces/store.hpp"
#include "test_util.hpp"

namespace pns::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::Contains;
using test::FailsWith;
using test::Succeeds;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
  public:
    TempDir() {
        std::string tmpl = "/tmp/pns-unit-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

void write_file(const std::string& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    ASSERT_TRUE(out.good()) << path;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
}

Entry bind(std::string src, std::string dst, UnionMode mode = UnionMode::kReplace,
           bool create = false) {
    return Entry{EntryKind::kBind, mode, create, std::move(src), std::move(dst)};
}
Entry just(EntryKind kind, std::string dst) {
    return Entry{kind, UnionMode::kReplace, false, {}, std::move(dst)};
}

Namespace sample(std::string name = "dev", uid_t owner = 1000) {
    Namespace ns;
    ns.name = std::move(name);
    ns.owner = owner;
    ns.locked = false;
    ns.generation = 3;
    ns.table.entries = {
        just(EntryKind::kHide, "/dev"),
        bind("/dev/null", "/dev/null"),
        bind("/home/u/alt bin", "/usr/bin", UnionMode::kBefore, true),
        bind("/opt/\"q\"\\", "/srv", UnionMode::kAfter),
        just(EntryKind::kReadOnly, "/"),
        just(EntryKind::kTmpfs, "/tmp/caf\xc3\xa9"),
    };
    return ns;
}

void expect_same(const Namespace& a, const Namespace& b) {
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.owner, b.owner);
    EXPECT_EQ(a.locked, b.locked);
    EXPECT_EQ(a.generation, b.generation);
    EXPECT_EQ(a.table, b.table);
}

std::vector<Namespace> sorted(std::vector<Namespace> v) {
    std::sort(v.begin(), v.end(),
              [](const Namespace& a, const Namespace& b) { return a.name < b.name; });
    return v;
}

// ---------------------------------------------------------------- file format

TEST(StoreFormat, RoundTrip) {
    Namespace ns = sample();
    auto back = Store::deserialize(Store::serialize(ns));
    ASSERT_TRUE(Succeeds(back));
    expect_same(*back, ns);

    Namespace edge;
    edge.name = std::string(kMaxNameLength, 'z');
    edge.owner = 4294967294u;  // the largest valid uid
    edge.locked = true;
    edge.generation = UINT64_MAX;
    back = Store::deserialize(Store::serialize(edge));
    ASSERT_TRUE(Succeeds(back));
    expect_same(*back, edge);
    EXPECT_TRUE(back->table.entries.empty());

    Namespace root = sample("0.root_-x", 0);
    back = Store::deserialize(Store::serialize(root));
    ASSERT_TRUE(Succeeds(back));
    expect_same(*back, root);
}

TEST(StoreFormat, IsVersionedJson) {
    std::string text = Store::serialize(sample());
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    json j = json::parse(text);
    EXPECT_EQ(j["format"], "pns-namespace");
    EXPECT_EQ(j["version"], 1);
    EXPECT_EQ(j["name"], "dev");
    EXPECT_EQ(j["owner"], 1000);
    EXPECT_EQ(j["locked"], false);
    EXPECT_EQ(j["generation"], 3);
    ASSERT_TRUE(j["entries"].is_array());
    EXPECT_EQ(j["entries"].size(), 6u);
    EXPECT_EQ(j["entries"][2], json::parse(R"({"verb":"bind","union":"before","create":true,
                              "src":"/home/u/alt bin","dst":"/usr/bin"})"));
}

TEST(StoreFormat, IdentityRoundTrip) {
    Namespace ns = sample();
    auto id = NamespaceId::random();
    ASSERT_TRUE(Succeeds(id));
    ns.id = *id;
    json j = json::parse(Store::serialize(ns));
    EXPECT_EQ(j["id"], id->hex());
    auto back = Store::deserialize(Store::serialize(ns));
    ASSERT_TRUE(Succeeds(back));
    EXPECT_EQ(back->id, *id);
    // Stored before namespaces had identities: none, for load_all to give.
    j.erase("id");
    back = Store::deserialize(j.dump());
    ASSERT_TRUE(Succeeds(back));
    EXPECT_TRUE(back->id.empty());
    for (json bad : {json(42), json("xyz"), json(std::string(32, '0')), json(std::string(31, 'a')),
                     json(std::string(32, 'A'))}) {
        j["id"] = bad;
        EXPECT_TRUE(FailsWith(Store::deserialize(j.dump()), EINVAL, "malformed id")) << bad;
    }
}

TEST(NamespaceIdentity, HexParseRandom) {
    NamespaceId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
    EXPECT_EQ(id.hex(), "0123456789abcdeffedcba9876543210");
    EXPECT_EQ(NamespaceId::parse(id.hex()), id);
    EXPECT_EQ(NamespaceId::parse(std::string(32, '0')), std::nullopt);
    EXPECT_EQ(NamespaceId::parse("0123456789abcdeffedcba987654321"), std::nullopt);
    EXPECT_EQ(NamespaceId::parse("0123456789abcdeffedcba987654321g"), std::nullopt);
    auto a = NamespaceId::random();
    auto b = NamespaceId::random();
    ASSERT_TRUE(Succeeds(a));
    ASSERT_TRUE(Succeeds(b));
    EXPECT_FALSE(a->empty());
    EXPECT_NE(*a, *b);
}

TEST(StoreFormat, RoundTripManyEntries) {
    Namespace ns = sample("big");
    ns.table.entries.clear();
    for (int i = 0; i < 10000; ++i)
        ns.table.entries.push_back(just(EntryKind::kHide, "/h/" + std::to_string(i)));
    auto back = Store::deserialize(Store::serialize(ns));
    ASSERT_TRUE(Succeeds(back));
    expect_same(*back, ns);
}

// Serializes sample() with one change made to its JSON.
template <typename Edit>
std::string edited(Edit edit) {
    json j = json::parse(Store::serialize(sample()));
    edit(j);
    return j.dump();
}

TEST(StoreFormat, RejectsForeignContent) {
    for (std::string text :
         {"", "garbage", "[]", "1", "null", "\"pns-namespace\"", "{}", R"({"name":"dev"})"}) {
        EXPECT_TRUE(FailsWith(Store::deserialize(text), EINVAL)) << text;
    }
    EXPECT_TRUE(FailsWith(Store::deserialize(edited([](json& j) { j["format"] = "other"; })),
                          EINVAL, "not a pns namespace file"));
    EXPECT_TRUE(FailsWith(Store::deserialize(edited([](json& j) { j.erase("format"); })), EINVAL,
                          "not a pns namespace file"));
    EXPECT_TRUE(FailsWith(Store::deserialize(edited([](json& j) { j["format"] = 1; })), EINVAL,
                          "not a pns namespace file"));
}

TEST(StoreFormat, RejectsOtherVersions) {
    for (json v : {json(2), json(0), json(-1), json("1"), json(nullptr), json(true), json(1.5)}) {
        EXPECT_TRUE(FailsWith(Store::deserialize(edited([&](json& j) { j["version"] = v; })),
                              EINVAL, "unknown format version"))
            << v;
    }
    EXPECT_TRUE(FailsWith(Store::deserialize(edited([](json& j) { j.erase("version"); })), EINVAL,
                          "unknown format version"));
}

TEST(StoreFormat, RejectsBadFields) {
    struct Case {
        const char* what;
        void (*edit)(json&);
        const char* needle;
    };
    for (const auto& c : std::initializer_list<Case>{
             {"no name", [](json& j) { j.erase("name"); }, "malformed"},
             {"name not string", [](json& j) { j["name"] = 7; }, "malformed"},
             {"bad name", [](json& j) { j["name"] = "Dev"; }, "namespace name"},
             {"path name", [](json& j) { j["name"] = "../x"; }, "namespace name"},
             {"empty name", [](json& j) { j["name"] = ""; }, "empty"},
             {"long name", [](json& j) { j["name"] = std::string(65, 'a'); }, "longer"},
             {"no owner", [](json& j) { j.erase("owner"); }, "malformed"},
             {"owner negative", [](json& j) { j["owner"] = -1; }, "malformed"},
             {"owner -1 as uid", [](json& j) { j["owner"] = 4294967295u; }, "malformed"},
             {"owner past 32 bits", [](json& j) { j["owner"] = 4294967296u; }, "malformed"},
             {"owner huge", [](json& j) { j["owner"] = UINT64_MAX; }, "malformed"},
             {"owner float", [](json& j) { j["owner"] = 1000.0; }, "malformed"},
             {"owner string", [](json& j) { j["owner"] = "1000"; }, "malformed"},
             {"no locked", [](json& j) { j.erase("locked"); }, "malformed"},
             {"locked int", [](json& j) { j["locked"] = 0; }, "malformed"},
             {"no generation", [](json& j) { j.erase("generation"); }, "malformed"},
             {"generation negative", [](json& j) { j["generation"] = -1; }, "malformed"},
             {"generation string", [](json& j) { j["generation"] = "3"; }, "malformed"},
             {"no entries", [](json& j) { j.erase("entries"); }, "malformed"},
             {"entries object", [](json& j) { j["entries"] = json::object(); }, "malformed"},
             {"entry not object", [](json& j) { j["entries"][0] = "hide /dev"; }, "entry 1: "},
             {"unknown verb", [](json& j) { j["entries"][1]["verb"] = "mount"; },
              "entry 2: unknown verb"},
             {"bad union", [](json& j) { j["entries"][2]["union"] = "middle"; },
              "entry 3: unknown union mode"},
             {"path not normalized", [](json& j) { j["entries"][3]["dst"] = "/srv/"; },
              "entry 4: path '/srv/' is not normalized"},
             {"dot dot", [](json& j) { j["entries"][3]["src"] = "/a/../b"; }, "entry 4: "},
             {"relative", [](json& j) { j["entries"][0]["dst"] = "dev"; }, "not absolute"},
             {"hide root", [](json& j) { j["entries"][0]["dst"] = "/"; }, "hide of '/'"},
             {"src on hide", [](json& j) { j["entries"][0]["src"] = "/x"; }, "takes no source"},
             {"duplicate", [](json& j) { j["entries"].push_back(j["entries"][1]); },
              "repeats entry 2"},
         }) {
        EXPECT_TRUE(FailsWith(Store::deserialize(edited(c.edit)), EINVAL, c.needle)) << c.what;
    }
}

TEST(StoreFormat, RejectsTooManyEntries) {
    json j = json::parse(Store::serialize(sample()));
    j["entries"] = json::array();
    for (std::size_t i = 0; i < kMaxEntries; ++i)
        j["entries"].push_back({{"verb", "hide"}, {"dst", "/" + std::to_string(i)}});
    auto ok = Store::deserialize(j.dump());
    ASSERT_TRUE(Succeeds(ok));
    EXPECT_EQ(ok->table.entries.size(), kMaxEntries);
    j["entries"].push_back({{"verb", "hide"}, {"dst", "/one-more"}});
    EXPECT_TRUE(FailsWith(Store::deserialize(j.dump()), EINVAL, "at most 65536"));
}

TEST(StoreFormat, RejectsEveryTruncation) {
    std::string text = Store::serialize(sample());
    // Cutting off only the final newline leaves a complete document; every shorter cut is torn.
    for (std::size_t n = 0; n + 1 < text.size(); ++n) {
        auto r = Store::deserialize(std::string_view(text).substr(0, n));
        EXPECT_FALSE(r.ok()) << "accepted the first " << n << " bytes";
    }
    EXPECT_TRUE(Succeeds(Store::deserialize(std::string_view(text).substr(0, text.size() - 1))));
}

TEST(StoreFormat, RejectsTrailingGarbage) {
    std::string text = Store::serialize(sample());
    EXPECT_FALSE(Store::deserialize(text + "x").ok());
    EXPECT_FALSE(Store::deserialize(text + text).ok());
}

// ---------------------------------------------------------------- the store on disk

TEST(Store, OpenCreatesPrivateDirectories) {
    TempDir tmp;
    std::string state = tmp.path() + "/state";
    auto store = Store::open(state);
    ASSERT_TRUE(Succeeds(store));
    EXPECT_EQ(store->directory(), state + "/namespaces");
    for (const auto& dir : {state, state + "/namespaces"}) {
        struct stat st {};
        ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
        EXPECT_TRUE(S_ISDIR(st.st_mode)) << dir;
        EXPECT_EQ(st.st_mode & 07777, 0700u) << dir;
    }
    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    EXPECT_TRUE(loaded->namespaces.empty());
    EXPECT_TRUE(loaded->skipped.empty());
}

TEST(Store, OpenFailures) {
    TempDir tmp;
    EXPECT_TRUE(FailsWith(Store::open(tmp.path() + "/missing/state"), ENOENT));
    write_file(tmp.path() + "/file", "x");
    EXPECT_TRUE(FailsWith(Store::open(tmp.path() + "/file"), ENOTDIR));
    ASSERT_EQ(::mkdir((tmp.path() + "/s").c_str(), 0700), 0);
    write_file(tmp.path() + "/s/namespaces", "not a directory");
    EXPECT_TRUE(FailsWith(Store::open(tmp.path() + "/s"), ENOTDIR));
}

TEST(Store, SecondOpenIsBusyWhileTheFirstLives) {
    TempDir tmp;
    {
        auto first = Store::open(tmp.path());
        ASSERT_TRUE(Succeeds(first));
        auto second = Store::open(tmp.path());
        EXPECT_TRUE(FailsWith(second, EBUSY, "in use by another pnsd"));
        // Moving the store keeps the lock.
        Store moved = std::move(*first);
        EXPECT_TRUE(FailsWith(Store::open(tmp.path()), EBUSY));
        EXPECT_TRUE(Succeeds(moved.load_all()));
    }
    auto again = Store::open(tmp.path());
    EXPECT_TRUE(Succeeds(again));
}

TEST(Store, SaveLoadRemove) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    std::vector<Namespace> saved = {sample("dev"), sample("web", 0), sample("a.b_c-d", 1001)};
    saved[1].locked = true;
    saved[2].table.entries.clear();
    for (const auto& ns : saved) ASSERT_TRUE(Succeeds(store->save(ns))) << ns.name;

    EXPECT_EQ(list_dir(store->directory()),
              (std::vector<std::string>{"a.b_c-d.json", "dev.json", "web.json"}));
    struct stat st {};
    ASSERT_EQ(::stat((store->directory() + "/dev.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    // The file holds exactly the serialized form.
    EXPECT_EQ(read_file(store->directory() + "/web.json"), Store::serialize(saved[1]));

    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    EXPECT_TRUE(loaded->skipped.empty());
    auto got = sorted(loaded->namespaces);
    auto want = sorted(saved);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) expect_same(got[i], want[i]);

    // A save replaces the previous version.
    saved[0].generation = 4;
    saved[0].table.entries.pop_back();
    ASSERT_TRUE(Succeeds(store->save(saved[0])));
    loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    got = sorted(loaded->namespaces);
    ASSERT_EQ(got.size(), 3u);
    expect_same(got[1], saved[0]);

    ASSERT_TRUE(Succeeds(store->remove("web")));
    EXPECT_TRUE(Succeeds(store->remove("web")));    // removing twice is fine
    EXPECT_TRUE(Succeeds(store->remove("never")));  // so is removing what never was
    EXPECT_EQ(list_dir(store->directory()), (std::vector<std::string>{"a.b_c-d.json", "dev.json"}));
    loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    got = sorted(loaded->namespaces);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].name, "a.b_c-d");
    EXPECT_EQ(got[1].name, "dev");
}

TEST(Store, TablesWithoutIdentityAreGivenOneAndItIsStored) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    ASSERT_TRUE(Succeeds(store->save(sample("old"))));  // as an older pnsd wrote it: no id
    EXPECT_FALSE(json::parse(read_file(store->directory() + "/old.json")).contains("id"));
    auto first = store->load_all();
    ASSERT_TRUE(Succeeds(first));
    ASSERT_EQ(first->namespaces.size(), 1u);
    EXPECT_TRUE(first->skipped.empty());
    const NamespaceId given = first->namespaces[0].id;
    EXPECT_FALSE(given.empty());
    EXPECT_EQ(json::parse(read_file(store->directory() + "/old.json"))["id"], given.hex());
    auto again = store->load_all();
    ASSERT_TRUE(Succeeds(again));
    ASSERT_EQ(again->namespaces.size(), 1u);
    EXPECT_EQ(again->namespaces[0].id, given);  // for good, not drawn anew at each start
    expect_same(again->namespaces[0], sample("old"));
}

TEST(Store, TwoTablesNeverShareAnIdentity) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    auto id = NamespaceId::random();
    ASSERT_TRUE(Succeeds(id));
    Namespace a = sample("a"), b = sample("b");
    a.id = b.id = *id;  // a file copied by hand, say
    ASSERT_TRUE(Succeeds(store->save(a)));
    ASSERT_TRUE(Succeeds(store->save(b)));
    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    auto got = sorted(loaded->namespaces);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].id, *id);  // the first by name keeps it
    EXPECT_NE(got[1].id, *id);
    EXPECT_FALSE(got[1].id.empty());
    EXPECT_EQ(json::parse(read_file(store->directory() + "/b.json"))["id"], got[1].id.hex());
}

TEST(Store, TablesSurviveReopening) {
    TempDir tmp;
    {
        auto store = Store::open(tmp.path());
        ASSERT_TRUE(Succeeds(store));
        ASSERT_TRUE(Succeeds(store->save(sample("dev"))));
    }
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    ASSERT_EQ(loaded->namespaces.size(), 1u);
    expect_same(loaded->namespaces[0], sample("dev"));
}

TEST(Store, LoadAllSkipsWhatItCannotTrust) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    const std::string dir = store->directory();
    ASSERT_TRUE(Succeeds(store->save(sample("good"))));

    std::string full = Store::serialize(sample("torn"));
    write_file(dir + "/torn.json", full.substr(0, full.size() / 2));  // a torn write
    write_file(dir + "/corrupt.json", "this is not json\n");
    write_file(dir + "/empty.json", "");
    write_file(dir + "/foreign.json", R"({"format":"something-else","version":1})");
    write_file(dir + "/newer.json", edited([](json& j) {
                   j["name"] = "newer";
                   j["version"] = 2;
               }));
    write_file(dir + "/mine.json", Store::serialize(sample("other")));  // name does not match
    write_file(dir + "/Upper.json", Store::serialize(sample("upper")));
    write_file(dir + "/README", "notes\n");
    write_file(dir + "/good.json.bak", Store::serialize(sample("good")));
    ASSERT_EQ(::mkdir((dir + "/dir.json").c_str(), 0700), 0);
    ASSERT_EQ(::symlink((dir + "/good.json").c_str(), (dir + "/link.json").c_str()), 0);
    ASSERT_EQ(::mkfifo((dir + "/fifo.json").c_str(), 0600), 0);
    // Leftovers of interrupted saves.
    write_file(dir + "/.good.tmp", "half a tab");
    write_file(dir + "/.gone.tmp", Store::serialize(sample("gone")));

    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    ASSERT_EQ(loaded->namespaces.size(), 1u);
    expect_same(loaded->namespaces[0], sample("good"));

    auto skipped_line = [&](const std::string& file) -> std::string {
        std::string found;
        for (const auto& line : loaded->skipped) {
            if (line.find("/" + file + "'") != std::string::npos) {
                EXPECT_TRUE(found.empty()) << file << " reported twice";
                found = line;
            }
        }
        return found;
    };
    struct Want {
        std::string file, why;
    };
    std::vector<Want> wants = {
        {"torn.json", "not a JSON object"},
        {"corrupt.json", "not a JSON object"},
        {"empty.json", "not a JSON object"},
        {"foreign.json", "not a pns namespace file"},
        {"newer.json", "unknown format version"},
        {"mine.json", "holds namespace 'other'"},
        {"Upper.json", "holds namespace 'upper'"},
        {"README", "not a namespace file"},
        {"good.json.bak", "not a namespace file"},
        {"dir.json", "not a regular file"},
        {"link.json", ""},
        {"fifo.json", "not a regular file"},
    };
    for (const auto& w : wants) {
        std::string line = skipped_line(w.file);
        EXPECT_FALSE(line.empty()) << w.file << " was not reported";
        EXPECT_TRUE(Contains(line, dir)) << line;
        if (!w.why.empty()) {
            EXPECT_TRUE(Contains(line, w.why)) << w.file;
        }
    }
    EXPECT_EQ(loaded->skipped.size(), wants.size());
    for (const auto& line : loaded->skipped) EXPECT_EQ(line.find(".tmp"), std::string::npos);

    // The temporaries are gone; nothing else was touched.
    auto files = list_dir(dir);
    EXPECT_EQ(std::count(files.begin(), files.end(), ".good.tmp"), 0);
    EXPECT_EQ(std::count(files.begin(), files.end(), ".gone.tmp"), 0);
    EXPECT_EQ(files.size(), 1 + wants.size());
    EXPECT_EQ(read_file(dir + "/torn.json"), full.substr(0, full.size() / 2));
}

TEST(Store, LoadAllSurvivesFilesThatCannotBeOpened) {
    // Only files whose open fails, so nothing after them resets errno by chance: the end of
    // the directory must not be mistaken for a read error.
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    const std::string dir = store->directory();
    ASSERT_EQ(::symlink("/nonexistent", (dir + "/dangling.json").c_str()), 0);
    write_file(tmp.path() + "/elsewhere.json", Store::serialize(sample("loop")));
    ASSERT_EQ(::symlink((tmp.path() + "/elsewhere.json").c_str(), (dir + "/loop.json").c_str()), 0);
    auto loaded = store->load_all();
    ASSERT_TRUE(Succeeds(loaded));
    EXPECT_TRUE(loaded->namespaces.empty()) << "a symlink was followed";
    EXPECT_EQ(loaded->skipped.size(), 2u);
}

TEST(Store, SaveLeavesNoTemporary) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    // A stale temporary from a crash is simply overwritten.
    write_file(store->directory() + "/.dev.tmp", "stale");
    ASSERT_TRUE(Succeeds(store->save(sample("dev"))));
    EXPECT_EQ(list_dir(store->directory()), std::vector<std::string>{"dev.json"});
}

TEST(Store, SaveFailsCleanlyWhenTheDirectoryIsGone) {
    TempDir tmp;
    auto store = Store::open(tmp.path());
    ASSERT_TRUE(Succeeds(store));
    fs::remove_all(store->directory());
    auto st = store->save(sample("dev"));
    EXPECT_FALSE(st.ok());
    if (!st) {
        EXPECT_TRUE(Contains(st.error().message, "dev.json"));
    }
}

}  // namespace
}  // namespace pns::agent
