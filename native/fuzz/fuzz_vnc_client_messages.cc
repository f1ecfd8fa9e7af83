// What a VNC client sends reaches libvncserver's message handling and Berth's own (QEMU's
// extended key events): any bytes after the handshake must be answered or end that client,
// never crash or hang the server, which keeps serving the next client.
#include <linux/input-event-codes.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "devices/display/bochs_display.h"
#include "devices/display/framebuffer.h"
#include "vnc/vnc_server.h"

namespace {

class DropInput final : public berth::vnc::InputTarget {
 public:
  void key(uint16_t code, bool) override {
    if (code == 0 || code > KEY_MAX) __builtin_trap();  // only real key codes come out
  }
  void pointer(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint8_t) override {
    if (x >= w || y >= h) __builtin_trap();  // always inside the picture
  }
};

struct Server {
  berth::devices::display::BochsDisplay display;
  berth::devices::display::Framebuffer framebuffer{display};
  DropInput input;
  std::string path = "/tmp/berth-fuzz-vnc-" + std::to_string(getpid()) + ".sock";
  berth::vnc::VncServer server{framebuffer, input, path};
};

bool read_exact(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= size_t(r);
  }
  return true;
}

// Connects and completes the handshake (RFB 3.8, no security, shared); -1 if the server
// did not serve this client.
int connect_client(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t buf[64];
  bool ready = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && read_exact(fd, buf, 12) &&
               send(fd, "RFB 003.008\n", 12, MSG_NOSIGNAL) == 12 && read_exact(fd, buf, 1) && buf[0] > 0 &&
               read_exact(fd, buf + 1, buf[0]) && send(fd, "\x01", 1, MSG_NOSIGNAL) == 1 && read_exact(fd, buf, 4) &&
               send(fd, "\x01", 1, MSG_NOSIGNAL) == 1 && read_exact(fd, buf, 24);
  if (!ready) {
    close(fd);
    return -1;
  }
  uint32_t name = (uint32_t{buf[20]} << 24) | (uint32_t{buf[21]} << 16) | (uint32_t{buf[22]} << 8) | buf[23];
  for (uint32_t i = 0; i < name; ++i) read_exact(fd, buf, 1);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* s = new Server();  // one server for the whole run, like a VM's
  // The server takes a moment to notice the previous inputs' clients have gone; while
  // kMaxClients of them linger a new one is refused. It must be served within 5 s.
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    fd = connect_client(s->path);
    if (fd < 0) usleep(50'000);
  }
  if (fd < 0) __builtin_trap();
  send(fd, data, size, MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  // Drain what the server answers until it ends the connection (or the timeout).
  uint8_t buf[256];
  while (recv(fd, buf, sizeof buf, 0) > 0) {
  }
  close(fd);
  return 0;
}
