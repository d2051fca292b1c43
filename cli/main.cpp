// pnsctl: the command-line client of pnsd. Every command is one request over pnsd's socket;
// pnsctl itself holds no privilege and decides nothing: pnsd authorizes from SO_PEERCRED.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/client.hpp"
#include "cli/output.hpp"
#include "common/ops.hpp"
#include "common/protocol.hpp"
#include "common/table.hpp"
#include "common/text.hpp"

namespace {

using namespace pns;
using nlohmann::json;
namespace op = protocol::op;

// Exit codes: 0 done, 1 pnsd refused or failed the request (or could not be reached),
// 2 the command line itself is wrong.
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Globals {
    std::string socket = cli::kDefaultSocket;
    bool json_output = false;
};

// `s` with control characters shown as \xNN, so that it stays on one line.
std::string escape_controls(std::string_view s) {
    std::string out;
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c != 0x7f) {
            out += ch;
            continue;
        }
        char buf[5];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
    }
    return out;
}

// A failure before or instead of pnsd's answer: one line on stderr.
int fail(const Globals& globals, const Error& error, int exit_code = kExitFailed) {
    std::fprintf(stderr, "pnsctl: %s\n", error.message.c_str());
    if (globals.json_output) {
        auto code = protocol::code_from_errno(error.code);
        json j = {{"ok", false},
                  {"error",
                   {{"code", static_cast<int>(code)},
                    {"name", protocol::code_name(code)},
                    {"message", error.message}}}};
        std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    }
    return exit_code;
}

using Printer = void (*)(std::FILE*, const json&);

// Sends one request; prints the result with `print` (or as JSON with --json).
int request(const Globals& globals, std::string op, json args, Printer print = nullptr) {
    auto client = cli::Client::connect(globals.socket);
    if (!client) return fail(globals, client.error());
    auto response = client->call(protocol::Request{std::move(op), std::move(args)});
    if (!response) return fail(globals, response.error());
    if (!response->ok())
        return fail(globals, Error{protocol::errno_from_code(response->code), response->message});
    if (globals.json_output) {
        std::printf("%s\n",
                    response->result.dump(2, ' ', false, json::error_handler_t::replace).c_str());
    } else {
        // Success with a caveat the user should know of (a locked namespace without the guard).
        if (auto w = response->result.find("warning"); w != response->result.end() && w->is_string())
            std::fprintf(stderr, "pnsctl: warning: %s\n", w->get<std::string>().c_str());
        if (print) print(stdout, response->result);
    }
    return 0;
}

Result<std::string> current_directory() {
    std::string buf(4096, '\0');
    if (!::getcwd(buf.data(), buf.size())) return sys_error("getcwd");
    buf.resize(std::strlen(buf.c_str()));
    return buf;
}

// SRC may be relative: it is taken against the working directory, as the shell would.
Result<std::string> source_path(const std::string& path) {
    if (!path.empty() && path.front() == '/') return absolutize_path(path, "/");
    auto cwd = current_directory();
    if (!cwd) return Error(std::move(cwd).error());
    return absolutize_path(path, *cwd);
}

// DST names a place in the view, not in the caller's directory: it must be absolute.
Result<std::string> target_path(const std::string& path) {
    if (path.empty() || path.front() != '/')
        return Error::invalid("DST " + quote(path) + " must be an absolute path");
    return absolutize_path(path, "/");
}

// Reads all of `fd`. Every read error counts (a directory, an I/O error): applying what was
// read so far, or nothing, would replace the table with one the user never wrote. Input
// longer than any table pnsd accepts is refused here rather than read without end
// (/dev/zero).
Result<std::string> read_all(int fd, const std::string& what) {
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(errno, "cannot read " + what);
        if (n == 0) return text;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxTableTextBytes)
            return Error{E2BIG, "cannot read " + what + ": larger than " +
                                    std::to_string(kMaxTableTextBytes >> 20) +
                                    " MiB, the largest table pnsd accepts"};
    }
}

Result<std::string> read_table_file(const std::string& path) {
    if (path == "-") return read_all(STDIN_FILENO, "the table from standard input");
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno(errno, "cannot read " + quote(path));
    return read_all(fd.get(), quote(path));
}

// The options of the commands that edit one namespace.
struct EditArgs {
    std::string ns;
    std::optional<std::uint64_t> generation;

