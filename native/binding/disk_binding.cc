// exports.disk: the Edit Disk operations for JavaScript. Every call returns a promise and
// runs on the libuv thread pool; long operations report progress through a callback and
// stop when their Operation handle is cancelled. Errors reject with an Error whose .code
// is the berth::Error code (INVALID_ARGUMENT for bad arguments, INTERNAL otherwise).
#include "binding/disk_binding.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "common/error.h"
#include "disk/block_device.h"
#include "disk/operations/operations.h"

namespace {

namespace disk = berth::disk;
namespace ops = berth::disk::ops;

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error invalid(Napi::Env env, const std::string& message) { return to_js_error(env, "INVALID_ARGUMENT", message); }

// Marks Operation objects so that arguments can be checked before they are unwrapped.
constexpr napi_type_tag kOperationTag = {0x6265727468646973ULL, 0x6b2d6f7065726174ULL};

struct ProgressEvent {
  uint64_t done = 0;
  uint64_t total = 0;
};

// new disk.Operation(): passed to a long operation; cancel() stops it at the next block.
class OperationHandle : public Napi::ObjectWrap<OperationHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DiskOperation",
                       {
                           InstanceMethod<&OperationHandle::Cancel>("cancel"),
                           InstanceAccessor<&OperationHandle::Cancelled>("cancelled"),
                           InstanceAccessor<&OperationHandle::Running>("running"),
                       });
  }

  explicit OperationHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OperationHandle>(info) {
    info.This().As<Napi::Object>().TypeTag(&kOperationTag);
  }

  std::shared_ptr<ops::OperationControl> control() const { return control_; }
  bool running = false;

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    control_->cancel();
    return info.Env().Undefined();
  }
  Napi::Value Cancelled(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), control_->cancelled.load());
  }
  Napi::Value Running(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), running); }

  std::shared_ptr<ops::OperationControl> control_ = std::make_shared<ops::OperationControl>();
};

// Runs one disk operation on the thread pool, forwards its progress to an optional
// callback and settles a promise.
class DiskWorker : public Napi::AsyncProgressQueueWorker<ProgressEvent> {
 public:
  using Work = std::function<void(ops::OperationControl*)>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise Run(Napi::Env env, Work work, Result result = nullptr, Napi::Value on_progress = Napi::Value(),
                           Napi::Value handle = Napi::Value()) {
    OperationHandle* op = nullptr;
    if (!handle.IsEmpty() && !handle.IsUndefined() && !handle.IsNull()) {
      if (!handle.IsObject() || !handle.As<Napi::Object>().CheckTypeTag(&kOperationTag)) {
        throw invalid(env, "the operation handle must come from new disk.Operation()");
      }
      op = OperationHandle::Unwrap(handle.As<Napi::Object>());
      if (op->running) throw invalid(env, "this operation handle is already driving another disk operation");
    }
    if (!on_progress.IsEmpty() && !on_progress.IsUndefined() && !on_progress.IsNull() && !on_progress.IsFunction()) {
      throw invalid(env, "the progress callback must be a function");
    }
    auto* w = new DiskWorker(env, std::move(work), std::move(result));  // freed by node-addon-api
    if (on_progress.IsFunction()) w->progress_cb_ = Napi::Persistent(on_progress.As<Napi::Function>());
    if (op) {
      op->running = true;
      w->op_ = op;
      w->op_ref_ = Napi::Persistent(handle.As<Napi::Object>());
      w->control_ = op->control();
    } else {
      w->control_ = std::make_shared<ops::OperationControl>();
    }
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    if (!progress_cb_.IsEmpty()) {
      control_->progress = [&progress](uint64_t done, uint64_t total) {
        ProgressEvent e{done, total};
        progress.Send(&e, 1);
      };
    }
    try {
      work_(control_.get());
    } catch (const berth::Error& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "INTERNAL";
      SetError(e.what());
    }
    control_->progress = nullptr;
  }

