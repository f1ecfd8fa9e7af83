// The graphical console's VNC server against real RFB clients: libvncclient (what many
// viewers are built on) and, for QEMU's extended key events and hostile input, a client
// that speaks the protocol byte by byte. The picture comes from a real bochs-display's
// video memory; the pages the test writes are reported the way the hypervisor's written-
// pages log reports a guest's writes.
#include <linux/input-event-codes.h>
#include <rfb/keysym.h>
#include <rfb/rfbclient.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "devices/display/bochs_display.h"
#include "devices/display/framebuffer.h"
#include "vnc/keymap.h"
#include "vnc/vnc_server.h"

namespace display = berth::devices::display;
using berth::vnc::VncServer;
using namespace std::chrono_literals;

namespace {

struct InputEvent {
  bool is_key;
  uint16_t code;
  bool down;
  uint32_t x, y, width, height;
  uint8_t mask;
};

// Records what the server hands to the machine's input devices.
class RecordedInput final : public berth::vnc::InputTarget {
 public:
  void key(uint16_t code, bool down) override { add({true, code, down, 0, 0, 0, 0, 0}); }
  void pointer(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint8_t mask) override {
    add({false, 0, false, x, y, w, h, mask});
  }
  bool wait_for(size_t count, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return events_.size() >= count; });
  }
  std::vector<InputEvent> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  void add(InputEvent e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<InputEvent> events_;
};

