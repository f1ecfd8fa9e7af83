#include "worker/worker.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"
#include "machine/machine.h"
#include "vnc/vnc_server.h"
#include "worker/control_server.h"
#include "worker/display_input.h"
#include "worker/event_queue.h"
#include "worker/lifecycle.h"
#include "worker/machine_spec.h"
#include "worker/picture_scale.h"
#include "worker/png_file.h"
#include "worker/boot_watch.h"
#include "worker/protocol.h"
#include "worker/scrollback.h"

namespace berth::worker {

namespace {

using nlohmann::json;

uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

// A request refused with a code from app/api's ERROR_CODES.
struct Refusal {
  std::string code, message;
};

class Worker {
 public:
  Worker(const RunFiles& files, WorkerSpec spec) : files_(files), spec_(std::move(spec)) {}

  int run() {
    write_pid_file();
    server_ = std::make_unique<ControlServer>(files_.socket);
    log("serving " + files_.socket + " for VM '" + spec_.name + "' (" + spec_.vm_id + ")");
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    UniqueFd signal_fd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd.valid()) throw SystemError("START_FAILED", "signalfd", errno);

    // Creating the machine opens disks and loads the kernel: off the loop, so the socket
    // answers (Starting) meanwhile.
    creator_ = std::thread([this] {
      try {
        post_created(std::make_unique<machine::Machine>(spec_.machine, events_));
      } catch (const Error& e) {
        events_.post(CreateFailed{e.code(), e.what()});
      } catch (const std::exception& e) {
        events_.post(CreateFailed{"INTERNAL", e.what()});
      }
    });

    std::vector<pollfd> fds;
    while (!finished_) {
      fds.clear();
      fds.push_back({signal_fd.get(), POLLIN, 0});
      fds.push_back({events_.fd(), POLLIN, 0});
      server_->poll_fds(fds);
      int n = poll(fds.data(), fds.size(), 1000);
      if (n < 0 && errno != EINTR) throw SystemError("INTERNAL", "poll", errno);
      if (n > 0 && fds[0].revents) {
        signalfd_siginfo si{};
        while (read(signal_fd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          log(std::string(strsignal(static_cast<int>(si.ssi_signo))) + ": turning the VM off");
          turn_off();
        }
      }
      if (n > 0 && fds[1].revents) handle_events();
      if (n > 0 && !finished_) {
        std::vector<pollfd> clients(fds.begin() + 2, fds.end());
        server_->service(clients, [this](Client& c, std::string_view line) { handle_line(c, line); });
      }
      sample_cpu();
    }
    server_->shut_down(500);
    server_.reset();
    unlink(files_.pid.c_str());
    vnc_.reset();  // before the machine whose display and input it uses
    display_input_.reset();
    machine_.reset();  // joins the machine's threads; the VM has already stopped
    return exit_status_;
  }

  ~Worker() {
    if (creator_.joinable()) creator_.join();
  }

 private:
  void post_created(std::unique_ptr<machine::Machine> m) { events_.post(Created{std::move(m)}); }

  void write_pid_file() {
    std::string start = process_start_ticks();
    json pid = {{"pid", getpid()},
                {"procStart", start.empty() ? json(nullptr) : json(start)},
                {"startedAt", started_at_},
                {"protocol", kProtocolVersion}};
    write_file_atomic(files_.pid, dump(pid) + "\n");
  }

  void handle_events() {
    std::vector<uint8_t> console;
    std::deque<Event> events = events_.take(console);
    if (!console.empty() && spec_.machine.firmware.kind != machine::FirmwareKind::kNone) boot_watch_.feed(console);
    if (!console.empty() && spec_.console) {
      scrollback_.push(console);
      std::string line = console_event(console);
      server_->for_each([&](Client& c) {
        if (c.greeted && c.attached) server_->send(c, line);
      });
    }
    for (Event& e : events) {
      if (finished_) return;
      if (auto* created = std::get_if<Created>(&e)) on_created(std::move(created->machine));
      else if (auto* failed = std::get_if<CreateFailed>(&e)) on_start_failed(failed->code, failed->message);
      else if (auto* s = std::get_if<StateChanged>(&e)) on_machine_state(s->state);
      else if (auto* x = std::get_if<Exited>(&e)) on_exit(x->info);
    }
  }

  void on_created(std::unique_ptr<machine::Machine> m) {
    creator_.join();
    machine_ = std::move(m);
    if (stop_requested_) {
      on_exit({machine::ExitReason::kHostStop, 0, "turned off before it started"});
      return;
    }
    try {
      machine_->start();
    } catch (const Error& e) {
      on_start_failed(e.code(), e.what());
      return;
    }
    started_ms_ = monotonic_ms();
    set_state(VmState::kRunning);
    log("VM running");
    serve_display();
  }