  void OnProgress(const ProgressEvent* events, size_t count) override {
    if (progress_cb_.IsEmpty() || callback_failed_) return;
    Napi::Env env = Env();
    for (size_t i = 0; i < count; ++i) {
      try {
        progress_cb_.Call({Napi::Number::New(env, static_cast<double>(events[i].done)),
                           Napi::Number::New(env, static_cast<double>(events[i].total))});
      } catch (const Napi::Error& e) {
        // A throwing progress callback cancels the operation; the promise rejects with
        // what it threw.
        callback_failed_ = true;
        callback_error_ = Napi::Persistent(e.Value());
        control_->cancel();
        return;
      }
    }
  }

  void OnOK() override {
    finish();
    if (callback_failed_) {
      deferred_.Reject(callback_error_.Value());
      return;
    }
    deferred_.Resolve(result_ ? result_(Env()) : Env().Undefined());
  }

  void OnError(const Napi::Error& e) override {
    finish();
    if (callback_failed_) {
      deferred_.Reject(callback_error_.Value());
      return;
    }
    deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value());
  }

 private:
  DiskWorker(Napi::Env env, Work work, Result result)
      : Napi::AsyncProgressQueueWorker<ProgressEvent>(env, "berth-disk-operation"),
        deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), result_(std::move(result)) {}

  void finish() {
    if (op_) op_->running = false;
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Result result_;
  std::string code_;
  Napi::FunctionReference progress_cb_;
  OperationHandle* op_ = nullptr;
  Napi::ObjectReference op_ref_;  // keeps the handle alive while the operation runs
  std::shared_ptr<ops::OperationControl> control_;
  bool callback_failed_ = false;
  Napi::ObjectReference callback_error_;
};

// Argument helpers: they throw INVALID_ARGUMENT naming the argument.
std::string path_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throw invalid(info.Env(), std::string(name) + " must be a file path");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos) {
    throw invalid(info.Env(), std::string(name) + " must be a non-empty file path without NUL characters");
  }
  return s;
}

uint64_t size_value(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsNumber()) throw invalid(env, std::string(name) + " must be a number of bytes");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d > 0) || d > 9007199254740991.0 || std::floor(d) != d || std::fmod(d, 512) != 0) {
    throw invalid(env, std::string(name) + " must be a positive whole number of bytes, a multiple of 512");
  }
  return static_cast<uint64_t>(d);
}

disk::Format format_value(Napi::Env env, Napi::Value v) {
  if (!v.IsString()) throw invalid(env, "format must be one of raw, qcow2, vhdx, vhd");
  std::string f = v.As<Napi::String>().Utf8Value();
  if (f == "raw") return disk::Format::kRaw;
  if (f == "qcow2") return disk::Format::kQcow2;
  if (f == "vhdx") return disk::Format::kVhdx;
  if (f == "vhd") return disk::Format::kVhd;
  throw invalid(env, "format must be one of raw, qcow2, vhdx, vhd, not " + f);
}

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) throw invalid(info.Env(), std::string(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

bool bool_field(Napi::Object o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw invalid(o.Env(), std::string(key) + " must be true or false");
  return v.As<Napi::Boolean>().Value();
}

// {format, size?, fixed?, clusterSize?, preallocateMetadata?, backingPath?}
disk::CreateOptions create_options(Napi::Object o, bool need_size) {
  Napi::Env env = o.Env();
  disk::CreateOptions c;
  c.format = format_value(env, o.Get("format"));
  Napi::Value size = o.Get("size");
  if (need_size || !size.IsUndefined()) c.size = size_value(env, size, "size");
  c.fixed = bool_field(o, "fixed", false);
  c.preallocate_metadata = bool_field(o, "preallocateMetadata", false);
  Napi::Value cs = o.Get("clusterSize");
  if (!cs.IsUndefined()) {
    double d = cs.IsNumber() ? cs.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 512 && d <= 256.0 * 1024 * 1024) || std::floor(d) != d ||
        (static_cast<uint64_t>(d) & (static_cast<uint64_t>(d) - 1)) != 0) {
      throw invalid(env, "clusterSize must be a power of two from 512 bytes to 256 MiB");
    }
    c.cluster_size = static_cast<uint32_t>(d);
  }
  Napi::Value bp = o.Get("backingPath");
  if (!bp.IsUndefined()) {
    if (!bp.IsString() || bp.As<Napi::String>().Utf8Value().empty()) throw invalid(env, "backingPath must be a file path");
    c.backing_path = bp.As<Napi::String>().Utf8Value();
  }
  return c;
}

