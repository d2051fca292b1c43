#include "agent/views/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string_view>

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
    std::string temp = path + ".tmp";
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error("create '" + temp + "'");
    std::string_view rest = text;
    while (!rest.empty()) {
        ssize_t n = ::write(fd.get(), rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("write '" + temp + "'");
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    fd.reset();
    if (::rename(temp.c_str(), path.c_str()) != 0) return sys_error("rename '" + temp + "'");
    return {};
}

}  // namespace pns::agent::detail
