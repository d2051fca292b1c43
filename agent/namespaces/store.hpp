// On-disk tables: one file per namespace under <state-dir>/namespaces/, each written
// atomically (temporary file, fsync, rename, fsync of the directory), so a crash at any moment
// leaves every table either as it was or as it became, never torn.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent/namespaces/namespace.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

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
    // temporary files left by an interrupted write are removed. A table without an identity
    // (stored by an older pnsd), or with one another table has too, is given a new one, stored
    // at once.
    Result<Loaded> load_all() const;

    Status save(const Namespace& ns) const;
    Status remove(const std::string& name) const;

    const std::string& directory() const { return dir_path_; }

    // <state-dir>/policies.json: the cgroup-level policies, as one JSON document ("" if none).
    Result<std::string> load_policies() const;
    Status save_policies(std::string_view text) const;

    // The file format, exposed for tests.
    static std::string serialize(const Namespace& ns);
    static Result<Namespace> deserialize(std::string_view text);

  private:
    void identify(Loaded& loaded) const;

    Store(UniqueFd lock, UniqueFd dir, std::string dir_path, UniqueFd state, std::string state_path)
        : lock_(std::move(lock)),
          dir_(std::move(dir)),
          dir_path_(std::move(dir_path)),
          state_(std::move(state)),
          state_path_(std::move(state_path)) {}

    UniqueFd lock_;
    UniqueFd dir_;
    std::string dir_path_;
    UniqueFd state_;  // <state-dir> itself
    std::string state_path_;
};

}  // namespace pns::agent