Napi::Value optional_arg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i ? info[i] : info.Env().Undefined();
}

Napi::Object image_info(Napi::Env env, const disk::ImageInfo& i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("format", disk::format_name(i.format));
  o.Set("path", i.path);
  o.Set("virtualSize", static_cast<double>(i.virtual_size));
  o.Set("fileSize", static_cast<double>(i.file_size));
  o.Set("allocatedBytes", static_cast<double>(i.allocated_bytes));
  o.Set("subformat", i.subformat);
  o.Set("backingPath", i.backing_path);
  o.Set("backingResolved", i.backing_resolved);
  o.Set("dirty", i.dirty);
  o.Set("corrupt", i.corrupt);
  o.Set("clusterSize", i.cluster_size);
  return o;
}

// disk.create(path, {format, size, fixed?, clusterSize?, preallocateMetadata?, backingPath?})
Napi::Value Create(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  Napi::Object o = object_arg(info, 1, "options");
  bool has_backing = !o.Get("backingPath").IsUndefined();
  disk::CreateOptions c = create_options(o, !has_backing);
  return DiskWorker::Run(info.Env(), [path, c](ops::OperationControl*) { disk::create_disk(path, c); });
}

// disk.inspect(path) -> {images: ImageInfo[], ioPath?: {backend, reason}, chainError?: {code, message}}
Napi::Value Inspect(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  auto out = std::make_shared<ops::InspectResult>();
  return DiskWorker::Run(
      info.Env(), [path, out](ops::OperationControl*) { *out = ops::inspect(path); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        Napi::Array images = Napi::Array::New(env, out->images.size());
        for (size_t i = 0; i < out->images.size(); ++i) images.Set(static_cast<uint32_t>(i), image_info(env, out->images[i]));
        r.Set("images", images);
        if (!out->io_backend.empty()) {
          Napi::Object io = Napi::Object::New(env);
          io.Set("backend", out->io_backend);
          io.Set("reason", out->io_fallback_reason);
          r.Set("ioPath", io);
        }
        if (!out->chain_error_code.empty()) {
          Napi::Object e = Napi::Object::New(env);
          e.Set("code", out->chain_error_code);
          e.Set("message", out->chain_error);
          r.Set("chainError", e);
        }
        return r;
      });
}

// disk.check(path, repair) -> {leakedClusters, corruptions, repaired, problems}
Napi::Value Check(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  Napi::Value rv = optional_arg(info, 1);
  if (!rv.IsUndefined() && !rv.IsBoolean()) throw invalid(info.Env(), "repair must be true or false");
  bool repair = rv.IsBoolean() && rv.As<Napi::Boolean>().Value();
  auto out = std::make_shared<disk::CheckReport>();
  return DiskWorker::Run(
      info.Env(), [path, repair, out](ops::OperationControl*) { *out = ops::check(path, repair); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("leakedClusters", static_cast<double>(out->leaked_clusters));
        r.Set("corruptions", static_cast<double>(out->corruptions));
        r.Set("repaired", static_cast<double>(out->repaired));
        Napi::Array problems = Napi::Array::New(env, out->problems.size());
        for (size_t i = 0; i < out->problems.size(); ++i) problems.Set(static_cast<uint32_t>(i), out->problems[i]);
        r.Set("problems", problems);
        return r;
      });
}

// disk.convert(src, dst, {format, fixed?, clusterSize?, preallocateMetadata?, keepBacking?}, onProgress?, operation?)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  std::string src = path_arg(info, 0, "source");
  std::string dst = path_arg(info, 1, "target");
  Napi::Object o = object_arg(info, 2, "options");
  ops::ConvertOptions c;
  c.target = create_options(o, false);
  c.target.backing_path.clear();
  c.keep_backing = bool_field(o, "keepBacking", false);
  return DiskWorker::Run(
      info.Env(), [src, dst, c](ops::OperationControl* ctl) { ops::convert(src, dst, c, ctl); }, nullptr,
      optional_arg(info, 3), optional_arg(info, 4));
}

