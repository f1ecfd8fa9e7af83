// How a disk format plugs in: each format file registers one FormatDriver at start-up;
// open_disk/create_disk/probe_format dispatch through the registry.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "disk/block_device.h"
#include "disk/file.h"

namespace berth::disk {

// Opens the image a child names as its backing file. recorded_path is the name as stored
// in the child; it is resolved against the child's folder, and the chain's depth limit
// and loop detection apply. format_hint is the format the child records, if any.
using BackingOpener = std::function<std::unique_ptr<BlockDevice>(const std::string& recorded_path,
                                                                 const std::string& format_hint)>;

struct FormatDriver {
  Format format;
  // Lower probes first; raw (which matches anything) goes last.
  int probe_order = 0;
  // True when the file's magic bytes identify this format.
  bool (*probe)(const File& file) = nullptr;
  std::unique_ptr<BlockDevice> (*open)(File file, const OpenOptions& options, const BackingOpener& backing) = nullptr;
  void (*create)(const std::string& path, const CreateOptions& options) = nullptr;
  // The driver keeps O_DIRECT's alignment rules (bounce buffers for unaligned requests).
  // Others get a buffered descriptor even when OpenOptions::direct asks for direct I/O.
  bool direct_io = false;
};

// Called from a static initializer in each format's .cc file.
bool register_driver(const FormatDriver& driver);

// Resolves a backing path recorded in the image at child_path: absolute paths stay,
// relative ones are taken from the child's folder.
std::string resolve_backing_path(const std::string& child_path, const std::string& recorded_path);

}  // namespace berth::disk
