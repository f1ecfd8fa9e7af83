#include "worker/protocol.h"

#include <nlohmann/json.hpp>

#include <array>
#include <utility>

#include "worker/base64.h"

namespace berth::worker {

namespace {

using nlohmann::json;

// JavaScript's Number.MAX_SAFE_INTEGER: the schema's z.int() accepts no more.
constexpr double kMaxSafeInteger = 9007199254740991.0;

constexpr std::array<std::pair<std::string_view, Op>, 15> kOps{{
    {"hello", Op::kHello},
    {"state", Op::kState},
    {"stats", Op::kStats},
    {"console-attach", Op::kConsoleAttach},
    {"console-detach", Op::kConsoleDetach},
    {"console-input", Op::kConsoleInput},
    {"pause", Op::kPause},
    {"resume", Op::kResume},
    {"turn-off", Op::kTurnOff},
    {"reset", Op::kReset},
    {"shut-down", Op::kShutDown},
    {"save", Op::kSave},
    {"checkpoint", Op::kCheckpoint},
    {"media", Op::kMedia},
    {"screenshot", Op::kScreenshot},
}};

// An absolute path without NUL characters, as the services give the worker.
std::optional<std::string> absolute_path(const json& v) {
  if (!v.is_string()) return std::nullopt;
  const std::string& p = v.get_ref<const std::string&>();
  if (p.empty() || p[0] != '/' || p.size() > kMaxPathBytes || p.find('\0') != std::string::npos) return std::nullopt;
  return p;
}

// A whole number as JSON gives it (integer, or a float with no fraction), like z.int().
std::optional<int64_t> whole_number(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(kMaxSafeInteger)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < -static_cast<int64_t>(kMaxSafeInteger)) return std::nullopt;
    return i;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d != d || d > kMaxSafeInteger || d < -kMaxSafeInteger || static_cast<double>(static_cast<int64_t>(d)) != d) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

bool canonical_base64_chars(std::string_view s) {
  // ^[A-Za-z0-9+/]*={0,2}$, as the schema says
  size_t end = s.size();
  size_t pad = 0;
  while (end > 0 && s[end - 1] == '=' && pad < 2) {
    --end;
    ++pad;
  }
  for (size_t i = 0; i < end; ++i) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) return false;
  }
  return true;
}

std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