void set_register(display::BochsDisplay& d, uint32_t index, uint16_t value) {
  const uint8_t bytes[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
  d.bar_write(display::kMmioBar, display::kDispiOffset + 2 * index, bytes);
}

void set_mode(display::BochsDisplay& d, uint16_t width, uint16_t height) {
  set_register(d, display::dispi::kEnable, 0);
  set_register(d, display::dispi::kXres, width);
  set_register(d, display::dispi::kYres, height);
  set_register(d, display::dispi::kBpp, 32);
  set_register(d, display::dispi::kEnable, display::dispi::kEnabled);
}

// A display whose video memory the test writes as a guest would, with a log of the pages
// written (what KVM's dirty log gives the machine).
struct Screen {
  display::BochsDisplay device;
  display::Framebuffer framebuffer{device};
  std::mutex mu;
  std::vector<uint64_t> written;  // page numbers

  Screen() {
    framebuffer.set_written_pages_source([this](std::span<uint64_t> bitmap) {
      std::lock_guard lock(mu);
      for (uint64_t page : written)
        if (page / 64 < bitmap.size()) bitmap[page / 64] |= uint64_t{1} << (page % 64);
      written.clear();
      return true;
    });
  }
  // Fills a rectangle with an x8r8g8b8 colour at the current mode's stride.
  void fill(uint32_t x0, uint32_t y0, uint32_t w, uint32_t h, uint32_t rgb) {
    display::DisplayMode m = device.mode();
    std::span<uint8_t> vram = device.video_memory().bytes();
    std::lock_guard lock(mu);
    for (uint32_t y = y0; y < y0 + h; ++y) {
      for (uint32_t x = x0; x < x0 + w; ++x) {
        uint64_t at = m.offset + uint64_t{y} * m.stride + uint64_t{x} * 4;
        std::memcpy(vram.data() + at, &rgb, 4);
        written.push_back(at / display::Framebuffer::kPageSize);
      }
    }
  }
};

std::string socket_path(const char* name) {
  auto dir = std::filesystem::temp_directory_path() / ("berth-vnc-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void quiet(const char*, ...) {}

// A libvncclient viewer on the server's socket.
class Viewer {
 public:
  explicit Viewer(const std::string& path) {
    rfbClientLog = quiet;
    rfbClientErr = quiet;
    client_ = rfbGetClient(8, 3, 4);
    free(client_->serverHost);
    client_->serverHost = strdup(path.c_str());
    client_->canHandleNewFBSize = TRUE;
    rfbClientSetClientData(client_, &kTag, this);
    client_->GotFrameBufferUpdate = [](rfbClient* c, int x, int y, int w, int h) {
      static_cast<Viewer*>(rfbClientGetClientData(c, &kTag))->updates_.push_back({x, y, w, h});
    };
    int argc = 0;
    if (!rfbInitClient(client_, &argc, nullptr)) client_ = nullptr;  // it freed the client
  }
  ~Viewer() {
    if (!client_) return;
    free(client_->frameBuffer);  // the viewer's picture is the application's to free
    rfbClientCleanup(client_);
  }
  bool connected() const { return client_ != nullptr; }
  int width() const { return client_->width; }
  int height() const { return client_->height; }
  // r, g, b of a pixel of the viewer's copy (its format: red in the low byte).
  uint32_t rgb(int x, int y) const {
    const uint8_t* p = client_->frameBuffer + (size_t(y) * client_->width + x) * 4;
    return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
  }
  // Handles server messages until done() or the limit.
  bool until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      int n = WaitForMessage(client_, 20'000);
      if (n < 0) return false;
      if (n > 0 && !HandleRFBServerMessage(client_)) return false;
    }
    return true;
  }
  rfbClient* client() { return client_; }
  struct Update {
    int x, y, w, h;
  };
  std::vector<Update> updates_;

 private:
  static inline int kTag = 0;
  rfbClient* client_ = nullptr;
};

// A client that writes the protocol itself.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { close(fd_); }
  bool send(const std::vector<uint8_t>& b) { return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size()); }
  std::vector<uint8_t> read(size_t n) {
    std::vector<uint8_t> b(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = recv(fd_, b.data() + got, n - got, 0);
      if (r <= 0) return {};
      got += size_t(r);
    }
    return b;
  }
  // RFB 3.8 without security, shared; returns false if the server does not go along.
  bool handshake() {
    if (!connected_ || read(12).empty()) return false;
    const char* v = "RFB 003.008\n";
    if (!send(std::vector<uint8_t>(v, v + 12))) return false;
    auto count = read(1);
    if (count.empty() || count[0] == 0) return false;
    auto types = read(count[0]);
    if (!send({1})) return false;                                     // None
    auto result = read(4);                                            // SecurityResult
    if (result.size() != 4 || result != std::vector<uint8_t>{0, 0, 0, 0}) return false;
    if (!send({1})) return false;                                     // ClientInit, shared
    auto init = read(24);                                             // size, format, name length
    if (init.size() != 24) return false;
    uint32_t name = (uint32_t{init[20]} << 24) | (uint32_t{init[21]} << 16) | (uint32_t{init[22]} << 8) | init[23];
    return !read(name).empty() || name == 0;
  }
  // True when the server closed the connection (reads end) within the limit.
  bool closed_by_server() {
    uint8_t b[256];
    for (;;) {
      ssize_t r = recv(fd_, b, sizeof b, 0);
      if (r == 0) return true;
      if (r < 0) return false;  // timed out: still open
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

std::vector<uint8_t> qemu_key(bool down, uint32_t keysym, uint32_t xt) {
  std::vector<uint8_t> m{255, 0, 0, uint8_t(down ? 1 : 0)};
  for (auto b : be32(keysym)) m.push_back(b);
  for (auto b : be32(xt)) m.push_back(b);
  return m;
}

}  // namespace

TEST(vnc_keymap_keysyms_and_scan_codes) {
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_a), KEY_A);
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_A), KEY_A);
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_exclam), KEY_1);  // Shift was sent before it
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_Return), KEY_ENTER);
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_Control_R), KEY_RIGHTCTRL);
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_F12), KEY_F12);
  CHECK_EQ(*berth::vnc::keysym_to_evdev(XK_KP_Enter), KEY_KPENTER);
  CHECK(!berth::vnc::keysym_to_evdev(0x20ac));  // the euro sign: no US key types it
  CHECK_EQ(*berth::vnc::xt_to_evdev(0x1e), KEY_A);
  CHECK_EQ(*berth::vnc::xt_to_evdev(0x58), KEY_F12);
  CHECK_EQ(*berth::vnc::xt_to_evdev(0xe048), KEY_UP);  // noVNC's numbering
  CHECK_EQ(*berth::vnc::xt_to_evdev(0xc8), KEY_UP);    // QEMU's
  CHECK_EQ(*berth::vnc::xt_to_evdev(0xe01d), KEY_RIGHTCTRL);
  CHECK_EQ(*berth::vnc::xt_to_evdev(0xe11d), KEY_PAUSE);
  CHECK(!berth::vnc::xt_to_evdev(0));
  CHECK(!berth::vnc::xt_to_evdev(0xe0ff));
  CHECK(!berth::vnc::xt_to_evdev(0x12345678));
}

