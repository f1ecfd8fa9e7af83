// The addon's JavaScript surface. This is the only file that includes napi.h: it converts
// arguments and results, runs blocking work off the JS thread and forwards machine events
// through a thread-safe function.
#include <napi.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <variant>

#include "binding/disk_binding.h"
#include "binding/nic_config.h"
#include "common/error.h"
#include "hv/hv.h"
#include "machine/machine.h"

namespace {

using berth::machine::ExitInfo;
using berth::machine::Machine;
using berth::machine::MachineState;

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

// Runs work on the libuv thread pool and settles a promise with its result.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  PromiseWorker(Napi::Env env, Napi::Object owner, Work work, Result result)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        owner_(Napi::Persistent(owner)), work_(std::move(work)), result_(std::move(result)) {}

  // Runs work off the JS thread; owner (the JS object whose native state work uses) stays
  // alive until the promise settles.
  static Napi::Promise Run(Napi::Env env, Napi::Object owner, Work work, Result result = nullptr) {
    auto* w = new PromiseWorker(env, owner, std::move(work), std::move(result));  // freed by node-addon-api
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const berth::Error& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    deferred_.Resolve(result_ ? result_(Env()) : Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  Work work_;
  Result result_;
  std::string code_;
};

// Events on their way from machine threads to JavaScript. Console bytes are buffered and
// flushed by one queued call, so a chatty guest costs one JS call per burst, not per byte.
struct StateEvent { MachineState state; };
struct ResetEvent { std::string reason; };
struct ExitEvent { ExitInfo info; };
struct ConsoleFlush {
  int index;  // 0: COM1 ('console'), 1: the virtio console ('console2')
};
using Event = std::variant<StateEvent, ResetEvent, ExitEvent, ConsoleFlush>;

struct EventChannel;
void deliver(Napi::Env env, Napi::Function callback, std::shared_ptr<EventChannel>* channel_ptr, Event* raw);
using EventTsfn = Napi::TypedThreadSafeFunction<std::shared_ptr<EventChannel>, Event, deliver>;

struct EventChannel {
  std::mutex mu;
  std::vector<uint8_t> console[2];
  bool flush_queued[2] = {false, false};
  // Set when Node finalizes the thread-safe function (at environment teardown it can go
  // before the handle); after that nothing may call into it.
  bool closed = false;
  EventTsfn tsfn;  // so the exit event can stop keeping the process alive
};

class EventSink final : public berth::machine::MachineEvents {
 public:
  EventSink(EventTsfn tsfn, std::shared_ptr<EventChannel> channel)
      : tsfn_(std::move(tsfn)), channel_(std::move(channel)) {}

  void on_state(MachineState s) override { post(new Event(StateEvent{s})); }
  void on_reset(const std::string& reason) override { post(new Event(ResetEvent{reason})); }
  void on_exit(const ExitInfo& info) override { post(new Event(ExitEvent{info})); }
  void on_console_output(std::span<const uint8_t> bytes) override { console(0, bytes); }
  void on_console2_output(std::span<const uint8_t> bytes) override { console(1, bytes); }

 private:
  void console(int index, std::span<const uint8_t> bytes) {
    std::lock_guard<std::mutex> lock(channel_->mu);
    if (channel_->closed) return;
    auto& buf = channel_->console[index];
    buf.insert(buf.end(), bytes.begin(), bytes.end());
    if (channel_->flush_queued[index]) return;
    auto* e = new Event(ConsoleFlush{index});
    if (tsfn_.NonBlockingCall(e) == napi_ok) channel_->flush_queued[index] = true;
    else delete e;
  }
  void post(Event* e) {
    std::lock_guard<std::mutex> lock(channel_->mu);
    if (channel_->closed || tsfn_.NonBlockingCall(e) != napi_ok) delete e;  // the JS side is gone
  }
  EventTsfn tsfn_;
  std::shared_ptr<EventChannel> channel_;
};

void deliver(Napi::Env env, Napi::Function callback, std::shared_ptr<EventChannel>* channel_ptr, Event* raw) {
  std::unique_ptr<Event> event(raw);
  if (env == nullptr || callback.IsEmpty()) return;
  Napi::Object obj = Napi::Object::New(env);
  if (auto* s = std::get_if<StateEvent>(event.get())) {
    obj.Set("type", "state");
    obj.Set("state", berth::machine::state_name(s->state));
  } else if (auto* r = std::get_if<ResetEvent>(event.get())) {
    obj.Set("type", "reset");
    obj.Set("reason", r->reason);
  } else if (auto* x = std::get_if<ExitEvent>(event.get())) {
    obj.Set("type", "exit");
    obj.Set("reason", berth::machine::exit_reason_name(x->info.reason));
    obj.Set("code", Napi::Number::New(env, x->info.code));
    obj.Set("detail", x->info.detail);
    (*channel_ptr)->tsfn.Unref(env);  // a stopped VM no longer keeps the process alive
  } else {
    int index = std::get<ConsoleFlush>(*event).index;
    std::vector<uint8_t> bytes;
    {
      std::lock_guard<std::mutex> lock((*channel_ptr)->mu);
      bytes.swap((*channel_ptr)->console[index]);
      (*channel_ptr)->flush_queued[index] = false;
    }
    if (bytes.empty()) return;
    obj.Set("type", index == 0 ? "console" : "console2");
    obj.Set("data", Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size()));
  }
  callback.Call({obj});
}

class MachineHandle : public Napi::ObjectWrap<MachineHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMachine",
                       {
                           InstanceMethod<&MachineHandle::Create>("create"),
                           InstanceMethod<&MachineHandle::Start>("start"),
                           InstanceMethod<&MachineHandle::Pause>("pause"),
                           InstanceMethod<&MachineHandle::Resume>("resume"),
                           InstanceMethod<&MachineHandle::Stop>("stop"),
                           InstanceMethod<&MachineHandle::Reset>("reset"),
                           InstanceMethod<&MachineHandle::WriteConsole>("writeConsole"),
                           InstanceMethod<&MachineHandle::WriteConsole2>("writeConsole2"),
                           InstanceMethod<&MachineHandle::Stats>("stats"),
                           InstanceMethod<&MachineHandle::State>("state"),
                       });
  }

  // new NativeMachine(onEvent)
  explicit MachineHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MachineHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      throw to_js_error(env, "INVALID_ARGUMENT", "NativeMachine needs an event callback function");
    }
    channel_ = std::make_shared<EventChannel>();
    tsfn_ = EventTsfn::New(env, info[0].As<Napi::Function>(), "berth-machine-events", 0, 1,
                           new std::shared_ptr<EventChannel>(channel_),
                           [](Napi::Env, void*, std::shared_ptr<EventChannel>* ctx) {
                             {
                               std::lock_guard<std::mutex> lock((*ctx)->mu);
                               (*ctx)->closed = true;
                             }
                             delete ctx;
                           });
    // Only a running VM keeps the process alive (see Start and the exit event).
    tsfn_.Unref(env);
    channel_->tsfn = tsfn_;
    sink_ = std::make_unique<EventSink>(tsfn_, channel_);
  }

  ~MachineHandle() override {
    machine_.reset();  // stops the VM and joins its threads before the channel goes away
    sink_.reset();
    bool closed;
    {
      std::lock_guard<std::mutex> lock(channel_->mu);
      closed = channel_->closed;
    }
    if (!closed) tsfn_.Release();
  }

 private:
  Machine& machine(Napi::Env env) {
    if (!machine_) throw to_js_error(env, "VM_STATE", "the VM has not been created yet: call create() first");
    return *machine_;
  }

  // create({memoryMiB, vcpus, kernelPath, initrdPath, cmdline, testExitPort, restartOnReset,
  //         rng, virtioConsole, disks})
  Napi::Value Create(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (machine_ || creating_) throw to_js_error(env, "VM_STATE", "create() was already called on this VM");
    if (info.Length() < 1 || !info[0].IsObject()) throw to_js_error(env, "INVALID_ARGUMENT", "create() needs a config object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto number = [&](const char* key) -> double {
      Napi::Value v = o.Get(key);
      if (!v.IsNumber()) throw to_js_error(env, "INVALID_ARGUMENT", std::string("config.") + key + " must be a number");
      return v.As<Napi::Number>().DoubleValue();
    };
    auto string = [&](const char* key, bool optional) -> std::string {
      Napi::Value v = o.Get(key);
      if (optional && (v.IsUndefined() || v.IsNull())) return "";
      if (!v.IsString()) throw to_js_error(env, "INVALID_ARGUMENT", std::string("config.") + key + " must be a string");
      return v.As<Napi::String>().Utf8Value();
    };
    auto boolean = [&](const char* key, bool fallback) -> bool {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return fallback;
      if (!v.IsBoolean()) throw to_js_error(env, "INVALID_ARGUMENT", std::string("config.") + key + " must be a boolean");
      return v.As<Napi::Boolean>().Value();
    };
    berth::machine::MachineConfig config;
    double mib = number("memoryMiB");
    double vcpus = number("vcpus");
    if (!(mib >= 1 && mib <= (1 << 24)) || mib != static_cast<uint64_t>(mib))
      throw to_js_error(env, "INVALID_ARGUMENT", "config.memoryMiB must be a whole number of MiB");
    if (!(vcpus >= 1 && vcpus <= 1024) || vcpus != static_cast<uint32_t>(vcpus))
      throw to_js_error(env, "INVALID_ARGUMENT", "config.vcpus must be a whole number from 1");
    config.memory_bytes = static_cast<uint64_t>(mib) << 20;
    config.vcpu_count = static_cast<uint32_t>(vcpus);
    config.boot.kernel_path = string("kernelPath", false);
    config.boot.initrd_path = string("initrdPath", true);
    config.boot.cmdline = string("cmdline", true);
    config.test_exit_port = boolean("testExitPort", false);
    config.restart_on_reset = boolean("restartOnReset", true);
    config.rng = boolean("rng", false);
    config.virtio_console = boolean("virtioConsole", false);
    config.nics = parseNicConfigs(env, o.Get("nics"));
    // disks: [{path, readOnly?, format?, serial?}]
    Napi::Value disks = o.Get("disks");
    if (!disks.IsUndefined() && !disks.IsNull()) {
      if (!disks.IsArray()) throw to_js_error(env, "INVALID_ARGUMENT", "config.disks must be an array");
      Napi::Array list = disks.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); ++i) {
        std::string where = "config.disks[" + std::to_string(i) + "]";
        Napi::Value item = list.Get(i);
        if (!item.IsObject()) throw to_js_error(env, "INVALID_ARGUMENT", where + " must be an object");
        Napi::Object d = item.As<Napi::Object>();
        auto text = [&](const char* key, bool optional) -> std::string {
          Napi::Value v = d.Get(key);
          if (optional && (v.IsUndefined() || v.IsNull())) return "";
          if (!v.IsString()) throw to_js_error(env, "INVALID_ARGUMENT", where + "." + key + " must be a string");
          return v.As<Napi::String>().Utf8Value();
        };
        berth::machine::DiskConfig disk;
        disk.path = text("path", false);
        if (disk.path.empty()) throw to_js_error(env, "INVALID_ARGUMENT", where + ".path must not be empty");
        disk.format = text("format", true);
        disk.serial = text("serial", true);
        if (disk.serial.size() > 20) throw to_js_error(env, "INVALID_ARGUMENT", where + ".serial is longer than 20 bytes");
        Napi::Value ro = d.Get("readOnly");
        if (!ro.IsUndefined() && !ro.IsBoolean()) throw to_js_error(env, "INVALID_ARGUMENT", where + ".readOnly must be a boolean");
        disk.read_only = ro.IsBoolean() && ro.As<Napi::Boolean>().Value();
        config.disks.push_back(std::move(disk));
      }
    }
    creating_ = true;
    auto holder = std::make_shared<std::unique_ptr<Machine>>();
    EventSink* sink = sink_.get();
    return PromiseWorker::Run(
        env, Value(), [holder, config, sink] { *holder = std::make_unique<Machine>(config, *sink); },
        [this, holder](Napi::Env e) -> Napi::Value {
          machine_ = std::move(*holder);
          creating_ = false;
          return e.Undefined();
        });
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Machine& m = machine(env);
    bool paused = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    tsfn_.Ref(env);  // released when the exit event reaches JavaScript
    return PromiseWorker::Run(env, Value(), [&m, paused] { m.start(paused); });
  }
  Napi::Value Pause(const Napi::CallbackInfo& info) {
    Machine& m = machine(info.Env());
    return PromiseWorker::Run(info.Env(), Value(), [&m] { m.pause(); });
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    Machine& m = machine(info.Env());
    return PromiseWorker::Run(info.Env(), Value(), [&m] { m.resume(); });
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Machine& m = machine(info.Env());
    return PromiseWorker::Run(info.Env(), Value(), [&m] { m.stop(); });
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    Machine& m = machine(info.Env());
    return PromiseWorker::Run(info.Env(), Value(), [&m] { m.reset(); });
  }

  Napi::Value WriteConsole(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Machine& m = machine(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw to_js_error(env, "INVALID_ARGUMENT", "writeConsole() needs a Uint8Array");
    auto arr = info[0].As<Napi::Uint8Array>();
    m.write_console(std::span<const uint8_t>(arr.Data(), arr.ByteLength()));
    return env.Undefined();
  }

  Napi::Value WriteConsole2(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Machine& m = machine(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw to_js_error(env, "INVALID_ARGUMENT", "writeConsole2() needs a Uint8Array");
    auto arr = info[0].As<Napi::Uint8Array>();
    m.write_console2(std::span<const uint8_t>(arr.Data(), arr.ByteLength()));
    return env.Undefined();
  }

  Napi::Value State(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), berth::machine::state_name(machine(info.Env()).state()));
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = machine(env).stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("uptimeMs", s.uptime_ns / 1e6);
    o.Set("rssBytes", static_cast<double>(s.rss_bytes));
    o.Set("peakRssBytes", static_cast<double>(s.peak_rss_bytes));
    o.Set("memoryBytes", static_cast<double>(s.memory_bytes));
    o.Set("resets", s.resets);
    o.Set("bootProtocol", s.boot_protocol);
    Napi::Array vcpus = Napi::Array::New(env, s.vcpus.size());
    for (size_t i = 0; i < s.vcpus.size(); ++i) {
      const auto& v = s.vcpus[i];
      Napi::Object exits = Napi::Object::New(env);
      exits.Set("io", static_cast<double>(v.exits_io));
      exits.Set("mmio", static_cast<double>(v.exits_mmio));
      exits.Set("halt", static_cast<double>(v.exits_halt));
      exits.Set("interrupted", static_cast<double>(v.exits_interrupted));
      exits.Set("shutdown", static_cast<double>(v.exits_shutdown));
      exits.Set("other", static_cast<double>(v.exits_other));
      Napi::Object vo = Napi::Object::New(env);
      vo.Set("id", v.id);
      vo.Set("exits", exits);
      vo.Set("cpuTimeMs", v.cpu_time_ns / 1e6);
      vcpus.Set(static_cast<uint32_t>(i), vo);
    }
    o.Set("vcpus", vcpus);
    Napi::Array disks = Napi::Array::New(env, s.disks.size());
    for (size_t i = 0; i < s.disks.size(); ++i) {
      const auto& d = s.disks[i];
      Napi::Object dobj = Napi::Object::New(env);
      dobj.Set("path", d.path);
      dobj.Set("ioBackend", d.io_backend);
      dobj.Set("queues", d.queues);
      dobj.Set("completedRequests", static_cast<double>(d.completed));
      dobj.Set("peakInFlight", d.peak_in_flight);
      disks.Set(static_cast<uint32_t>(i), dobj);
    }
    o.Set("disks", disks);
    return o;
  }

 private:
  std::shared_ptr<EventChannel> channel_;
  EventTsfn tsfn_;
  std::unique_ptr<EventSink> sink_;
  std::unique_ptr<Machine> machine_;
  bool creating_ = false;
};

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    auto hv = berth::hv::open_hypervisor();
    const auto& c = hv->capabilities();
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", c.backend);
    o.Set("apiVersion", c.api_version);
    o.Set("maxVcpus", c.max_vcpus);
    o.Set("irqchip", c.irqchip);
    o.Set("ioeventfd", c.ioeventfd);
    o.Set("irqfd", c.irqfd);
    o.Set("immediateExit", c.immediate_exit);
    return o;
  } catch (const berth::Error& e) {
    throw to_js_error(env, e.code(), e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("NativeMachine", MachineHandle::Define(env));
  registerDiskApi(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(berth, Init)