    json base() const {
        json args = {{"name", ns}};
        if (generation) args["generation"] = *generation;
        return args;
    }
};

void add_ns_option(CLI::App* cmd, EditArgs& edit) {
    cmd->add_option("--ns", edit.ns, "namespace to change")->required();
    cmd->add_option("--if-generation", edit.generation,
                    "change only if the namespace is still at this generation");
}

int add_entry(const Globals& globals, const EditArgs& edit, const Result<Entry>& entry) {
    if (!entry) return fail(globals, entry.error(), kExitUsage);
    json args = edit.base();
    args["entry"] = protocol::entry_to_json(*entry);
    return request(globals, op::kEntryAdd, std::move(args));
}

Result<Entry> make_entry(EntryKind kind, const std::string& dst) {
    auto target = target_path(dst);
    if (!target) return Error(std::move(target).error());
    Entry entry{kind, UnionMode::kReplace, false, {}, std::move(*target)};
    if (auto st = validate_entry(entry); !st) return st.error();
    return entry;
}

Result<ino_t> own_mount_namespace() {
    struct stat st {};
    if (::stat("/proc/self/ns/mnt", &st) != 0) return sys_error("stat /proc/self/ns/mnt");
    return st.st_ino;
}

// pnsctl run: pnsd makes this very process join the view (it is single-threaded, so it joins
// at once), then it becomes COMMAND by exec: exit status, signals, terminal and job control
// are COMMAND's own.
int run_command(const Globals& globals, const std::string& ns, std::vector<std::string> command) {
    auto before = own_mount_namespace();
    if (!before) return fail(globals, before.error());
    json result;
    {
        auto client = cli::Client::connect(globals.socket);
        if (!client) return fail(globals, client.error());
        auto response = client->call(protocol::Request{op::kProcJoin, {{"name", ns}}});
        if (!response) return fail(globals, response.error());
        if (!response->ok())
            return fail(globals,
                        Error{protocol::errno_from_code(response->code), response->message});
        result = response->result;
    }  // the connection is closed before COMMAND starts
    auto after = own_mount_namespace();
    if (!after) return fail(globals, after.error());
    if (*after == *before && !result.value("already", false))
        return fail(globals, Error{EIO, "pnsd answered, but pnsctl is not in the view of " +
                                            quote(ns) + "; not running " + quote(command[0])});
    if (auto w = result.find("warning"); w != result.end() && w->is_string())
        std::fprintf(stderr, "pnsctl: warning: %s\n", w->get<std::string>().c_str());
    std::vector<char*> argv;
    for (auto& arg : command) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    ::execvp(argv[0], argv.data());
    int err = errno;
    // As a shell says it: 127 when there is no such command, 126 when it cannot run.
    std::fprintf(stderr, "pnsctl: cannot run %s in %s: %s\n", quote(command[0]).c_str(),
                 quote(ns).c_str(), std::strerror(err));
    return err == ENOENT ? 127 : 126;
}

Result<json> pid_argument(const std::string& text) {
    char* end = nullptr;
    errno = 0;
    long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || value <= 0 || value > INT32_MAX)
        return Error::invalid("PID " + quote(text) + " is not a process id");
    return json(value);
}

// The commands: what their options are parsed into (CLI11 writes them as it parses, and
// the callback of the command given then sends its request) and the exit status it returned.
struct Commands {
    Globals globals;
    int status = 0;
    struct {
        std::string name, owner, from;
        bool locked = false;
        bool force = false;
    } ns_args;
    EditArgs edit;
    struct {
        std::string src, dst;
        bool after = false, before = false, create = false;
    } bind_args;
    std::string file, explain_path, ns_name, pid_text, cgroup;
    std::vector<std::string> command;

    void add_all(CLI::App& app) {
        add_status(app);
        add_namespaces(app);
        add_edits(app);
        add_table_commands(app);
        add_processes(app);
        add_policies(app);
        add_events(app);
    }
    void add_status(CLI::App& app);
    void add_namespaces(CLI::App& app);  // ns create|rm|ls|show
    void add_edits(CLI::App& app);           // bind, unbind, hide, ro, tmpfs, deny
    void add_table_commands(CLI::App& app);  // apply, export, explain
    void add_processes(CLI::App& app);   // run, attach, detach, ps
    void add_policies(CLI::App& app);    // policy set|rm|ls
    void add_events(CLI::App& app);
};

