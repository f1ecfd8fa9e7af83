// Host block devices passed through to a guest (a whole disk, a partition, an LVM volume,
// a loop device). Opened exclusively (O_EXCL) with O_DIRECT; refused while the device or
// any of its partitions is mounted.
#pragma once

#include <memory>
#include <string>

#include "disk/block_device.h"
#include "disk/file.h"

namespace berth::disk {

std::unique_ptr<BlockDevice> open_host_device(const std::string& path, const OpenOptions& options);

// The mount point of the device at path, or of one of its partitions, from
// /proc/self/mountinfo; "" when none is mounted.
std::string host_device_mount_point(const std::string& path);

}  // namespace berth::disk
