// A listening Unix stream socket at a path, mode 0600 (whoever may open it may control or
// watch the VM), replacing whatever file was there.
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace berth {

// `what` names the socket in errors ("the control socket"). Throws START_FAILED naming the
// path when the socket cannot be made.
UniqueFd listen_unix_socket(const std::string& path, const std::string& what, int backlog, bool nonblocking);

}  // namespace berth