TEST(vnc_viewer_sees_the_guest_picture_and_then_only_what_changed) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 800, 600);
  screen.fill(0, 0, 800, 600, 0x000040);  // dark blue
  screen.fill(100, 50, 20, 10, 0xff8000);  // an orange box
  VncServer server(screen.framebuffer, input, socket_path("picture.sock"));
  Viewer viewer(socket_path("picture.sock"));
  CHECK(viewer.connected());
  CHECK(viewer.until([&] { return viewer.width() == 800 && viewer.rgb(105, 55) == 0xff8000; }));
  CHECK_EQ(viewer.height(), 600);
  CHECK_EQ(viewer.rgb(0, 0), 0x000040u);
  CHECK_EQ(viewer.rgb(120, 60), 0x000040u);  // just outside the box

  // A small change travels as a small update, not the whole screen.
  viewer.updates_.clear();
  screen.fill(700, 500, 8, 8, 0x00ff00);
  CHECK(viewer.until([&] { return viewer.rgb(703, 503) == 0x00ff00; }));
  for (const auto& u : viewer.updates_) CHECK(u.w * u.h < 800 * 600 / 4);
}

TEST(vnc_mode_change_resizes_the_viewer_and_a_disabled_mode_shows_black) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 640, 480);
  screen.fill(0, 0, 640, 480, 0xffffff);
  VncServer server(screen.framebuffer, input, socket_path("resize.sock"));
  Viewer viewer(socket_path("resize.sock"));
  CHECK(viewer.connected());
  CHECK(viewer.until([&] { return viewer.rgb(10, 10) == 0xffffff; }));
  set_mode(screen.device, 1024, 768);
  screen.fill(0, 0, 1024, 768, 0x102030);
  CHECK(viewer.until([&] { return viewer.width() == 1024 && viewer.height() == 768 && viewer.rgb(1000, 700) == 0x102030; }));
  set_register(screen.device, display::dispi::kEnable, 0);
  CHECK(viewer.until([&] { return viewer.width() == 640 && viewer.height() == 480 && viewer.rgb(10, 10) == 0; }));
}

TEST(vnc_keys_and_pointer_reach_the_input_devices) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 800, 600);
  VncServer server(screen.framebuffer, input, socket_path("input.sock"));
  Viewer viewer(socket_path("input.sock"));
  CHECK(viewer.connected());
  CHECK(viewer.until([&] { return viewer.width() == 800; }));
  SendKeyEvent(viewer.client(), XK_Shift_L, TRUE);
  SendKeyEvent(viewer.client(), XK_exclam, TRUE);
  SendKeyEvent(viewer.client(), XK_exclam, FALSE);
  SendKeyEvent(viewer.client(), XK_Shift_L, FALSE);
  SendKeyEvent(viewer.client(), 0x20ac, TRUE);  // no key for it: dropped
  SendPointerEvent(viewer.client(), 400, 300, 1);
  SendPointerEvent(viewer.client(), 5000, 5000, 0);  // outside: clamped to the picture
  CHECK(input.wait_for(6));
  auto e = input.events();
  CHECK(e[0].is_key && e[0].code == KEY_LEFTSHIFT && e[0].down);
  CHECK(e[1].is_key && e[1].code == KEY_1 && e[1].down);
  CHECK(e[2].is_key && e[2].code == KEY_1 && !e[2].down);
  CHECK(e[3].is_key && e[3].code == KEY_LEFTSHIFT && !e[3].down);
  CHECK(!e[4].is_key && e[4].x == 400 && e[4].y == 300 && e[4].width == 800 && e[4].height == 600 && e[4].mask == 1);
  CHECK(!e[5].is_key && e[5].x == 799 && e[5].y == 599 && e[5].mask == 0);
  CHECK_EQ(e.size(), size_t{6});
}