// disk.expand(path, newSize)
Napi::Value Expand(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  uint64_t size = size_value(info.Env(), optional_arg(info, 1), "newSize");
  return DiskWorker::Run(info.Env(), [path, size](ops::OperationControl*) { ops::expand(path, size); });
}

// disk.shrink(path, newSize, onProgress?, operation?)
Napi::Value Shrink(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  uint64_t size = size_value(info.Env(), optional_arg(info, 1), "newSize");
  return DiskWorker::Run(
      info.Env(), [path, size](ops::OperationControl* ctl) { ops::shrink(path, size, ctl); }, nullptr,
      optional_arg(info, 2), optional_arg(info, 3));
}

// disk.minShrinkSize(path, onProgress?, operation?) -> bytes
Napi::Value MinShrinkSize(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  auto out = std::make_shared<uint64_t>(0);
  return DiskWorker::Run(
      info.Env(), [path, out](ops::OperationControl* ctl) { *out = ops::min_shrink_size(path, ctl); },
      [out](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*out)); },
      optional_arg(info, 1), optional_arg(info, 2));
}

// disk.compact(path, onProgress?, operation?)
Napi::Value Compact(const Napi::CallbackInfo& info) {
  std::string path = path_arg(info, 0, "path");
  return DiskWorker::Run(
      info.Env(), [path](ops::OperationControl* ctl) { ops::compact(path, ctl); }, nullptr, optional_arg(info, 1),
      optional_arg(info, 2));
}

// disk.merge(child, null, null, onProgress?, operation?): into the parent;
// disk.merge(child, newPath, {format, fixed?, clusterSize?}, onProgress?, operation?): into a new disk.
Napi::Value Merge(const Napi::CallbackInfo& info) {
  std::string child = path_arg(info, 0, "child");
  Napi::Value target = optional_arg(info, 1);
  if (target.IsUndefined() || target.IsNull()) {
    return DiskWorker::Run(
        info.Env(), [child](ops::OperationControl* ctl) { ops::merge_into_parent(child, ctl); }, nullptr,
        optional_arg(info, 3), optional_arg(info, 4));
  }
  std::string dst = path_arg(info, 1, "newPath");
  disk::CreateOptions c = create_options(object_arg(info, 2, "options"), false);
  c.backing_path.clear();
  return DiskWorker::Run(
      info.Env(), [child, dst, c](ops::OperationControl* ctl) { ops::merge_into_new(child, dst, c, ctl); }, nullptr,
      optional_arg(info, 3), optional_arg(info, 4));
}

// disk.reconnect(child, newParent) -> the path recorded in the child
Napi::Value Reconnect(const Napi::CallbackInfo& info) {
  std::string child = path_arg(info, 0, "child");
  std::string parent = path_arg(info, 1, "newParent");
  auto recorded = std::make_shared<std::string>();
  return DiskWorker::Run(
      info.Env(),
      [child, parent, recorded](ops::OperationControl*) {
        *recorded = ops::reconnect(child, parent);
      },
      [recorded](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *recorded); });
}

}  // namespace

void registerDiskApi(Napi::Env env, Napi::Object exports) {
  Napi::Object d = Napi::Object::New(env);
  d.Set("create", Napi::Function::New(env, Create, "create"));
  d.Set("inspect", Napi::Function::New(env, Inspect, "inspect"));
  d.Set("check", Napi::Function::New(env, Check, "check"));
  d.Set("convert", Napi::Function::New(env, Convert, "convert"));
  d.Set("expand", Napi::Function::New(env, Expand, "expand"));
  d.Set("shrink", Napi::Function::New(env, Shrink, "shrink"));
  d.Set("minShrinkSize", Napi::Function::New(env, MinShrinkSize, "minShrinkSize"));
  d.Set("compact", Napi::Function::New(env, Compact, "compact"));
  d.Set("merge", Napi::Function::New(env, Merge, "merge"));
  d.Set("reconnect", Napi::Function::New(env, Reconnect, "reconnect"));
  d.Set("Operation", OperationHandle::Define(env));
  exports.Set("disk", d);
}
