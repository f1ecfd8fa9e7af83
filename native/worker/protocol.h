// The control protocol of app/api/protocol.ts, the worker's side: newline-delimited JSON,
// requests validated as strictly as the TypeScript schema does (unknown fields, wrong
// types, bad base64 refused, naming the field), responses and events built for the
// TypeScript client. Lines come from any local process that can open the socket.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace berth::worker {

constexpr int kProtocolVersion = 5;  // app/api/protocol.ts PROTOCOL_VERSION
constexpr size_t kMaxLineBytes = 1024 * 1024;  // a longer line closes the connection
constexpr size_t kScrollbackBytes = 256 * 1024;
constexpr size_t kMaxClientNameBytes = 200;
constexpr size_t kMaxConsoleInputChars = 1024 * 1024;  // base64 characters

enum class Op { kHello, kState, kStats, kConsoleAttach, kConsoleDetach, kConsoleInput, kPause, kResume, kTurnOff, kReset, kShutDown, kSave, kCheckpoint, kMedia, kScreenshot };

struct Request {
  uint64_t id = 0;
  Op op = Op::kState;
  int64_t protocol = 0;        // hello
  std::string client;          // hello
  bool replay = true;          // console-attach
  std::vector<uint8_t> data;   // console-input, decoded
  std::string path;            // save, checkpoint: the state file to write; screenshot: the PNG (absolute)
  std::vector<std::string> disks;  // checkpoint: each disk's new file (absolute)
  uint32_t drive = 0;              // media: the DVD drive's index; path "" ejects
  uint32_t max_width = 0;          // screenshot: shrink wider pictures to this width (0: as they are)
};
constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxCheckpointDisks = 64;
// screenshot's maxWidth (a thumbnail): app/api/protocol.ts THUMBNAIL_WIDTH_RANGE.
constexpr uint32_t kMinScreenshotWidth = 16;
constexpr uint32_t kMaxScreenshotWidth = 4096;

struct ParseResult {
  std::optional<Request> request;
  std::optional<uint64_t> id;  // the request's id when it had a valid one, for the error
  std::string error;           // why the line was refused
};

ParseResult parse_request(std::string_view line);

// Lines to send (each ends with '\n'). result_json is a serialized JSON value.
std::string ok_response(uint64_t id, const std::string& result_json);
std::string error_response(std::optional<uint64_t> id, std::string_view code, std::string_view message);
std::string console_event(std::span<const uint8_t> bytes);
std::string state_event(std::string_view state);
std::string exit_event(const std::string& exit_json);

}  // namespace berth::worker
