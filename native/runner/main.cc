// berth-vmm: runs one VM in this process, over the same machine library as the Node addon
// (like Firecracker's binary). Guest COM1 output goes to stdout, stdin goes to the guest's
// COM1 receiver, and the exit status says how the VM ended (see kUsage below).
//
// Threads: main (parses arguments, creates the machine, waits for it to stop), one I/O
// thread (polls stdin, a signalfd for SIGINT/SIGTERM/SIGHUP and a quit eventfd), plus the
// machine's own vCPU and supervisor threads. Console output is written by vCPU threads
// with write(2), unbuffered.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "devices/display/framebuffer.h"
#include "machine/machine.h"
#include "worker/png_file.h"
#include "worker/worker.h"

namespace {

// SeaBIOS's option ROM for QEMU's bochs-display, as Debian installs it.
#define DEFAULT_DISPLAY_ROM "/usr/share/seabios/vgabios-bochs-display.bin"

using berth::machine::ExitInfo;
using berth::machine::ExitReason;
using berth::machine::Machine;
using berth::machine::MachineConfig;
using berth::machine::MachineEvents;
using berth::machine::MachineState;

constexpr const char* kUsage =
    "usage: berth-vmm --kernel PATH [options]\n"
    "       berth-vmm --uefi CODE --vars VARS [options]\n"
    "       berth-vmm --bios ROM [options]\n"
    "\n"
    "Runs one virtual machine (KVM) with its serial console (COM1) on stdin/stdout.\n"
    "\n"
    "options:\n"
    "  --kernel PATH      guest kernel: PVH ELF, Linux bzImage or vmlinux\n"
    "  --uefi PATH        boot UEFI firmware (OVMF's code image) instead of a kernel\n"
    "  --vars PATH        with --uefi: the VM's UEFI variable store (written by the firmware)\n"
    "  --bios PATH        boot a BIOS (SeaBIOS's ROM) instead of a kernel\n"
    "  --disk PATH[:ro]   a virtual disk (repeatable; ':ro' attaches it read-only)\n"
    "  --scsi-disk PATH[:ro]  a virtual disk on the SCSI controller (repeatable; firmware VMs only)\n"
    "  --dvd PATH         a DVD drive with this ISO image (repeatable; firmware VMs only)\n"
    "  --display          a PCI display (bochs-display) at 00:02.0 (firmware VMs only)\n"
    "  --display-rom PATH with --display: its option ROM (default with --bios:\n"
    "                     " DEFAULT_DISPLAY_ROM ")\n"
    "  --screenshot-after SECONDS FILE\n"
    "                     with --display: write the screen to FILE (PNG) after SECONDS\n"
    "  --initrd PATH      initial ramdisk\n"
    "  --cmdline STR      kernel command line (default: empty)\n"
    "  --memory MIB       guest memory in MiB (default: 64)\n"
    "  --vcpus N          number of vCPUs (default: 1)\n"
    "  --test-exit-port   let the guest end the VM with a code by writing to I/O port 0xf4\n"
    "  --no-reboot        stop the VM when the guest resets instead of rebooting it\n"
    "  --help             print this help and exit\n"
    "Options also take the form --name=VALUE.\n"
    "\n"
    "berth-vmm worker --spec PATH --socket PATH --display-socket PATH --pid-file PATH --exit-record PATH\n"
    "                 --start-error PATH\n"
    "  runs as a VM's worker for the Berth services: builds the machine described in the\n"
    "  spec file, serves the control protocol on the socket, writes the pid file, the exit\n"
    "  record when the VM ends (status 0) or the start error when it cannot start (1).\n"
    "\n"
    "stdin is forwarded to the guest console (when it is a terminal: no line editing or\n"
    "echo; Ctrl-C still stops the VM); end of input just stops forwarding.\n"
    "\n"
    "exit status:\n"
    "  N      the guest wrote N to the test-exit port (the raw value, masked to 0..255)\n"
    "  0      the guest powered off\n"
    "  124    the guest reset and --no-reboot was given\n"
    "  128+S  stopped by signal S (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP)\n"
    "  2      usage error, or the VM could not be created or failed while running; a\n"
    "         message 'berth-vmm: <message> [<code>]' is printed on stderr\n"
    "  (a guest exit code can equal any of these; use a guest code that does not collide)\n";

constexpr int kStatusError = 2;
constexpr int kStatusReset = 124;

// Raised for bad command lines; reported like berth::Error, with code INVALID_ARGUMENT.
struct UsageError {
  std::string message;
};

struct Options {
  std::string kernel, initrd, cmdline;
  std::string uefi, vars, bios;
  std::vector<std::pair<std::string, bool>> disks;  // path[:ro], on the SCSI controller
  std::vector<std::string> dvds;
  uint64_t memory_mib = 64;
  uint32_t vcpus = 1;
  bool test_exit_port = false;
  bool no_reboot = false;
  bool help = false;
  bool display = false;
  std::string display_rom;
  uint64_t screenshot_after = 0;
  std::string screenshot_file;
};

uint64_t parse_number(std::string_view name, std::string_view text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw UsageError{std::string(name) + " takes a whole number from " + std::to_string(min) + " to " +
                     std::to_string(max) + ", not '" + std::string(text) + "'"};
  }
  return value;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool have_kernel = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    auto flag = [&]() {
      if (inline_value) throw UsageError{std::string(name) + " takes no value"};
    };
    auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw UsageError{std::string(name) + " needs a value"};
      return argv[++i];
    };
    if (name == "--help" || name == "-h") {
      flag();
      o.help = true;
    } else if (name == "--kernel") {
      o.kernel = value();
      have_kernel = true;
    } else if (name == "--initrd") {
      o.initrd = value();
      if (o.initrd.empty()) throw UsageError{"--initrd needs a file path"};
    } else if (name == "--cmdline") {
      o.cmdline = value();
    } else if (name == "--memory") {
      o.memory_mib = parse_number(name, value(), 2, uint64_t{1} << 24);
    } else if (name == "--vcpus") {
      o.vcpus = static_cast<uint32_t>(parse_number(name, value(), 1, 1024));
    } else if (name == "--uefi") {
      o.uefi = value();
    } else if (name == "--vars") {
      o.vars = value();
    } else if (name == "--bios") {
      o.bios = value();
    } else if (name == "--disk") {
      o.disks.emplace_back(value(), false);
    } else if (name == "--scsi-disk") {
      o.disks.emplace_back(value(), true);
    } else if (name == "--dvd") {
      o.dvds.emplace_back(value());
    } else if (name == "--test-exit-port") {
      flag();
      o.test_exit_port = true;
    } else if (name == "--display") {
      flag();
      o.display = true;
    } else if (name == "--display-rom") {
      o.display_rom = value();
    } else if (name == "--screenshot-after") {
      o.screenshot_after = parse_number(name, value(), 0, 24 * 3600);
      if (i + 1 >= argc || inline_value) throw UsageError{"--screenshot-after takes SECONDS and a FILE"};
      o.screenshot_file = argv[++i];
    } else if (name == "--no-reboot") {
      flag();
      o.no_reboot = true;
    } else {
      throw UsageError{"unknown argument '" + std::string(arg) + "' (see --help)"};
    }
  }
  const int boots = (have_kernel ? 1 : 0) + (o.uefi.empty() ? 0 : 1) + (o.bios.empty() ? 0 : 1);
  if (!o.help && boots != 1) throw UsageError{"give one of --kernel PATH, --uefi PATH or --bios PATH (see --help)"};
  if (!o.help && have_kernel && o.kernel.empty()) throw UsageError{"--kernel needs a file path"};
  if (!o.uefi.empty() && o.vars.empty()) throw UsageError{"--uefi needs --vars PATH: the VM's own copy of a variable store"};
  if (o.uefi.empty() && !o.vars.empty()) throw UsageError{"--vars goes with --uefi"};
  if (have_kernel && !o.dvds.empty()) throw UsageError{"--dvd needs --uefi or --bios: DVD drives sit on a firmware VM's SCSI controller"};
  for (const auto& d : o.disks) {
    if (have_kernel && d.second) throw UsageError{"--scsi-disk needs --uefi or --bios: SCSI disks sit on a firmware VM's SCSI controller"};
  }
  if (have_kernel && o.display) throw UsageError{"--display needs --uefi or --bios: the display sits on a firmware VM's PCI bus"};
  if (!o.display && (!o.display_rom.empty() || !o.screenshot_file.empty())) {
    throw UsageError{"--display-rom and --screenshot-after go with --display"};
  }
  if (o.display && !o.bios.empty() && o.display_rom.empty()) o.display_rom = DEFAULT_DISPLAY_ROM;
  return o;
}

