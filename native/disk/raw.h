// Raw images: the virtual disk is the file, byte for byte. Holes in a sparse file read as
// zeroes and are reported as kZero by block_status. Raw is the probing fallback.
#pragma once

#include <memory>

#include "disk/block_device.h"
#include "disk/file.h"

namespace berth::disk {

std::unique_ptr<BlockDevice> open_raw(File file, const OpenOptions& options);
void create_raw(const std::string& path, const CreateOptions& options);

}  // namespace berth::disk
