#include "devices/platform/pflash.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/unique_fd.h"

namespace berth::devices::platform {

namespace {

constexpr uint8_t kReadArray = 0xff, kReadArrayAlt = 0x00, kProgram = 0x10, kProgramAlt = 0x40,
                  kBlockErase = 0x20, kClearStatus = 0x50, kBlockLock = 0x60,
                  kReadStatus = 0x70, kReadId = 0x90, kCfiQuery = 0x98, kConfirm = 0xd0,
                  kLockClear = 0x01;

// An EFI firmware volume header: FvLength (u64) at 0x20, "_FVH" at 0x28.
constexpr uint64_t kFvLengthOffset = 0x20, kFvSignatureOffset = 0x28;
constexpr char kFvSignature[4] = {'_', 'F', 'V', 'H'};

// OVMF's FDF layouts: code image size -> variable store size.
struct Layout {
  uint64_t code;
  uint64_t vars;
  const char* build;
};
constexpr Layout kLayouts[] = {
    {0x37c000, 0x84000, "4 MiB (OVMF_CODE_4M.fd with OVMF_VARS_4M.fd)"},
    {0x1e0000, 0x20000, "2 MiB (OVMF_CODE.fd with OVMF_VARS.fd)"},
    {0xe0000, 0x20000, "1 MiB"},
};

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string describe(const std::string& path, uint64_t size) {
  return "'" + path + "' (" + std::to_string(size) + " bytes, " + hex(size) + ")";
}

bool is_status_command(uint8_t cmd) {
  return cmd == kProgram || cmd == kProgramAlt || cmd == kBlockErase || cmd == kBlockLock ||
         cmd == kReadStatus;
}

// A firmware volume header at the start that disagrees with the file's length means the
// variable store belongs to another build (or is not one).
void check_vars_header(const std::string& path, const uint8_t* base, uint64_t size) {
  if (size < kFvSignatureOffset + 4 ||
      std::memcmp(base + kFvSignatureOffset, kFvSignature, 4) != 0) {
    return;
  }
  uint64_t fv_length = 0;
  for (int i = 0; i < 8; ++i) fv_length |= uint64_t{base[kFvLengthOffset + i]} << (8 * i);
  if (fv_length != size) {
    throw Error("FLASH_LAYOUT", "the variable store " + describe(path, size) +
                                    " holds a firmware volume of " + hex(fv_length) +
                                    " bytes: it was made for another OVMF build; copy the "
                                    "OVMF_VARS file that comes with the code image");
  }
}

}  // namespace

Pflash::Pflash(const std::string& path, Access access) : path_(path), access_(access) {
  const bool writable = access == Access::kWritable;
  UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd.valid()) {
    throw SystemError("FLASH_FILE",
                      std::string("cannot open the firmware flash file '") + path + "'" +
                          (writable ? " for writing (the VM's variable store must be its own "
                                      "writable copy)"
                                    : ""),
                      errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    throw SystemError("FLASH_FILE", "cannot read the size of '" + path + "'", errno);
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || size_ == 0 || size_ % kBlockSize != 0 || size_ > kMaxSize) {
    throw Error("FLASH_SIZE", "the firmware flash file " + describe(path, size_) +
                                  " must be a regular file of a whole number of " +
                                  std::to_string(kBlockSize) + "-byte blocks, at most " +
                                  std::to_string(kMaxSize >> 20) + " MiB");
  }
  void* p = ::mmap(nullptr, size_, writable ? PROT_READ | PROT_WRITE : PROT_READ,
                   writable ? MAP_SHARED : MAP_PRIVATE, fd.get(), 0);
  if (p == MAP_FAILED) throw SystemError("FLASH_FILE", "cannot map '" + path + "'", errno);
  base_ = static_cast<uint8_t*>(p);
  if (writable) {
    try {
      check_vars_header(path_, base_, size_);
    } catch (...) {
      ::munmap(base_, size_);
      throw;
    }
  }
}

Pflash::~Pflash() {
  flush();
  ::munmap(base_, size_);
}

std::optional<uint64_t> Pflash::expected_vars_size(uint64_t code_size) {
  for (const auto& l : kLayouts) {
    if (l.code == code_size) return l.vars;
  }
  return std::nullopt;
}

void Pflash::check_pair(const Pflash& code, const Pflash& vars) {
  for (const auto& l : kLayouts) {
    if (l.code == code.size() && l.vars != vars.size()) {
      throw Error("FLASH_LAYOUT", "the variable store " + describe(vars.path(), vars.size()) +
                                      " does not fit the code image " +
                                      describe(code.path(), code.size()) + ", an OVMF " +
                                      l.build + " build that expects " + hex(l.vars) +
                                      " bytes of variables");
    }
  }
  check_vars_header(vars.path(), vars.base_, vars.size());
  if (code.size() + vars.size() > kMaxSize) {
    throw Error("FLASH_SIZE", "the firmware code " + describe(code.path(), code.size()) +
                                  " and variable store " + describe(vars.path(), vars.size()) +
                                  " together exceed " + std::to_string(kMaxSize >> 20) + " MiB");
  }
}

void Pflash::set_mode_callback(ModeCallback callback) {
  std::lock_guard<std::mutex> lock(mu_);
  on_mode_ = std::move(callback);
}

bool Pflash::array_mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cmd_ == kReadArrayAlt;
}

