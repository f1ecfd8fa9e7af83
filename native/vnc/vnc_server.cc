#include "vnc/vnc_server.h"

#include <pthread.h>
#include <rfb/rfb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/error.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "vnc/keymap.h"

namespace berth::vnc {
namespace {

namespace display = devices::display;

// QEMU's extended key event: pseudo-encoding the client announces, and the client message
// (type 255, submessage 0) that carries a keysym and the XT scan code of the physical key.
constexpr int kEncodingQemuExtendedKeys = -258;
constexpr uint8_t kQemuClientMessage = 255;
constexpr uint8_t kQemuExtendedKeySubmessage = 0;

void quiet_log(const char*, ...) {}

// libvncserver reports a client that cannot be served (a bad message, a closed socket) on
// rfbErr and drops it; that is the client's problem, not the VM's, and a hostile client
// could fill the VM's log with it.
void install_log_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    rfbLog = quiet_log;
    rfbErr = quiet_log;
  });
}

VncServer* server_of(rfbClientPtr cl) { return static_cast<VncServer*>(cl->screen->screenData); }

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

// libvncserver's callbacks. The extension's are registered once for the whole process.
struct Hooks {
  static rfbBool new_client(rfbClientPtr, void**) { return TRUE; }  // handles messages of any client

  static rfbBool enable(rfbClientPtr cl, void**, int encoding) {
    if (encoding != kEncodingQemuExtendedKeys) return FALSE;
    // An empty rectangle of the pseudo-encoding tells the client the server takes the
    // events (noVNC sends them only after it). This runs on the server's only thread,
    // between whole messages.
    uint8_t update[16] = {rfbFramebufferUpdate, 0, 0, 1};
    const uint32_t enc = static_cast<uint32_t>(kEncodingQemuExtendedKeys);
    update[12] = static_cast<uint8_t>(enc >> 24);
    update[13] = static_cast<uint8_t>(enc >> 16);
    update[14] = static_cast<uint8_t>(enc >> 8);
    update[15] = static_cast<uint8_t>(enc);
    if (rfbWriteExact(cl, reinterpret_cast<const char*>(update), sizeof update) < 0) rfbCloseClient(cl);
    return TRUE;
  }

  static rfbBool message(rfbClientPtr cl, void*, const rfbClientToServerMsg* msg) {
    if (msg->type != kQemuClientMessage) return FALSE;
    uint8_t rest[11];  // submessage, down (16 bits), keysym, keycode
    if (rfbReadExact(cl, reinterpret_cast<char*>(rest), sizeof rest) <= 0 || rest[0] != kQemuExtendedKeySubmessage) {
      rfbCloseClient(cl);
      return TRUE;
    }
    const bool down = rest[1] != 0 || rest[2] != 0;
    const uint32_t keysym = read_be32(rest + 3);
    const uint32_t xt = read_be32(rest + 7);
    // A key the scan code table lacks still works through its keysym.
    auto code = xt_to_evdev(xt);
    if (!code) code = keysym_to_evdev(keysym);
    if (code) server_of(cl)->input_.key(*code, down);
    return TRUE;
  }

  static rfbNewClientAction new_client_hook(rfbClientPtr cl) {
    VncServer* self = server_of(cl);
    if (self->clients_ >= VncServer::kMaxClients) {
      cl->clientGoneHook = free_extension_records;
      return RFB_CLIENT_REFUSE;
    }
    ++self->clients_;
    self->need_full_ = true;
    cl->clientGoneHook = client_gone;
    return RFB_CLIENT_ACCEPT;
  }

  static void client_gone(rfbClientPtr cl) {
    --server_of(cl)->clients_;
    free_extension_records(cl);
  }

  // libvncserver 0.9.14 never frees the records that tie a client to an extension; this
  // hook is its last use of them before it frees the client.
  static void free_extension_records(rfbClientPtr cl) {
    while (rfbExtensionData* e = cl->extensions) {
      cl->extensions = e->next;
      free(e->data);
      free(e);
    }
  }

  static void key(rfbBool down, rfbKeySym keysym, rfbClientPtr cl) {
    if (auto code = keysym_to_evdev(keysym)) server_of(cl)->input_.key(*code, down != 0);
  }

  static void pointer(int mask, int x, int y, rfbClientPtr cl) {
    VncServer* self = server_of(cl);
    const int w = static_cast<int>(self->width_.load()), h = static_cast<int>(self->height_.load());
    // libvncserver has clamped x and y to the picture already; keep them inside anyway.
    const auto px = static_cast<uint32_t>(std::clamp(x, 0, w - 1));
    const auto py = static_cast<uint32_t>(std::clamp(y, 0, h - 1));
    self->input_.pointer(px, py, static_cast<uint32_t>(w), static_cast<uint32_t>(h), static_cast<uint8_t>(mask));
    rfbDefaultPtrAddEvent(mask, x, y, cl);  // keeps libvncserver's idea of the pointer
  }
};

namespace {

int qemu_extended_keys_encodings[] = {kEncodingQemuExtendedKeys, 0};
rfbProtocolExtension qemu_extended_keys = {
    Hooks::new_client, nullptr, qemu_extended_keys_encodings, Hooks::enable, Hooks::message,
    nullptr, nullptr, nullptr, nullptr};

void register_extension_once() {
  static std::once_flag once;
  std::call_once(once, [] { rfbRegisterProtocolExtension(&qemu_extended_keys); });
}

}  // namespace