  // The graphical console of a VM with a display: VNC on the run folder's display socket.
  // A VM whose console cannot be served still runs (the serial console remains); the log
  // says why.
  void serve_display() {
    devices::display::Framebuffer* framebuffer = machine_->framebuffer();
    if (!framebuffer) return;
    try {
      display_input_ = std::make_unique<DisplayInput>(*machine_);
      vnc_ = std::make_unique<vnc::VncServer>(*framebuffer, *display_input_, files_.display);
      log("serving the graphical console on " + files_.display);
    } catch (const Error& e) {
      vnc_.reset();
      log(std::string("no graphical console: ") + e.what());
    }
  }

  // The picture as PNG at path (op screenshot), no wider than max_width when that is set.
  void screenshot(const std::string& path, uint32_t max_width) {
    devices::display::Framebuffer* framebuffer = machine_ ? machine_->framebuffer() : nullptr;
    if (!framebuffer) throw Refusal{"INVALID_STATE", "this VM has no display: only Generation 1 and 2 VMs have one"};
    const devices::display::DisplayMode mode = framebuffer->mode();
    if (!mode.enabled) {
      throw Refusal{"INVALID_STATE", "the display shows nothing yet: the guest has not set a display mode; try again once it has started"};
    }
    try {
      const Picture picture = shrink_picture(mode.width, mode.height,
                                             devices::display::to_rgb24(mode, framebuffer->video_memory()), max_width);
      write_png(path, picture.width, picture.height, picture.rgb);
    } catch (const Error& e) {
      throw Refusal{"IO", e.what()};
    }
  }

  // Native codes are not service codes: START_FAILED, with the native code in the message.
  void on_start_failed(const std::string& code, const std::string& message) {
    if (creator_.joinable()) creator_.join();
    // A saved state that cannot be resumed keeps its own code: the services say the state
    // was kept, and how to delete it.
    bool service_code = code == "INVALID_CONFIG" || code == "UNSUPPORTED" || code.rfind("STATE_", 0) == 0;
    json error = {{"code", service_code ? code : "START_FAILED"},
                  {"message", service_code ? message : message + " (" + code + ")"}};
    log("start failed: " + error["message"].get<std::string>());
    write_file_atomic(files_.start_error, dump(error) + "\n");
    exit_status_ = 1;
    finished_ = true;
  }

  void on_machine_state(machine::MachineState s) {
    if (state_ == VmState::kStopping || state_ == VmState::kOff) return;
    if (s == machine::MachineState::kRunning) set_state(VmState::kRunning);
    else if (s == machine::MachineState::kPaused) set_state(VmState::kPaused);
  }

  void on_exit(const machine::ExitInfo& info) {
    if (finished_) return;
    std::string reason = machine::exit_reason_name(info.reason);
    log("VM ended: " + reason + " code " + std::to_string(info.code) + (info.detail.empty() ? "" : " (" + info.detail + ")"));
    json exit = {{"reason", reason}, {"code", info.code}, {"detail", info.detail}, {"at", iso_now()}, {"pid", getpid()}};
    std::string exit_json = dump(exit);
    write_file_atomic(files_.last_exit, exit_json + "\n");
    set_state(VmState::kOff);
    std::string line = exit_event(exit_json);
    server_->for_each([&](Client& c) {
      if (c.greeted) server_->send(c, line);
    });
    finished_ = true;
  }

  void set_state(VmState s) {
    if (state_ == s) return;
    state_ = s;
    std::string line = state_event(state_name(s));
    server_->for_each([&](Client& c) {
      if (c.greeted) server_->send(c, line);
    });
  }

  void turn_off() {
    if (state_ == VmState::kStopping || state_ == VmState::kOff) return;
    set_state(VmState::kStopping);
    if (!machine_) {
      stop_requested_ = true;  // acted on when the machine exists
      return;
    }
    machine_->stop();  // returns when every vCPU has stopped; the exit event follows
  }

  uint64_t uptime_ms() const { return machine_ && started_ms_ ? monotonic_ms() - started_ms_ : 0; }

  json state_result() const {
    json r = {{"state", state_name(state_)}, {"uptimeMs", uptime_ms()}};
    if (boot_watch_.problem()) r["bootProblem"] = *boot_watch_.problem();
    return r;
  }

  static uint64_t cpu_ns(const machine::MachineStats& s) {
    uint64_t sum = 0;
    for (const auto& v : s.vcpus) sum += v.cpu_time_ns;
    return sum;
  }