ParseResult parse_request(std::string_view line) {
  ParseResult r;
  json v = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) {
    r.error = "not JSON";
    return r;
  }
  if (!v.is_object()) {
    r.error = "(request): must be an object";
    return r;
  }
  Request req;
  auto id_it = v.find("id");
  if (id_it == v.end()) {
    r.error = "id: is required";
    return r;
  }
  auto id = whole_number(*id_it);
  if (!id || *id < 0) {
    r.error = "id: must be a whole number from 0";
    return r;
  }
  req.id = static_cast<uint64_t>(*id);
  r.id = req.id;

  auto op_it = v.find("op");
  if (op_it == v.end() || !op_it->is_string()) {
    r.error = "op: must be one of hello, state, stats, console-attach, console-detach, console-input, pause, resume, turn-off, reset, shut-down, save, checkpoint";
    return r;
  }
  const std::string& op_name = op_it->get_ref<const std::string&>();
  bool known = false;
  for (const auto& [name, op] : kOps) {
    if (name == op_name) {
      req.op = op;
      known = true;
    }
  }
  if (!known) {
    r.error = "op: unknown operation '" + op_name + "'";
    return r;
  }

  // The fields each operation takes besides id and op; anything else is refused.
  std::vector<std::string_view> fields;
  switch (req.op) {
    case Op::kHello: {
      fields = {"protocol", "client"};
      auto p = v.find("protocol");
      auto n = p == v.end() ? std::nullopt : whole_number(*p);
      if (!n) {
        r.error = "protocol: must be a whole number";
        return r;
      }
      req.protocol = *n;
      auto c = v.find("client");
      if (c == v.end() || !c->is_string()) {
        r.error = "client: must be a string";
        return r;
      }
      req.client = c->get<std::string>();
      if (req.client.size() > kMaxClientNameBytes) {
        r.error = "client: must be at most " + std::to_string(kMaxClientNameBytes) + " characters";
        return r;
      }
      break;
    }
    case Op::kConsoleAttach: {
      fields = {"replay"};
      auto p = v.find("replay");
      if (p != v.end()) {
        if (!p->is_boolean()) {
          r.error = "replay: must be true or false";
          return r;
        }
        req.replay = p->get<bool>();
      }
      break;
    }
    case Op::kConsoleInput: {
      fields = {"data"};
      auto d = v.find("data");
      if (d == v.end() || !d->is_string()) {
        r.error = "data: must be a base64 string";
        return r;
      }
      const std::string& text = d->get_ref<const std::string&>();
      if (text.size() > kMaxConsoleInputChars) {
        r.error = "data: must be at most " + std::to_string(kMaxConsoleInputChars) + " characters";
        return r;
      }
      auto bytes = canonical_base64_chars(text) ? base64_decode(text) : std::nullopt;
      if (!bytes) {
        r.error = "data: must be base64";
        return r;
      }
      req.data = std::move(*bytes);
      break;
    }
    case Op::kSave:
    case Op::kScreenshot:
    case Op::kCheckpoint: {
      fields = {"path"};
      auto p = v.find("path");
      auto path = p == v.end() ? std::nullopt : absolute_path(*p);
      if (!path) {
        r.error = "path: must be an absolute file path";
        return r;
      }
      req.path = *path;
      if (req.op == Op::kScreenshot) {
        fields = {"path", "maxWidth"};
        auto w = v.find("maxWidth");
        if (w != v.end()) {
          if (!w->is_number_unsigned() || w->get<uint64_t>() < kMinScreenshotWidth || w->get<uint64_t>() > kMaxScreenshotWidth) {
            r.error = "maxWidth: must be a whole number of pixels from " + std::to_string(kMinScreenshotWidth) + " to " +
                      std::to_string(kMaxScreenshotWidth);
            return r;
          }
          req.max_width = static_cast<uint32_t>(w->get<uint64_t>());
        }
      }
      if (req.op != Op::kCheckpoint) break;
      fields = {"path", "disks"};
      auto d = v.find("disks");
      if (d == v.end() || !d->is_array() || d->size() > kMaxCheckpointDisks) {
        r.error = "disks: must be a list of at most " + std::to_string(kMaxCheckpointDisks) + " absolute file paths";
        return r;
      }
      for (size_t i = 0; i < d->size(); ++i) {
        auto disk = absolute_path((*d)[i]);
        if (!disk) {
          r.error = "disks[" + std::to_string(i) + "]: must be an absolute file path";
          return r;
        }
        req.disks.push_back(*disk);
      }
      break;
    }
    case Op::kMedia: {
      fields = {"drive", "path"};
      auto d = v.find("drive");
      if (d == v.end() || !d->is_number_unsigned() || d->get<uint64_t>() > UINT32_MAX) {
        r.error = "drive: must be a DVD drive's index (0, 1, ...)";
        return r;
      }
      req.drive = static_cast<uint32_t>(d->get<uint64_t>());
      auto p = v.find("path");
      if (p != v.end() && p->is_string() && p->get_ref<const std::string&>().empty()) break;  // eject
      auto path = p == v.end() ? std::nullopt : absolute_path(*p);
      if (!path) {
        r.error = "path: must be an absolute path of an ISO image, or '' to eject";
        return r;
      }
      req.path = *path;
      break;
    }
    default:
      break;
  }
  for (const auto& [key, value] : v.items()) {
    if (key == "id" || key == "op") continue;
    bool expected = false;
    for (std::string_view f : fields) expected = expected || f == key;
    if (!expected) {
      r.error = "(request): unknown field '" + key + "'";
      return r;
    }
  }
  r.request = std::move(req);
  return r;
}

std::string ok_response(uint64_t id, const std::string& result_json) {
  return "{\"id\":" + std::to_string(id) + ",\"ok\":true,\"result\":" + result_json + "}\n";
}

std::string error_response(std::optional<uint64_t> id, std::string_view code, std::string_view message) {
  json out = {{"id", id ? json(*id) : json(nullptr)},
              {"ok", false},
              {"error", {{"code", code}, {"message", message}}}};
  return dump(out) + "\n";
}

std::string console_event(std::span<const uint8_t> bytes) {
  return "{\"event\":\"console\",\"data\":\"" + base64_encode(bytes) + "\"}\n";
}

std::string state_event(std::string_view state) { return dump(json{{"event", "state"}, {"state", state}}) + "\n"; }

std::string exit_event(const std::string& exit_json) { return "{\"event\":\"exit\",\"exit\":" + exit_json + "}\n"; }

}  // namespace berth::worker
