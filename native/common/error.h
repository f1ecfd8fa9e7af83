// Errors that cross into JavaScript carry a stable code (for programs) and a message that
// says what went wrong and how to fix it (for people).
#pragma once

#include <stdexcept>
#include <string>

namespace berth {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

// Error for a failed system call: appends strerror(errno_value) to the message.
Error SystemError(std::string code, const std::string& what, int errno_value);

}  // namespace berth
