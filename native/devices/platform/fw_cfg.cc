#include "devices/platform/fw_cfg.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace berth::devices::platform {

namespace {

using namespace fw_cfg_key;

constexpr size_t kDmaAccessSize = 16;  // be32 control, be32 length, be64 address

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

std::vector<uint8_t> little_endian(uint64_t value, size_t size) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
  return out;
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The item a selector names: the write flag is not part of the key.
uint16_t item_key(uint16_t selector) { return selector & (kArchLocal | kEntryMask); }

bool caller_key(uint16_t key) {
  if (key & kWriteFlag) return false;
  const uint16_t index = key & kEntryMask;
  if (index >= kFileFirst) return false;
  if (key & kArchLocal) return true;
  return key != kSignature && key != kId && key != kFileDir;
}

void check_size(size_t size, const char* code, const std::string& what) {
  if (size > FwCfg::kMaxItemSize) {
    throw Error(code, "fw_cfg " + what + " has " + std::to_string(size) + " bytes; the most is " +
                    std::to_string(FwCfg::kMaxItemSize));
  }
}

}  // namespace

FwCfg::FwCfg(vmm::GuestMemory& memory) : memory_(memory) {
  items_[kSignature].data = {'Q', 'E', 'M', 'U'};
  items_[kId].data = little_endian(kIdTraditional | kIdDma, 4);
  rebuild_directory();
}

void FwCfg::add_item(uint16_t key, std::vector<uint8_t> bytes) {
  if (!caller_key(key)) {
    throw Error("FW_CFG_ITEM", "fw_cfg key " + hex(key) +
                                   " cannot be added as an item: the signature, ID and file "
                                   "directory are the device's own and keys from 0x20 are files");
  }
  check_size(bytes.size(), "FW_CFG_ITEM", "item " + hex(key));
  std::lock_guard<std::mutex> lock(mu_);
  items_[key] = Item{std::move(bytes), {}};
}

void FwCfg::add_u16(uint16_t key, uint16_t value) { add_item(key, little_endian(value, 2)); }
void FwCfg::add_u32(uint16_t key, uint32_t value) { add_item(key, little_endian(value, 4)); }
void FwCfg::add_u64(uint16_t key, uint64_t value) { add_item(key, little_endian(value, 8)); }

void FwCfg::add_file(std::string_view name, std::vector<uint8_t> bytes, FileOptions options) {
  std::string shown(name.substr(0, 80));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  const std::string quoted = "'" + shown + "'";
  if (name.empty() || name.size() > kMaxFileNameLength || name.find('\0') != name.npos) {
    throw Error("FW_CFG_FILE", "fw_cfg file name " + quoted + " must have 1 to " +
                                   std::to_string(kMaxFileNameLength) + " characters and no NUL");
  }
  check_size(bytes.size(), "FW_CFG_FILE", "file " + quoted);
  std::lock_guard<std::mutex> lock(mu_);
  if (files_.size() >= kMaxFiles) {
    throw Error("FW_CFG_FILE", "fw_cfg has room for " + std::to_string(kMaxFiles) +
                                   " files; cannot add " + quoted);
  }
  auto at = std::lower_bound(files_.begin(), files_.end(), name,
                             [](const File& f, std::string_view n) { return f.name < n; });
  if (at != files_.end() && at->name == name) {
    throw Error("FW_CFG_FILE", "fw_cfg file " + quoted + " was already added");
  }
  files_.insert(at, File{std::string(name), Item{std::move(bytes), std::move(options)}});
  rebuild_directory();
}

void FwCfg::replace_file(std::string_view name, std::vector<uint8_t> bytes) {
  check_size(bytes.size(), "FW_CFG_FILE", "file '" + std::string(name.substr(0, 80)) + "'");
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& f : files_) {
    if (f.name == name) {
      f.item.data = std::move(bytes);
      rebuild_directory();
      return;
    }
  }
  throw Error("FW_CFG_FILE", "fw_cfg has no file '" + std::string(name.substr(0, 80)) + "'");
}

std::optional<uint16_t> FwCfg::file_key(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < files_.size(); ++i) {
    if (files_[i].name == name) return static_cast<uint16_t>(kFileFirst + i);
  }
  return std::nullopt;
}

std::optional<std::vector<uint8_t>> FwCfg::file_data(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& f : files_) {
    if (f.name == name) return f.item.data;
  }
  return std::nullopt;
}

std::optional<std::vector<uint8_t>> FwCfg::item_data(uint16_t key) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Item* item = find(key);
  if (!item) return std::nullopt;
  return item->data;
}

const FwCfg::Item* FwCfg::find(uint16_t selector) const {
  const uint16_t key = item_key(selector);
  if (key >= kFileFirst && key <= kEntryMask) {
    const size_t index = key - kFileFirst;
    return index < files_.size() ? &files_[index].item : nullptr;
  }
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : &it->second;
}

FwCfg::Item* FwCfg::find(uint16_t selector) {
  return const_cast<Item*>(std::as_const(*this).find(selector));
}

void FwCfg::rebuild_directory() {
  std::vector<uint8_t> dir(4 + files_.size() * kDirEntrySize, 0);
  put_be32(dir.data(), static_cast<uint32_t>(files_.size()));
  for (size_t i = 0; i < files_.size(); ++i) {
    uint8_t* e = dir.data() + 4 + i * kDirEntrySize;
    put_be32(e, static_cast<uint32_t>(files_[i].item.data.size()));
    const uint16_t key = static_cast<uint16_t>(kFileFirst + i);
    e[4] = static_cast<uint8_t>(key >> 8);
    e[5] = static_cast<uint8_t>(key);
    std::memcpy(e + 8, files_[i].name.data(), files_[i].name.size());
  }
  items_[kFileDir].data = std::move(dir);
}

