// The graphical console's RFB (VNC) server, on libvncserver: it serves a display's picture
// (devices/display Framebuffer) to VNC clients on a Unix socket (0600, in the VM's run
// folder: whoever may open it may use the VM's console, so there is no RFB password) and
// passes their keys and pointer to an InputTarget.
//
// Threads: libvncserver's, in its threaded mode: a listener that accepts clients, and for
// each client one that reads its messages (keys and pointer reach the InputTarget there)
// and one that sends its updates, so a client that stops reading holds up only itself.
// Ours: at most kFrameRate times a second, while a client is connected, it reads what
// changed in the picture (the framebuffer's written-pages log) and copies those rectangles
// into the shadow picture libvncserver encodes from. A new mode becomes a desktop resize.
//
// Keys: the keysym path and QEMU's extended key events (vnc/keymap.h); the server offers
// the extension to clients that ask for it (noVNC does).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/display/framebuffer.h"
#include "vnc/input_target.h"

typedef struct _rfbScreenInfo* rfbScreenInfoPtr;
typedef struct _rfbClientRec* rfbClientPtr;

namespace berth::vnc {

class VncServer {
 public:
  static constexpr int kMaxClients = 8;
  static constexpr int kFrameRate = 30;
  static constexpr int kMaxClientWaitMs = 1000;
  // The picture before the guest sets a mode.
  static constexpr uint32_t kIdleWidth = 640, kIdleHeight = 480;

  // Listens on socket_path (an existing file there is replaced) and starts serving.
  // Throws START_FAILED naming the path when the socket cannot be made.
  VncServer(devices::display::Framebuffer& framebuffer, InputTarget& input, std::string socket_path);
  // Disconnects every client, stops the thread and removes the socket.
  ~VncServer();
  VncServer(const VncServer&) = delete;
  VncServer& operator=(const VncServer&) = delete;

  int client_count() const { return clients_.load(); }
  // Frames (rounds of changes copied and marked) since the start.
  uint64_t frames() const { return frames_.load(); }

 private:
  void run();
  void copy_changes();
  void resize(uint32_t width, uint32_t height);

  friend struct Hooks;  // libvncserver's callbacks (vnc_server.cc)

  devices::display::Framebuffer& framebuffer_;
  InputTarget& input_;
  std::string path_;
  rfbScreenInfoPtr screen_ = nullptr;
  std::vector<uint8_t> picture_;  // what libvncserver encodes from: 32-bit pixels, its format
  bool showing_mode_ = false;     // false: the idle (black) picture
  std::atomic<uint32_t> width_{kIdleWidth}, height_{kIdleHeight};  // of picture_
  std::atomic<bool> need_full_{true};  // a client joined: send it everything
  std::atomic<int> clients_{0};
  std::atomic<uint64_t> frames_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace berth::vnc