  // CPU usage: vCPU time used over wall time, as a share of the assigned vCPUs.
  void sample_cpu() {
    if (!machine_ || !started_ms_ || finished_) return;
    uint64_t now = monotonic_ms();
    if (last_sample_ms_ != 0 && now - last_sample_ms_ < 1000) return;
    uint64_t cpu = cpu_ns(machine_->stats());
    uint64_t since = last_sample_ms_ ? last_sample_ms_ : started_ms_;
    uint64_t used = cpu - last_sample_cpu_ns_;
    if (now > since) {
      double share = static_cast<double>(used) / 1e6 / static_cast<double>((now - since) * spec_.machine.vcpu_count) * 100;
      cpu_percent_ = share < 0 ? 0 : share > 100 ? 100 : share;
    }
    last_sample_ms_ = now;
    last_sample_cpu_ns_ = cpu;
  }

  json stats() {
    if (!machine_ || !started_ms_) {
      throw Refusal{"INVALID_STATE", "'" + spec_.name + "' is " + state_name(state_) + "; it has no statistics yet"};
    }
    sample_cpu();
    machine::MachineStats s = machine_->stats();
    json vcpus = json::array();
    for (const auto& v : s.vcpus) {
      vcpus.push_back({{"id", v.id},
                       {"cpuTimeMs", static_cast<double>(v.cpu_time_ns) / 1e6},
                       {"exits",
                        {{"io", v.exits_io},
                         {"mmio", v.exits_mmio},
                         {"halt", v.exits_halt},
                         {"interrupted", v.exits_interrupted},
                         {"shutdown", v.exits_shutdown},
                         {"other", v.exits_other}}}});
    }
    json disks = json::array();
    for (const auto& d : s.disks) {
      disks.push_back({{"path", d.path},
                       {"ioBackend", d.io_backend},
                       {"queues", d.queues},
                       {"completedRequests", d.completed},
                       {"peakInFlight", d.peak_in_flight}});
    }
    return {{"cpuUsagePercent", static_cast<double>(static_cast<int64_t>(cpu_percent_ * 10 + 0.5)) / 10},
            {"assignedMemoryMiB", static_cast<double>(s.memory_bytes) / (1024.0 * 1024.0)},
            {"residentBytes", s.rss_bytes},
            {"uptimeMs", uptime_ms()},
            {"vcpuCount", s.vcpus.size()},
            {"vcpus", vcpus},
            {"disks", disks},
            {"resets", s.resets}};
  }

  static json save_result(const machine::SaveResult& r) {
    return {{"stateBytes", r.state_bytes}, {"memoryBytes", r.memory_bytes}, {"pauseMs", r.pause_ms}, {"totalMs", r.total_ms}};
  }

  void check(Action action) const {
    if (auto why = refusal(spec_.name, state_, action)) throw Refusal{"INVALID_STATE", *why};
  }

  void handle_line(Client& c, std::string_view line) {
    ParseResult parsed = parse_request(line);
    if (!parsed.request) {
      server_->send(c, error_response(parsed.id, "PROTOCOL", parsed.error));
      return;
    }
    const Request& r = *parsed.request;
    try {
      json result = dispatch(c, r);
      server_->send(c, ok_response(r.id, dump(result)));
      if (r.op == Op::kConsoleAttach && r.replay) replay(c);
    } catch (const Refusal& e) {
      server_->send(c, error_response(r.id, e.code, e.message));
      if (r.op == Op::kHello) c.closing = true;
    } catch (const Error& e) {
      // A machine call failed (it raced with the VM's own end): say so, keep serving.
      server_->send(c, error_response(r.id, "INVALID_STATE", std::string(e.what()) + " (" + e.code() + ")"));
    }
  }

  void replay(Client& c) {
    std::vector<uint8_t> bytes = scrollback_.contents();
    constexpr size_t kChunk = 64 * 1024;
    for (size_t off = 0; off < bytes.size(); off += kChunk) {
      size_t n = std::min(kChunk, bytes.size() - off);
      server_->send(c, console_event(std::span<const uint8_t>(bytes.data() + off, n)));
    }
  }

