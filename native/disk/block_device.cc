#include "disk/block_device.h"

#include "common/error.h"
#include "disk/async_disk.h"
#include "disk/serial_async_disk.h"

namespace berth::disk {

const char* format_name(Format format) {
  switch (format) {
    case Format::kRaw: return "raw";
    case Format::kQcow2: return "qcow2";
    case Format::kVhdx: return "vhdx";
    case Format::kVhd: return "vhd";
    case Format::kHostDevice: return "host-device";
  }
  return "unknown";
}

void BlockDevice::readv(uint64_t offset, std::span<const std::span<uint8_t>> bufs) {
  for (const auto& b : bufs) {
    read(offset, b);
    offset += b.size();
  }
}

void BlockDevice::writev(uint64_t offset, std::span<const std::span<const uint8_t>> bufs) {
  for (const auto& b : bufs) {
    write(offset, b);
    offset += b.size();
  }
}

std::unique_ptr<AsyncDisk> BlockDevice::open_async(unsigned depth, AsyncBackend) {
  return std::make_unique<SerialAsyncDisk>(*this, depth);
}

void BlockDevice::resize(uint64_t) {
  throw Error("DISK_UNSUPPORTED", std::string(format_name(info().format)) + " images cannot be resized");
}

void BlockDevice::set_backing(const std::string&, std::unique_ptr<BlockDevice>) {
  throw Error("DISK_UNSUPPORTED", std::string(format_name(info().format)) + " images have no backing file");
}

CheckReport BlockDevice::check(bool) {
  return {};  // formats without metadata have nothing to check
}

}  // namespace berth::disk
