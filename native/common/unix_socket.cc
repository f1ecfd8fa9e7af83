#include "common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace berth {

UniqueFd listen_unix_socket(const std::string& path, const std::string& what, int backlog, bool nonblocking) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw Error("START_FAILED", what + " path " + path +
                                    " is too long for a Unix socket; move the VM's folder to a shorter path");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd.valid()) throw SystemError("START_FAILED", "socket", errno);
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw SystemError("START_FAILED", "bind " + path, errno);
  }
  // The umask already made it 0600; make sure even under an unusual umask.
  if (chmod(path.c_str(), 0600) != 0) throw SystemError("START_FAILED", "chmod " + path, errno);
  if (listen(fd.get(), backlog) != 0) throw SystemError("START_FAILED", "listen " + path, errno);
  return fd;
}

}  // namespace berth