  json dispatch(Client& c, const Request& r) {
    const std::string& name = spec_.name;
    if (r.op == Op::kHello) {
      if (r.protocol != kProtocolVersion) {
        throw Refusal{"UNSUPPORTED_VERSION", "this worker speaks protocol " + std::to_string(kProtocolVersion) +
                                                 ", the client " + std::to_string(r.protocol) +
                                                 "; use the Berth that started the VM"};
      }
      c.greeted = true;
      return {{"protocol", kProtocolVersion}, {"pid", getpid()}, {"vmId", spec_.vm_id}, {"startedAt", started_at_}};
    }
    if (!c.greeted) throw Refusal{"PROTOCOL", "the first request must be 'hello'"};
    switch (r.op) {
      case Op::kHello:
      case Op::kState:
        return state_result();
      case Op::kStats:
        return stats();
      case Op::kConsoleAttach:
        check(Action::kConsole);
        c.attached = true;
        return {{"replayedBytes", r.replay ? scrollback_.size() : 0}};
      case Op::kConsoleDetach:
        c.attached = false;
        return json::object();
      case Op::kConsoleInput:
        if (!machine_) throw Refusal{"INVALID_STATE", "'" + name + "' is " + state_name(state_) + "; wait until it runs"};
        machine_->write_console(r.data);
        return json::object();
      case Op::kPause:
        check(Action::kPause);
        machine_->pause();
        set_state(VmState::kPaused);
        return state_result();
      case Op::kResume:
        check(Action::kResume);
        machine_->resume();
        set_state(VmState::kRunning);
        return state_result();
      case Op::kReset:
        check(Action::kReset);
        machine_->reset();
        boot_watch_.clear();
        return state_result();
      case Op::kShutDown:
        // Presses the power button and answers at once: the guest's shutdown ends in the
        // exit event; the services decide how long to wait for it.
        check(Action::kShutDown);
        machine_->press_power_button();
        return state_result();
      case Op::kTurnOff:
        check(Action::kTurnOff);
        turn_off();
        return state_result();
      case Op::kSave: {
        check(Action::kSave);
        log("saving the VM to " + r.path);
        auto result = machine_->save(r.path);
        log("saved: " + std::to_string(result.memory_bytes >> 20) + " MiB of memory in " +
            std::to_string(static_cast<int>(result.total_ms)) + " ms");
        return save_result(result);
      }
      case Op::kScreenshot:
        if (state_ != VmState::kRunning && state_ != VmState::kPaused) {
          throw Refusal{"INVALID_STATE", "'" + spec_.name + "' is " + state_name(state_) + "; a screenshot needs it running or paused"};
        }
        screenshot(r.path, r.max_width);
        return json::object();
      case Op::kMedia: {
        if (state_ != VmState::kRunning && state_ != VmState::kPaused) {
          throw Refusal{"INVALID_STATE", "'" + spec_.name + "' is " + state_name(state_) +
                                             "; DVD media of a running or paused VM change here, otherwise in its settings"};
        }
        machine_->change_media(r.drive, r.path);
        log(r.path.empty() ? "DVD drive " + std::to_string(r.drive) + " ejected"
                           : "DVD drive " + std::to_string(r.drive) + " holds " + r.path);
        return json::object();
      }
      case Op::kCheckpoint: {
        check(Action::kSave);
        auto result = machine_->checkpoint(r.path, r.disks);
        if (!result.detail.empty()) log(result.detail);
        log("checkpoint written to " + r.path + "; guest paused " + std::to_string(static_cast<int>(result.pause_ms)) + " ms");
        return save_result(result);
      }
    }
    return json::object();
  }

  RunFiles files_;
  WorkerSpec spec_;
  EventQueue events_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<machine::Machine> machine_;
  std::thread creator_;
  Scrollback scrollback_{kScrollbackBytes};
  BootWatch boot_watch_;  // firmware VMs: "nothing to boot" in the state result
  std::unique_ptr<DisplayInput> display_input_;
  std::unique_ptr<vnc::VncServer> vnc_;
  std::string started_at_ = iso_now();
  VmState state_ = VmState::kStarting;
  bool stop_requested_ = false;
  bool finished_ = false;
  int exit_status_ = 0;
  uint64_t started_ms_ = 0;
  uint64_t last_sample_ms_ = 0, last_sample_cpu_ns_ = 0;
  double cpu_percent_ = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("INVALID_CONFIG", "cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

int run_worker(const RunFiles& files) {
  umask(077);
  // Stop signals go to the loop's signalfd; blocked before any thread exists so every
  // thread inherits the mask. SIGHUP is blocked too: the worker outlives its terminal.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::optional<WorkerSpec> spec;
  try {
    spec = parse_machine_spec(read_file(files.spec));
  } catch (const Error& e) {
    log(std::string("cannot read the machine specification: ") + e.what());
    json error = {{"code", e.code() == "UNSUPPORTED_VERSION" ? "UNSUPPORTED_VERSION" : "INVALID_CONFIG"}, {"message", e.what()}};
    write_file_atomic(files.start_error, dump(error) + "\n");
    return 1;
  }
  try {
    Worker worker(files, std::move(*spec));
    return worker.run();
  } catch (const Error& e) {  // no pid file, socket or event queue: the VM cannot start
    log(std::string("start failed: ") + e.what());
    json error = {{"code", "START_FAILED"}, {"message", std::string(e.what()) + " (" + e.code() + ")"}};
    write_file_atomic(files.start_error, dump(error) + "\n");
    return 1;
  }
}

}  // namespace berth::worker