uint8_t Pflash::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

uint64_t Pflash::ignored_writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ignored_writes_;
}

void Pflash::set_command(uint8_t cmd, uint8_t cycle) {
  const bool was_array = cmd_ == kReadArrayAlt;
  cmd_ = cmd;
  cycle_ = cycle;
  const bool now_array = cmd_ == kReadArrayAlt;
  if (now_array) flush();
  if (was_array != now_array && on_mode_) on_mode_(now_array);
}

void Pflash::to_array_mode() { set_command(kReadArrayAlt, 0); }

void Pflash::mark_dirty(uint64_t offset, uint64_t length) {
  if (dirty_begin_ == dirty_end_) {
    dirty_begin_ = offset;
    dirty_end_ = offset + length;
  } else {
    dirty_begin_ = std::min(dirty_begin_, offset);
    dirty_end_ = std::max(dirty_end_, offset + length);
  }
}

void Pflash::flush() {
  if (dirty_begin_ == dirty_end_) return;
  const uint64_t begin = dirty_begin_ & ~(kBlockSize - 1);
  const uint64_t end = std::min(size_, (dirty_end_ + kBlockSize - 1) & ~(kBlockSize - 1));
  // A failure here is an I/O error on the host file; the pages stay in the page cache and
  // are written back later. Nothing can be reported to the guest.
  (void)::msync(base_ + begin, end - begin, MS_SYNC);
  dirty_begin_ = dirty_end_ = 0;
}

uint8_t Pflash::query_byte(uint64_t offset) const {
  const uint64_t at = offset & 0xff;
  if (cmd_ == kReadId) {
    if (at == 0) return kManufacturerId;
    if (at == 1) return kDeviceId;
    return 0;  // block lock status: unlocked
  }
  // CFI query table (JEDEC JESD68), one 8-bit device, one erase-block region.
  const uint64_t blocks = size_ / kBlockSize - 1;
  uint8_t size_log2 = 0;
  while ((uint64_t{1} << size_log2) < size_) ++size_log2;
  switch (at) {
    case 0x10: return 'Q';
    case 0x11: return 'R';
    case 0x12: return 'Y';
    case 0x13: return 0x01;  // Intel/Sharp extended command set
    case 0x1b: return 0x45;  // Vcc min 4.5 V
    case 0x1c: return 0x55;  // Vcc max 5.5 V
    case 0x1f: return 0x07;  // typical byte program 2^7 us
    case 0x21: return 0x0a;  // typical block erase 2^10 ms
    case 0x23: return 0x04;
    case 0x25: return 0x04;
    case 0x27: return size_log2;
    case 0x2c: return 0x01;  // erase-block regions
    case 0x2d: return static_cast<uint8_t>(blocks);
    case 0x2e: return static_cast<uint8_t>(blocks >> 8);
    case 0x2f: return static_cast<uint8_t>(kBlockSize >> 8);
    case 0x30: return static_cast<uint8_t>(kBlockSize >> 16);
    default: return 0;
  }
}

