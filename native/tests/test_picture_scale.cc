#include <vector>

#include "tests/check.h"
#include "worker/picture_scale.h"

using berth::worker::shrink_picture;

namespace {

std::vector<uint8_t> solid(uint32_t w, uint32_t h, uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> rgb;
  for (uint64_t i = 0; i < uint64_t{w} * h; ++i) rgb.insert(rgb.end(), {r, g, b});
  return rgb;
}

}  // namespace

TEST(picture_shrinks_to_the_width_keeping_the_aspect_ratio) {
  auto p = shrink_picture(1920, 1080, solid(1920, 1080, 10, 200, 30), 320);
  CHECK(p.width == 320 && p.height == 180);
  CHECK(p.rgb == solid(320, 180, 10, 200, 30));
}

TEST(picture_averages_the_pixels_each_output_pixel_covers) {
  // 4x2: the left half white, the right half black; at width 2 each output pixel is a 2x2 box.
  std::vector<uint8_t> rgb;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) rgb.insert(rgb.end(), 3, static_cast<uint8_t>(x < 2 ? 255 : 0));
  auto p = shrink_picture(4, 2, rgb, 2);
  CHECK(p.width == 2 && p.height == 1);
  CHECK(p.rgb == (std::vector<uint8_t>{255, 255, 255, 0, 0, 0}));
  // A 2x2 checkerboard averages to grey (rounded).
  std::vector<uint8_t> board = {255, 255, 255, 0, 0, 0, 0, 0, 0, 255, 255, 255};
  auto g = shrink_picture(2, 2, board, 1);
  CHECK(g.width == 1 && g.height == 1 && g.rgb == (std::vector<uint8_t>{128, 128, 128}));
}

TEST(picture_narrow_enough_or_unbounded_comes_back_as_it_is) {
  auto rgb = solid(100, 50, 1, 2, 3);
  auto same = shrink_picture(100, 50, rgb, 320);
  CHECK(same.width == 100 && same.height == 50 && same.rgb == rgb);
  auto unbounded = shrink_picture(100, 50, rgb, 0);
  CHECK(unbounded.width == 100 && unbounded.rgb == rgb);
}

TEST(picture_keeps_at_least_one_row_and_refuses_short_input) {
  auto wide = shrink_picture(4000, 3, solid(4000, 3, 9, 9, 9), 16);
  CHECK(wide.width == 16 && wide.height == 1 && wide.rgb == solid(16, 1, 9, 9, 9));
  auto shortfall = shrink_picture(10, 10, solid(10, 9, 0, 0, 0), 5);  // a row missing
  CHECK(shortfall.width == 0 && shortfall.rgb.empty());
  CHECK(shrink_picture(0, 10, {}, 5).rgb.empty());
}