VncServer::VncServer(display::Framebuffer& framebuffer, InputTarget& input, std::string socket_path)
    : framebuffer_(framebuffer), input_(input), path_(std::move(socket_path)) {
  // Blocking: libvncserver's listener accepts only after select() says a client waits.
  UniqueFd listen_fd = listen_unix_socket(path_, "the display socket", kMaxClients, /*nonblocking=*/false);

  install_log_once();
  register_extension_once();
  picture_.assign(size_t{kIdleWidth} * kIdleHeight * 4, 0);
  int argc = 0;
  screen_ = rfbGetScreen(&argc, nullptr, kIdleWidth, kIdleHeight, 8, 3, 4);
  if (!screen_) throw Error("START_FAILED", "cannot set up the display's VNC server (out of memory)");
  screen_->frameBuffer = reinterpret_cast<char*>(picture_.data());
  screen_->desktopName = "Berth";
  screen_->screenData = this;
  // No TCP or HTTP listener of its own: clients arrive through the Unix socket only.
  screen_->port = 0;
  screen_->ipv6port = 0;
  screen_->autoPort = FALSE;
  screen_->httpPort = 0;
  screen_->alwaysShared = TRUE;  // several viewers at once, like Hyper-V's VMConnect
  screen_->cursor = nullptr;     // the guest draws its own pointer
  // A client that sends half a message or stops reading is dropped after this long.
  screen_->maxClientWait = kMaxClientWaitMs;
  screen_->newClientHook = Hooks::new_client_hook;
  screen_->kbdAddEvent = Hooks::key;
  screen_->ptrAddEvent = Hooks::pointer;
  rfbInitServer(screen_);
  // libvncserver's listener thread accepts on our socket (and closes it at shutdown).
  screen_->listenSock = listen_fd.release();
  screen_->maxFd = std::max(screen_->maxFd, screen_->listenSock);
  rfbRunEventLoop(screen_, -1, TRUE);
  thread_ = std::thread([this] { run(); });
}

VncServer::~VncServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  rfbShutdownServer(screen_, TRUE);  // closes the clients and joins libvncserver's threads
  rfbScreenCleanup(screen_);
  unlink(path_.c_str());
}

void VncServer::run() {
  const auto frame = std::chrono::microseconds(1'000'000 / kFrameRate);
  while (!stop_) {
    if (clients_ > 0) copy_changes();
    std::this_thread::sleep_for(frame);
  }
}

void VncServer::resize(uint32_t width, uint32_t height) {
  std::vector<uint8_t> next(size_t{width} * height * 4, 0);
  rfbNewFramebuffer(screen_, reinterpret_cast<char*>(next.data()), static_cast<int>(width),
                    static_cast<int>(height), 8, 3, 4);
  width_ = width;
  height_ = height;
  // A client's sender may still be encoding from the old picture: once each has let go of
  // its send lock, every update in flight has ended and the rest read the new picture.
  rfbClientIteratorPtr it = rfbGetClientIterator(screen_);
  while (rfbClientPtr cl = rfbClientIteratorNext(it)) {
    pthread_mutex_lock(&cl->sendMutex);
    pthread_mutex_unlock(&cl->sendMutex);
  }
  rfbReleaseClientIterator(it);
  picture_.swap(next);
}

void VncServer::copy_changes() {
  display::Framebuffer::Changes changes = framebuffer_.changes();
  const display::DisplayMode& mode = changes.mode;
  bool full = changes.full || need_full_;
  need_full_ = false;
  if (!mode.enabled) {
    if (showing_mode_ || full) {
      showing_mode_ = false;
      if (width_ != kIdleWidth || height_ != kIdleHeight) resize(kIdleWidth, kIdleHeight);
      std::fill(picture_.begin(), picture_.end(), 0);
      rfbMarkRectAsModified(screen_, 0, 0, static_cast<int>(kIdleWidth), static_cast<int>(kIdleHeight));
      ++frames_;
    }
    return;
  }
  if (!showing_mode_ || width_ != mode.width || height_ != mode.height) {
    resize(mode.width, mode.height);
    showing_mode_ = true;
    full = true;
  }
  std::vector<display::Rect> rects = full ? display::full_rect(mode) : std::move(changes.rects);
  if (rects.empty()) return;
  const std::span<const uint8_t> vram = framebuffer_.video_memory();
  const rfbPixelFormat& f = screen_->serverFormat;
  const uint32_t bpp = mode.bytes_per_pixel();
  for (const display::Rect& r : rects) {
    for (uint32_t y = r.y; y < r.y + r.height && y < mode.height; ++y) {
      const uint8_t* src = vram.data() + mode.offset + uint64_t{y} * mode.stride + uint64_t{r.x} * bpp;
      uint8_t* dst = picture_.data() + (size_t{y} * mode.width + r.x) * 4;
      for (uint32_t x = 0; x < r.width && r.x + x < mode.width; ++x, src += bpp, dst += 4) {
        uint32_t red, green, blue;
        if (bpp == 4) {
          // x8r8g8b8: bytes b, g, r, x (little endian) or x, r, g, b (big endian).
          red = mode.big_endian ? src[1] : src[2];
          green = mode.big_endian ? src[2] : src[1];
          blue = mode.big_endian ? src[3] : src[0];
        } else {
          const uint32_t v = uint32_t{src[0]} | (uint32_t{src[1]} << 8);  // r5 g6 b5
          red = ((v >> 11) & 0x1f) * 255 / 31;
          green = ((v >> 5) & 0x3f) * 255 / 63;
          blue = (v & 0x1f) * 255 / 31;
        }
        const uint32_t pixel = (red << f.redShift) | (green << f.greenShift) | (blue << f.blueShift);
        std::memcpy(dst, &pixel, 4);  // libvncserver's own format, in this host's byte order
      }
    }
    rfbMarkRectAsModified(screen_, static_cast<int>(r.x), static_cast<int>(r.y), static_cast<int>(r.x + r.width),
                          static_cast<int>(r.y + r.height));
  }
  ++frames_;
}

}  // namespace berth::vnc