void Commands::add_status(CLI::App& app) {
    // status
    app.add_subcommand("status", "show what pnsd is doing")->callback([&] {
        status = request(globals, op::kStatus, json::object(), cli::print_status);
    });
}

void Commands::add_namespaces(CLI::App& app) {
    // ns create|rm|ls|show
    auto* ns = app.add_subcommand("ns", "create, remove, list and show namespaces");
    ns->require_subcommand(1);

    auto* create = ns->add_subcommand("create", "create a namespace (owned by you)");
    create->add_option("NAME", ns_args.name, "[a-z0-9][a-z0-9._-]{0,63}")->required();
    create->add_option("--owner", ns_args.owner, "owner (user name or uid; root only)");
    create->add_flag("--locked", ns_args.locked, "members may not change or leave their view");
    create->add_option("--from", ns_args.from, "initial table in text form ('-' for stdin)");
    create->callback([&] {
        json args = {{"name", ns_args.name}, {"locked", ns_args.locked}};
        if (!ns_args.owner.empty()) args["owner"] = ns_args.owner;
        if (!ns_args.from.empty()) {
            auto text = read_table_file(ns_args.from);
            if (!text) {
                status = fail(globals, text.error());
                return;
            }
            args["table"] = std::move(*text);
        }
        status = request(globals, op::kNsCreate, std::move(args));
    });

    auto* rm = ns->add_subcommand("rm", "remove a namespace and its table");
    rm->add_option("NAME", ns_args.name)->required();
    rm->add_flag("--force", ns_args.force,
                 "root: remove it even with members inside (they keep the view as it is, "
                 "no longer managed)");
    rm->callback([&] {
        status = request(globals, op::kNsRm, {{"name", ns_args.name}, {"force", ns_args.force}},
                         [](std::FILE* out, const json& r) {
                             auto left = r.find("members_left_behind");
                             if (left == r.end() || !left->is_array() || left->empty()) return;
                             std::fprintf(out,
                                          "%zu members keep the view as it was, no longer "
                                          "managed by pnsd:",
                                          left->size());
                             for (const auto& m : *left)
                                 std::fprintf(out, " %s",
                                              m.is_string() ? m.get<std::string>().c_str() : "?");
                             std::fputc('\n', out);
                         });
    });

    ns->add_subcommand("ls", "list namespaces")->callback([&] {
        status = request(globals, op::kNsLs, json::object(), cli::print_namespace_list);
    });

    auto* show = ns->add_subcommand("show", "show a namespace and its entries");
    show->add_option("NAME", ns_args.name)->required();
    show->callback([&] {
        status = request(globals, op::kNsShow, {{"name", ns_args.name}}, cli::print_namespace);
    });
}

void Commands::add_edits(CLI::App& app) {
    // bind [-a|-b] [-c] SRC DST
    auto* bind = app.add_subcommand("bind", "show SRC at DST (-b/-a: a union with DST)");
    add_ns_option(bind, edit);
    auto* after = bind->add_flag("-a,--after", bind_args.after, "union: SRC after what DST holds");
    auto* before =
        bind->add_flag("-b,--before", bind_args.before, "union: SRC before what DST holds");
    after->excludes(before);
    bind->add_flag("-c,--create", bind_args.create, "with -a/-b: new files are created in SRC");
    bind->add_option("SRC", bind_args.src, "file or directory to show")->required();
    bind->add_option("DST", bind_args.dst, "where to show it (absolute)")->required();
    bind->callback([&] {
        auto entry = [&]() -> Result<Entry> {
            auto source = source_path(bind_args.src);
            if (!source) return Error(std::move(source).error());
            auto target = target_path(bind_args.dst);
            if (!target) return Error(std::move(target).error());
            Entry e{EntryKind::kBind,
                    bind_args.before  ? UnionMode::kBefore
                    : bind_args.after ? UnionMode::kAfter
                                      : UnionMode::kReplace,
                    bind_args.create, std::move(*source), std::move(*target)};
            if (auto st = validate_entry(e); !st) return st.error();
            return e;
        }();
        status = add_entry(globals, edit, entry);
    });

    // unbind DST [SRC]
    auto* unbind = app.add_subcommand("unbind", "remove the entries at DST (only SRC's, if given)");
    add_ns_option(unbind, edit);
    unbind->add_option("DST", bind_args.dst)->required();
    unbind->add_option("SRC", bind_args.src);
    unbind->callback([&] {
        auto target = target_path(bind_args.dst);
        if (!target) {
            status = fail(globals, target.error(), kExitUsage);
            return;
        }
        json args = edit.base();
        args["dst"] = *target;
        if (!bind_args.src.empty()) {
            auto source = source_path(bind_args.src);
            if (!source) {
                status = fail(globals, source.error(), kExitUsage);
                return;
            }
            args["src"] = *source;
        }
        status = request(globals, op::kEntryRm, std::move(args));
    });

    // hide|ro|tmpfs DST
    struct Simple {
        const char* name;
        const char* help;
        EntryKind kind;
    };
    for (const Simple& simple :
         {Simple{"hide", "make DST appear empty", EntryKind::kHide},
          Simple{"ro", "make DST read-only", EntryKind::kReadOnly},
          Simple{"tmpfs", "a private scratch directory at DST", EntryKind::kTmpfs},
          Simple{"deny", "members may not open or run the file at DST (needs the LSM guard)",
                 EntryKind::kDeny}}) {
        auto* cmd = app.add_subcommand(simple.name, simple.help);
        add_ns_option(cmd, edit);
        cmd->add_option("DST", bind_args.dst)->required();
        cmd->callback([&, kind = simple.kind] {
            status = add_entry(globals, edit, make_entry(kind, bind_args.dst));
        });
    }

}