void Pflash::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cmd_ == kReadArrayAlt) {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < size_ ? base_[offset + i] : 0xff;
    }
    return;
  }
  if (is_status_command(cmd_)) {
    flush();  // the guest is about to learn the operation finished
    std::fill(data.begin(), data.end(), status_);
    return;
  }
  for (size_t i = 0; i < data.size(); ++i) data[i] = query_byte(offset + i);
}

void Pflash::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  if (data.empty() || offset >= size_) return;
  if (read_only()) {
    ++ignored_writes_;
    return;
  }
  command(offset, data[0], data);
}

void Pflash::command(uint64_t offset, uint8_t value, std::span<const uint8_t> data) {
  if (cycle_ == 0) {
    switch (value) {
      case kProgram:
      case kProgramAlt:
      case kBlockErase:
      case kBlockLock:
      case kCfiQuery:
        set_command(value, 1);
        return;
      case kReadStatus:
      case kReadId:
        set_command(value, 0);
        return;
      case kClearStatus:
        status_ = 0;
        to_array_mode();
        return;
      default:  // read array (0xff, 0x00, 0xf0) and anything unknown, as on QEMU
        to_array_mode();
        return;
    }
  }
  switch (cmd_) {
    case kProgram:
    case kProgramAlt: {
      const uint64_t n = std::min<uint64_t>(data.size(), size_ - offset);
      std::memcpy(base_ + offset, data.data(), n);
      mark_dirty(offset, n);
      status_ |= kStatusReady;
      cycle_ = 0;  // reads return the status until read array
      return;
    }
    case kBlockErase:
      if (value == kConfirm) {
        const uint64_t block = offset & ~(kBlockSize - 1);
        std::memset(base_ + block, 0xff, kBlockSize);
        mark_dirty(block, kBlockSize);
        status_ |= kStatusReady;
        cycle_ = 0;
      } else {
        to_array_mode();  // read array, or a sequence error
      }
      return;
    case kBlockLock:
      if (value == kConfirm || value == kLockClear) {
        status_ |= kStatusReady;
        cycle_ = 0;
      } else {
        to_array_mode();
      }
      return;
    case kCfiQuery:
      if (value == kReadArray) to_array_mode();
      return;
    default:
      to_array_mode();
      return;
  }
}

void Pflash::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = kStatusReady;
  to_array_mode();
  flush();
}

void Pflash::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin("pflash", 1);
  w.u8(cmd_);
  w.u8(cycle_);
  w.u8(status_);
  w.end(token);
}

void Pflash::load_state(state::Reader& parent) {
  auto rec = parent.record("pflash", 1);
  state::Reader& r = rec.body;
  const uint8_t cmd = r.u8("command");
  const uint8_t cycle = r.u8("cycle");
  const uint8_t status = r.u8("status");
  r.expect_end();
  const bool waits = cmd == kProgram || cmd == kProgramAlt || cmd == kBlockErase ||
                     cmd == kBlockLock || cmd == kCfiQuery;
  const bool known = waits || cmd == kReadArrayAlt || cmd == kReadStatus || cmd == kReadId;
  if (!known) r.fail("command is " + hex(cmd) + ", not one the flash enters");
  if (cycle > 1 || (cycle == 1 && !waits)) {
    r.fail("cycle is " + std::to_string(cycle) + " for command " + hex(cmd));
  }
  if (cmd == kCfiQuery && cycle != 1) r.fail("cycle is 0 for the CFI query");
  if (status & ~(kStatusReady | kStatusEraseError | kStatusProgramError)) {
    r.fail("status is " + hex(status) + ", with bits the flash never sets");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (read_only() && cmd != kReadArrayAlt) {
    r.fail("command is " + hex(cmd) + " on read-only flash '" + path_ + "', which stays in read-array mode");
  }
  status_ = status;
  set_command(cmd, cycle);
}

}  // namespace berth::devices::platform