void report_error(const std::string& message, const std::string& code) {
  std::string line = "berth-vmm: " + message + " [" + code + "]\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

// Writes all of bytes to fd; gives up quietly when the reader has gone (EPIPE) or on any
// other error, so a closed stdout never stops the guest.
void write_all(int fd, std::span<const uint8_t> bytes) {
  const uint8_t* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {  // stdout was left non-blocking by someone else: wait for room
        pollfd pfd{fd, POLLOUT, 0};
        poll(&pfd, 1, -1);
        continue;
      }
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

class StdoutConsole : public MachineEvents {
 public:
  void on_state(MachineState) override {}
  void on_console_output(std::span<const uint8_t> bytes) override { write_all(STDOUT_FILENO, bytes); }
  void on_reset(const std::string&) override {}
  void on_exit(const ExitInfo&) override {}
};

// Puts a terminal on stdin into the mode QEMU's -serial stdio uses: no line editing, no
// echo, no CR->NL translation, but Ctrl-C / Ctrl-\ still raise signals. Restored on exit.
class TerminalMode {
 public:
  TerminalMode() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_lflag &= ~(ECHO | ECHONL | ICANON | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~TerminalMode() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  TerminalMode(const TerminalMode&) = delete;
  TerminalMode& operator=(const TerminalMode&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

// Forwards stdin to the guest and turns SIGINT/SIGTERM/SIGHUP into a hard stop of the VM.
// The signals must already be blocked in every thread (see main).
class IoThread {
 public:
  IoThread(Machine& machine, const sigset_t& signals) : machine_(machine) {
    signal_fd_ = berth::UniqueFd(signalfd(-1, &signals, SFD_CLOEXEC));
    if (!signal_fd_.valid()) throw berth::SystemError("INTERNAL", "signalfd", errno);
    quit_fd_ = berth::UniqueFd(eventfd(0, EFD_CLOEXEC));
    if (!quit_fd_.valid()) throw berth::SystemError("INTERNAL", "eventfd", errno);
    thread_ = std::thread([this] { run(); });
  }
  ~IoThread() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(quit_fd_.get(), &one, sizeof one);
    thread_.join();
  }
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // The signal that stopped the VM, or 0. It is set before the stop is requested.
  int stop_signal() const { return stop_signal_.load(); }

 private:
  void run() {
    bool stdin_open = true;
    uint8_t buf[4096];
    for (;;) {
      pollfd fds[3] = {{quit_fd_.get(), POLLIN, 0}, {signal_fd_.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      int n = poll(fds, stdin_open ? 3 : 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents) return;
      if (fds[1].revents) {
        signalfd_siginfo si{};
        if (read(signal_fd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si) && stop_signal_.load() == 0) {
          stop_signal_.store(static_cast<int>(si.ssi_signo));
          try {
            machine_.stop();
          } catch (const std::exception&) {
            // stop() only fails if the VM already stopped, which is what was wanted.
          }
        }
      }
      if (stdin_open && fds[2].revents) {
        ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) {
          stdin_open = false;  // end of input (or an unreadable stdin): stop forwarding
          continue;
        }
        try {
          machine_.write_console(std::span<const uint8_t>(buf, static_cast<size_t>(r)));
        } catch (const std::exception&) {
          stdin_open = false;  // the machine no longer takes input
        }
      }
    }
  }

  Machine& machine_;
  berth::UniqueFd signal_fd_, quit_fd_;
  std::atomic<int> stop_signal_{0};
  std::thread thread_;
};

int exit_status(const ExitInfo& info, int stop_signal) {
  switch (info.reason) {
    case ExitReason::kGuestExit:
      return static_cast<int>(info.code & 0xff);
    case ExitReason::kPowerOff:
    case ExitReason::kSaved:  // only the worker saves; counted as an orderly end
      return 0;
    case ExitReason::kReset:
      return kStatusReset;
    case ExitReason::kHostStop:
      return stop_signal != 0 ? 128 + stop_signal : kStatusError;
    case ExitReason::kError:
      report_error("the VM stopped on an error: " + info.detail, "VM_ERROR");
      return kStatusError;
  }
  return kStatusError;
}

// --screenshot-after: after the delay (unless the VM ended first), writes the display's
// current picture as PNG and says so on stderr.
class Screenshot {
 public:
  Screenshot(Machine& machine, uint64_t seconds, std::string file) : machine_(machine), file_(std::move(file)) {
    if (file_.empty()) return;
    thread_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return done_; })) return;
      lock.unlock();
      take();
    });
  }
  ~Screenshot() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void take() {
    auto* fb = machine_.framebuffer();
    if (!fb) return;
    const auto mode = fb->mode();
    if (!mode.enabled) {
      std::fprintf(stderr, "berth-vmm: no screenshot: the display shows no picture (no mode set)\n");
      return;
    }
    try {
      berth::worker::write_png(file_, mode.width, mode.height,
                               berth::devices::display::to_rgb24(mode, fb->video_memory()));
      std::fprintf(stderr, "berth-vmm: screenshot %ux%u written to %s\n", mode.width, mode.height, file_.c_str());
    } catch (const berth::Error& e) {
      std::fprintf(stderr, "berth-vmm: %s\n", e.what());
    }
  }

  Machine& machine_;
  std::string file_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

int run(const Options& o) {
  // Block the stop signals before any thread exists so that every thread inherits the
  // mask and only the signalfd sees them; a closed stdout must not kill the VM either.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  MachineConfig config;
  config.memory_bytes = o.memory_mib << 20;
  config.vcpu_count = o.vcpus;
  config.boot.kernel_path = o.kernel;
  config.boot.initrd_path = o.initrd;
  config.boot.cmdline = o.cmdline;
  config.boot.vcpu_count = o.vcpus;
  config.test_exit_port = o.test_exit_port;
  config.restart_on_reset = !o.no_reboot;
  if (!o.uefi.empty()) {
    config.firmware.kind = berth::machine::FirmwareKind::kUefi;
    config.firmware.code_path = o.uefi;
    config.firmware.vars_path = o.vars;
  } else if (!o.bios.empty()) {
    config.firmware.kind = berth::machine::FirmwareKind::kBios;
    config.firmware.code_path = o.bios;
  }
  for (const auto& [d, scsi] : o.disks) {
    berth::machine::DiskConfig disk;
    disk.path = d;
    disk.scsi = scsi;
    if (d.size() > 3 && d.ends_with(":ro")) {
      disk.path = d.substr(0, d.size() - 3);
      disk.read_only = true;
    }
    disk.serial = "berth-slot-" + std::to_string(config.disks.size());
    config.disks.push_back(disk);
  }
  for (const auto& d : o.dvds) config.dvds.push_back({d});
  config.firmware.display = o.display;
  config.firmware.display_rom_path = o.display_rom;

  StdoutConsole console;
  Machine machine(config, console);
  TerminalMode terminal;
  int stop_signal = 0;
  ExitInfo info;
  {
    IoThread io(machine, stop_signals);
    machine.start();
    Screenshot shot(machine, o.screenshot_after, o.screenshot_file);
    info = machine.wait();
    stop_signal = io.stop_signal();  // the I/O thread set it before stop() returned
  }
  return exit_status(info, stop_signal);
}

// berth-vmm worker --spec P --socket P --display-socket P --pid-file P --exit-record P --start-error P
berth::worker::RunFiles parse_worker_args(int argc, char** argv) {
  berth::worker::RunFiles files;
  std::pair<const char*, std::string*> options[] = {{"--spec", &files.spec},
                                                    {"--socket", &files.socket},
                                                    {"--display-socket", &files.display},
                                                    {"--pid-file", &files.pid},
                                                    {"--exit-record", &files.last_exit},
                                                    {"--start-error", &files.start_error}};
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    bool known = false;
    for (auto& [name, target] : options) {
      if (arg != name) continue;
      if (i + 1 >= argc || argv[i + 1][0] == '\0') throw UsageError{std::string(name) + " needs a path"};
      *target = argv[++i];
      known = true;
    }
    if (!known) throw UsageError{"unknown worker argument '" + std::string(arg) + "' (see --help)"};
  }
  for (auto& [name, target] : options) {
    if (target->empty()) throw UsageError{std::string("the worker needs ") + name + " PATH (see --help)"};
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  // A closed stdin/stdout/stderr would let the hypervisor's descriptors take numbers 0-2;
  // put /dev/null there instead (stdin then just reads end of input).
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int null_fd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (null_fd != fd) return kStatusError;  // not even /dev/null: nowhere to report it
    }
  }
  try {
    if (argc >= 2 && std::string_view(argv[1]) == "worker") return berth::worker::run_worker(parse_worker_args(argc, argv));
    Options o = parse_args(argc, argv);
    if (o.help) {
      write_all(STDOUT_FILENO, std::span(reinterpret_cast<const uint8_t*>(kUsage), std::strlen(kUsage)));
      return 0;
    }
    return run(o);
  } catch (const UsageError& e) {
    report_error(e.message, "INVALID_ARGUMENT");
  } catch (const berth::Error& e) {
    report_error(e.what(), e.code());
  } catch (const std::exception& e) {
    report_error(e.what(), "INTERNAL");
  }
  return kStatusError;
}
