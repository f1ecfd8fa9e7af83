#include "common/error.h"

#include <cstring>

namespace berth {

Error SystemError(std::string code, const std::string& what, int errno_value) {
  return Error(std::move(code), what + ": " + std::strerror(errno_value));
}

}  // namespace berth