void Commands::add_table_commands(CLI::App& app) {
    // apply FILE, export
    auto* apply = app.add_subcommand("apply", "replace the table with FILE's, atomically");
    add_ns_option(apply, edit);
    apply->add_option("FILE", file, "table in text form ('-' for stdin)")->required();
    apply->callback([&] {
        auto text = read_table_file(file);
        if (!text) {
            status = fail(globals, text.error());
            return;
        }
        json args = edit.base();
        args["table"] = std::move(*text);
        status = request(globals, op::kNsApply, std::move(args));
    });

    auto* export_cmd = app.add_subcommand("export", "print the table in text form");
    export_cmd->add_option("--ns", edit.ns, "namespace to print")->required();
    export_cmd->callback([&] {
        status =
            request(globals, op::kNsExport, {{"name", edit.ns}}, [](std::FILE* out, const json& r) {
                std::fputs(r.value("table", std::string()).c_str(), out);
            });
    });

    // explain PATH
    auto* explain = app.add_subcommand("explain", "which entry serves PATH in the view");
    explain->add_option("--ns", edit.ns, "namespace to look in")->required();
    explain->add_option("PATH", explain_path, "absolute path in the view")->required();
    explain->callback([&] {
        auto path = target_path(explain_path);
        if (!path) {
            status = fail(globals, path.error(), kExitUsage);
            return;
        }
        status = request(globals, op::kNsExplain, {{"name", edit.ns}, {"path", *path}},
                         cli::print_explanation);
    });
}

void Commands::add_processes(CLI::App& app) {
    // run --ns NAME -- COMMAND [ARGS...]
    auto* run = app.add_subcommand("run", "run COMMAND in a namespace's view");
    run->add_option("--ns", ns_name, "namespace whose view COMMAND runs in")->required();
    run->add_option("COMMAND", command, "the command and its arguments (after '--')")->required();
    run->callback([&] { status = run_command(globals, ns_name, command); });

    // attach [--ns NAME] PID, detach PID
    auto* attach = app.add_subcommand("attach", "move a running process into a namespace's view");
    attach->add_option("--ns", ns_name, "namespace (default: the one pnsctl runs in)");
    attach->add_option("PID", pid_text, "the process")->required();
    attach->callback([&] {
        auto pid = pid_argument(pid_text);
        if (!pid) {
            status = fail(globals, pid.error(), kExitUsage);
            return;
        }
        json args = {{"pid", *pid}};
        if (!ns_name.empty()) args["name"] = ns_name;
        status = request(globals, op::kProcJoin, std::move(args), cli::print_join);
    });
    auto* detach = app.add_subcommand("detach", "move a root process back to the host's view");
    detach->add_option("PID", pid_text, "the process")->required();
    detach->callback([&] {
        auto pid = pid_argument(pid_text);
        if (!pid) {
            status = fail(globals, pid.error(), kExitUsage);
            return;
        }
        status = request(globals, op::kProcDetach, {{"pid", *pid}}, cli::print_join);
    });

    // ps [--ns NAME]
    auto* ps = app.add_subcommand("ps", "list the processes in views, and those pnsd supervises");
    ps->add_option("--ns", ns_name, "only this namespace's");
    ps->callback([&] {
        json args = json::object();
        if (!ns_name.empty()) args["name"] = ns_name;
        status = request(globals, op::kProcLs, std::move(args), cli::print_processes);
    });
}

