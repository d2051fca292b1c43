#include "agent/views/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string_view>

#include "agent/files.hpp"
#include "common/unique_fd.hpp"

namespace pns::agent::detail {

Status make_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return sys_error("create directory '" + path + "'");
    return {};
}

Result<std::string> read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error::from_errno(errno ? errno : ENOENT, "read '" + path + "'");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

Status write_text(const std::string& path, const std::string& text) {
    auto slash = path.rfind('/');
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    UniqueFd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd) return sys_error("open directory '" + dir + "'");
    return write_file_atomically(dirfd.get(), dir, path.substr(slash + 1), text);
}

}  // namespace pns::agent::detail
