// On-disk tables: one file per namespace under <state-dir>/namespaces/, each written
// atomically (temporary file, fsync, rename, fsync of the directory), so a crash at any moment
// leaves every table either as it was or as it became, never torn.
#pragma once

#include <string>
#include <vector>

#include "agent/namespace.hpp"
#include "pns/result.hpp"
#include "pns/unique_fd.hpp"

namespace pns::agent {

class Store {
  public:
    // Creates <state_dir> (0700) and its namespaces/ directory if missing, and takes an
    // exclusive lock on it so two pnsd never write the same tables.
    static Result<Store> open(const std::string& state_dir);

    struct Loaded {
        std::vector<Namespace> namespaces;
        std::vector<std::string> skipped;  // one line per file that was not loaded, and why
    };
    // Reads every table. A corrupt or foreign file is reported in `skipped`, never fatal;
    // temporary files left by an interrupted write are removed.
    Result<Loaded> load_all() const;

    Status save(const Namespace& ns) const;
    Status remove(const std::string& name) const;

    const std::string& directory() const { return dir_path_; }

    // The file format, exposed for tests.
    static std::string serialize(const Namespace& ns);
    static Result<Namespace> deserialize(std::string_view text);

  private:
    Store(UniqueFd lock, UniqueFd dir, std::string dir_path)
        : lock_(std::move(lock)), dir_(std::move(dir)), dir_path_(std::move(dir_path)) {}

    UniqueFd lock_;
    UniqueFd dir_;
    std::string dir_path_;
};

}  // namespace pns::agent
