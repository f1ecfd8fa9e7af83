// Writes a picture as a PNG file (8-bit RGB), for screenshots (the worker's screenshot op, berth-vmm --screenshot-after).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace berth::worker {

// `rgb` holds width * height R, G, B triples, row after row. Throws berth::Error
// SCREENSHOT_WRITE naming the file when it cannot be written.
void write_png(const std::string& path, uint32_t width, uint32_t height, std::span<const uint8_t> rgb);

}  // namespace berth::worker