TEST(vnc_qemu_extended_key_events_carry_the_physical_key) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 640, 480);
  VncServer server(screen.framebuffer, input, socket_path("qemu-keys.sock"));
  RawClient client(socket_path("qemu-keys.sock"));
  CHECK(client.handshake());
  // SetEncodings: raw and QEMU's extended key events.
  std::vector<uint8_t> set{2, 0, 0, 2, 0, 0, 0, 0};
  for (auto b : be32(static_cast<uint32_t>(-258))) set.push_back(b);
  CHECK(client.send(set));
  // The server says yes with an empty rectangle of that pseudo-encoding.
  auto ack = client.read(16);
  CHECK_EQ(ack.size(), size_t{16});
  CHECK_EQ(ack[0], 0);  // FramebufferUpdate
  CHECK_EQ(ack[3], 1);  // one rectangle
  CHECK(std::vector<uint8_t>(ack.begin() + 12, ack.end()) == be32(static_cast<uint32_t>(-258)));
  // A French keyboard's 'q' is the US 'a' key: the scan code wins over the keysym.
  CHECK(client.send(qemu_key(true, XK_q, 0x1e)));
  CHECK(client.send(qemu_key(false, XK_q, 0x1e)));
  CHECK(client.send(qemu_key(true, XK_Up, 0xe048)));
  CHECK(client.send(qemu_key(true, XK_Return, 0)));  // no scan code: the keysym's key
  CHECK(input.wait_for(4));
  auto e = input.events();
  CHECK(e[0].code == KEY_A && e[0].down);
  CHECK(e[1].code == KEY_A && !e[1].down);
  CHECK(e[2].code == KEY_UP && e[2].down);
  CHECK(e[3].code == KEY_ENTER && e[3].down);
  // A QEMU message with an unknown submessage ends that client.
  CHECK(client.send({255, 7, 0, 0}));
  CHECK(client.closed_by_server());
}

TEST(vnc_hostile_clients_are_dropped_and_others_keep_working) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 640, 480);
  screen.fill(0, 0, 640, 480, 0x336699);
  const std::string path = socket_path("hostile.sock");
  VncServer server(screen.framebuffer, input, path);
  struct stat st {};
  CHECK_EQ(stat(path.c_str(), &st), 0);
  CHECK_EQ(st.st_mode & 0777, 0600u);

  RawClient garbage(path);
  CHECK(garbage.send({'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'}));
  CHECK(garbage.closed_by_server());

  RawClient cut_text(path);
  CHECK(cut_text.handshake());
  CHECK(cut_text.send({6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}));  // 2 GiB of clipboard text
  CHECK(cut_text.closed_by_server());

  RawClient bad_type(path);
  CHECK(bad_type.handshake());
  CHECK(bad_type.send({99}));  // no such message
  CHECK(bad_type.closed_by_server());

  // A client that asks for updates and never reads them, and one that stops mid-message.
  RawClient stalled(path);
  CHECK(stalled.handshake());
  for (int i = 0; i < 50; ++i) CHECK(stalled.send({3, 0, 0, 0, 0, 0, 0x02, 0x80, 0x01, 0xe0}));
  RawClient half(path);
  CHECK(half.handshake());
  CHECK(half.send({4, 1}));  // a KeyEvent's first two bytes of eight

  Viewer viewer(path);
  CHECK(viewer.connected());
  CHECK(viewer.until([&] { return viewer.rgb(320, 240) == 0x336699; }, 10s));
  SendKeyEvent(viewer.client(), XK_b, TRUE);
  CHECK(input.wait_for(1, 10s));
  CHECK_EQ(input.events().back().code, KEY_B);
}

TEST(vnc_client_limit_and_bad_socket_path) {
  Screen screen;
  RecordedInput input;
  set_mode(screen.device, 640, 480);
  const std::string path = socket_path("limit.sock");
  VncServer server(screen.framebuffer, input, path);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < VncServer::kMaxClients; ++i) {
    clients.push_back(std::make_unique<RawClient>(path));
    CHECK(clients.back()->handshake());
  }
  RawClient one_too_many(path);
  CHECK(!one_too_many.handshake());
  clients.pop_back();  // one leaves: the next one gets in
  std::this_thread::sleep_for(200ms);
  RawClient next(path);
  CHECK(next.handshake());

  CHECK_THROWS_CODE(VncServer(screen.framebuffer, input, "/" + std::string(200, 'x')), "START_FAILED",
                    "too long for a Unix socket");
  CHECK_THROWS_CODE(VncServer(screen.framebuffer, input, "/nonexistent-dir/display.sock"), "START_FAILED",
                    "/nonexistent-dir/display.sock");
}