void Commands::add_policies(CLI::App& app) {
    // policy set|rm|ls
    auto* policy =
        app.add_subcommand("policy", "cgroup-level policy: a cgroup's processes join a namespace");
    policy->require_subcommand(1);
    auto* policy_set =
        policy->add_subcommand("set", "every process in CGROUP (and below) joins NAME");
    policy_set
        ->add_option("--cgroup", cgroup, "cgroup path, relative to the cgroup2 mount or absolute")
        ->required();
    policy_set->add_option("--ns", ns_name, "namespace")->required();
    policy_set->callback([&] {
        status = request(globals, op::kPolicySet, {{"cgroup", cgroup}, {"name", ns_name}});
    });
    auto* policy_rm = policy->add_subcommand("rm", "remove the policy of CGROUP");
    policy_rm->add_option("--cgroup", cgroup, "cgroup path")->required();
    policy_rm->callback([&] { status = request(globals, op::kPolicyRm, {{"cgroup", cgroup}}); });
    policy->add_subcommand("ls", "list the policies")->callback([&] {
        status = request(globals, op::kPolicyLs, json::object(), [](std::FILE* out, const json& r) {
            std::fprintf(out, "%-40s  %s\n", "CGROUP", "NAMESPACE");
            for (const auto& p : r.value("policies", json::array()))
                std::fprintf(out, "%-40s  %s\n", p.value("cgroup", std::string()).c_str(),
                             p.value("name", std::string()).c_str());
        });
    });
}

void Commands::add_events(CLI::App& app) {
    // events
    app.add_subcommand("events", "print joins, holds, exits and escapes as they happen")
        ->callback([&] {
            auto client = cli::Client::connect(globals.socket);
            if (!client) {
                status = fail(globals, client.error());
                return;
            }
            if (auto st = client->send(protocol::Request{op::kProcEvents, json::object()}); !st) {
                status = fail(globals, st.error());
                return;
            }
            for (bool first = true;; first = false) {
                auto response = client->next(std::chrono::milliseconds(-1));
                if (!response) {
                    status = fail(globals, response.error());
                    return;
                }
                if (!response->ok()) {
                    status = fail(globals, Error{protocol::errno_from_code(response->code),
                                                 response->message});
                    return;
                }
                if (first) continue;  // {"watching": true}
                if (globals.json_output)
                    std::printf("%s\n", response->result
                                            .dump(-1, ' ', false, json::error_handler_t::replace)
                                            .c_str());
                else
                    cli::print_event(stdout, response->result);
                std::fflush(stdout);
            }
        });
}

}  // namespace

int main(int argc, char** argv) {
    Commands commands;
    CLI::App app{"pnsctl: edit pns namespaces and move processes into them"};
    app.require_subcommand(1);
    app.fallthrough();  // --json and --socket also after the subcommand
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
        // CLI11 repeats the user's words verbatim; a newline among them must not make this
        // two lines.
        return "pnsctl: " + escape_controls(e.what()) + " (see 'pnsctl --help')\n";
    });
    app.add_flag("--json", commands.globals.json_output, "print results as JSON");
    app.add_option("--socket", commands.globals.socket, "pnsd's socket")
        ->envname("PNS_SOCKET")
        ->capture_default_str();
    app.set_version_flag("--version", PNS_VERSION);

    commands.add_all(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // CLI11 checks for a missing subcommand before it complains about words it did not
        // expect, so "pnsctl frob" would be told "A subcommand is required": name the word.
        if (dynamic_cast<const CLI::RequiredError*>(&e) &&
            std::string_view(e.what()).starts_with("A subcommand")) {
            auto unexpected = app.remaining(true);
            if (!unexpected.empty()) {
                std::fprintf(stderr, "pnsctl: unknown command %s (see 'pnsctl --help')\n",
                             quote(unexpected.front()).c_str());
                return kExitUsage;
            }
        }
        int code = app.exit(e);
        return code == 0 ? 0 : kExitUsage;
    }
    return commands.status;
}
