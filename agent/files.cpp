#include "agent/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "common/unique_fd.hpp"

namespace pns::agent {

Status write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("write");
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

std::string temporary_name_of(std::string_view file) {
    std::string_view stem = file;
    if (stem.ends_with(".json")) stem.remove_suffix(5);
    return "." + std::string(stem) + ".tmp";
}

Status write_file_atomically(int dirfd, const std::string& dir_path, const std::string& file,
                             std::string_view content) {
    std::string temp = temporary_name_of(file);
    std::string context = "save '" + dir_path + "/" + file + "'";
    // Made anew, never opened: whatever is at the temporary name (a leftover of a crash, or a
    // link planted there) goes first, and O_EXCL|O_NOFOLLOW writes through nothing else.
    if (::unlinkat(dirfd, temp.c_str(), 0) != 0 && errno != ENOENT)
        return sys_error(context + ": remove the old temporary file");
    UniqueFd fd(
        ::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error(context + ": create temporary file");
    auto fail = [&](Error error) {
        ::unlinkat(dirfd, temp.c_str(), 0);
        return Error{error.code, context + ": " + error.message};
    };
    if (auto st = write_all(fd.get(), content); !st) return fail(st.error());
    if (::fsync(fd.get()) != 0) return fail(sys_error("fsync"));
    fd.reset();
    if (::renameat(dirfd, temp.c_str(), dirfd, file.c_str()) != 0) return fail(sys_error("rename"));
    // The rename is durable only once the directory is.
    if (::fsync(dirfd) != 0) return sys_error(context + ": fsync directory");
    return {};
}

}  // namespace pns::agent