void FwCfg::select(uint16_t selector) {
  selector_ = selector;
  offset_ = 0;
  Item* item = find(selector);
  if (item && item->options.on_select) {
    const size_t before = item->data.size();
    item->options.on_select(item->data);
    if (item->data.size() > kMaxItemSize) item->data.resize(kMaxItemSize);
    if (item->data.size() != before) rebuild_directory();
  }
}

uint8_t FwCfg::next_byte() {
  const Item* item = find(selector_);
  if (!item || offset_ >= item->data.size()) return 0;
  return item->data[offset_++];
}

void FwCfg::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    if (offset == kDataOffset) {
      data[i] = next_byte();  // a wide data read: consecutive bytes
    } else if (at >= kDmaOffset && at < kDmaOffset + 8) {
      data[i] = static_cast<uint8_t>(fw_cfg_dma::kSignature >> (8 * (7 - (at - kDmaOffset))));
    } else {
      data[i] = 0;
    }
  }
}

void FwCfg::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  if (offset == kSelectorOffset && data.size() == 2) {
    select(static_cast<uint16_t>(data[0] | data[1] << 8));
  } else if (offset == kDmaOffset && data.size() == 4) {
    dma_address_ = uint64_t{be32(data.data())} << 32;
  } else if (offset == kDmaOffset + 4 && data.size() == 4) {
    const uint64_t descriptor = dma_address_ | be32(data.data());
    dma_address_ = 0;
    dma(descriptor);
  } else if (offset == kDmaOffset && data.size() == 8) {
    const uint64_t descriptor = uint64_t{be32(data.data())} << 32 | be32(data.data() + 4);
    dma_address_ = 0;
    dma(descriptor);
  }
  // Anything else (data-port writes, odd widths) is ignored, as on QEMU.
}

bool FwCfg::dma_read(Item* item, uint64_t address, uint32_t length) {
  const size_t available = item && offset_ < item->data.size() ? item->data.size() - offset_ : 0;
  const uint32_t from_item = static_cast<uint32_t>(std::min<size_t>(length, available));
  if (!memory_.contains(address, length)) {
    offset_ += from_item;  // QEMU moves on even when the guest's buffer is bad
    return false;
  }
  auto out = memory_.slice(address, length);
  if (from_item) std::memcpy(out.data(), item->data.data() + offset_, from_item);
  std::memset(out.data() + from_item, 0, length - from_item);
  offset_ += from_item;
  return true;
}

bool FwCfg::dma_write(Item* item, uint64_t address, uint32_t length) {
  // All or nothing: a writable file, and the whole write inside it.
  if (!item || !item->options.on_write || offset_ > item->data.size() ||
      length > item->data.size() - offset_ || !memory_.contains(address, length)) {
    return false;
  }
  auto in = memory_.slice(address, length);
  std::memcpy(item->data.data() + offset_, in.data(), length);
  const uint32_t at = offset_;
  offset_ += length;
  item->options.on_write(at, std::span<const uint8_t>(item->data.data() + at, length));
  return true;
}

void FwCfg::dma(uint64_t descriptor) {
  // A descriptor outside RAM cannot even be answered.
  if (!memory_.contains(descriptor, kDmaAccessSize)) {
    ++dma_errors_;
    return;
  }
  uint8_t access[kDmaAccessSize];
  memory_.read(descriptor, access);
  const uint32_t control = be32(access);
  const uint32_t length = be32(access + 4);
  const uint64_t address = uint64_t{be32(access + 8)} << 32 | be32(access + 12);

  if (control & fw_cfg_dma::kSelect) select(static_cast<uint16_t>(control >> 16));
  Item* item = find(selector_);
  bool ok = true;
  if (length == 0) {
    // nothing to move
  } else if (control & fw_cfg_dma::kRead) {
    ok = dma_read(item, address, length);
  } else if (control & fw_cfg_dma::kWrite) {
    ok = dma_write(item, address, length);
  } else if (control & fw_cfg_dma::kSkip) {
    const size_t available = item && offset_ < item->data.size() ? item->data.size() - offset_ : 0;
    offset_ += static_cast<uint32_t>(std::min<size_t>(length, available));
  }
  if (!ok) ++dma_errors_;
  uint8_t status[4];
  put_be32(status, ok ? 0 : fw_cfg_dma::kError);
  memory_.write(descriptor, status);
}

void FwCfg::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  selector_ = kSignature;
  offset_ = 0;
  dma_address_ = 0;
}

uint64_t FwCfg::dma_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dma_errors_;
}

void FwCfg::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin("fw-cfg", 1);
  w.u16(selector_);
  w.u32(offset_);
  w.u64(dma_address_);
  w.end(token);
}

void FwCfg::load_state(state::Reader& parent) {
  auto rec = parent.record("fw-cfg", 1);
  state::Reader& r = rec.body;
  const uint16_t selector = r.u16("selector");
  const uint32_t offset = r.u32("offset");
  const uint64_t dma_address = r.u64("dma_address");
  r.expect_end();
  std::lock_guard<std::mutex> lock(mu_);
  const Item* item = find(selector);
  const size_t size = item ? item->data.size() : 0;
  if (offset > size) {
    r.fail("offset is " + std::to_string(offset) + ", beyond the " + std::to_string(size) +
           " bytes of item " + hex(selector));
  }
  selector_ = selector;
  offset_ = offset;
  dma_address_ = dma_address;
}

}  // namespace berth::devices::platform
