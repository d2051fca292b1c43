// Errors as values: a Result<T> holds either a T or an Error carrying an errno-style code and
// the context in which it happened. Library code returns these and does not log; the caller
// that handles the error logs it once.
//
// std::expected would do, but libstdc++ 12 only offers it to compilers with C++20 concepts in
// full, which clang 14 (our BPF and fuzzing compiler) lacks. This is the small subset we use.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace pns {

struct Error {
    int code = 0;         // errno value (EINVAL, EACCES, ...), never 0 for a real error
    std::string message;  // what was being done, and why it failed, in one line

    // "context: strerror(code)" for failures of system calls.
    static Error from_errno(int err, std::string_view context) {
        return Error{err, std::string(context) + ": " + std::strerror(err)};
    }
    static Error invalid(std::string message) { return Error{EINVAL, std::move(message)}; }
};

// Error with errno captured at the call site: return sys_error("open '" + path + "'").
inline Error sys_error(std::string_view context) {
    return Error::from_errno(errno, context);
}

template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { return std::get<1>(v_); }
    Error&& error() && { return std::get<1>(std::move(v_)); }

  private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const& { return error_; }
    Error&& error() && { return std::move(error_); }

  private:
    Error error_;
    bool ok_ = true;
};

using Status = Result<void>;

}  // namespace pns
