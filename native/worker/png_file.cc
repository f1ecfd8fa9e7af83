#include "worker/png_file.h"

#include <png.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/error.h"

namespace berth::worker {

namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

[[noreturn]] void png_failed(png_structp png, png_const_charp) { png_longjmp(png, 1); }

// libpng reports errors by longjmp: no C++ object with a destructor may live in this frame.
bool encode(FILE* f, uint32_t width, uint32_t height, const uint8_t* rgb) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_failed, nullptr);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (uint32_t y = 0; y < height; ++y) png_write_row(png, rgb + static_cast<size_t>(y) * width * 3);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

void write_png(const std::string& path, uint32_t width, uint32_t height, std::span<const uint8_t> rgb) {
  if (width == 0 || height == 0 || rgb.size() != static_cast<size_t>(width) * height * 3) {
    throw Error("SCREENSHOT_WRITE", "no picture to write to " + path);
  }
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  if (!f) throw Error("SCREENSHOT_WRITE", "cannot create " + path + ": " + std::strerror(errno));
  if (!encode(f.get(), width, height, rgb.data()) || std::fflush(f.get()) != 0) {
    throw Error("SCREENSHOT_WRITE", "cannot write the PNG file " + path + "; check the disk space");
  }
}

}  // namespace berth::worker
