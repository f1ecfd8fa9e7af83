#include "vnc/keymap.h"

#include <linux/input-event-codes.h>
#include <rfb/keysym.h>

#include <algorithm>
#include <array>
#include <utility>

namespace berth::vnc {
namespace {

struct KeysymKey {
  uint32_t keysym;
  uint16_t evdev;
};

constexpr auto kKeysyms = [] {
  auto table = std::to_array<KeysymKey>({
#include "vnc/keymap_table.inc"
  });
  std::sort(table.begin(), table.end(), [](const KeysymKey& a, const KeysymKey& b) { return a.keysym < b.keysym; });
  return table;
}();

// Set 1 make codes after an 0xE0 prefix (the keys a PC/AT keyboard added).
constexpr std::array<std::pair<uint8_t, uint16_t>, 25> kExtended{{
    {0x1c, KEY_KPENTER}, {0x1d, KEY_RIGHTCTRL}, {0x20, KEY_MUTE},     {0x2e, KEY_VOLUMEDOWN},
    {0x30, KEY_VOLUMEUP}, {0x35, KEY_KPSLASH},  {0x37, KEY_SYSRQ},    {0x38, KEY_RIGHTALT},
    {0x46, KEY_PAUSE},    {0x47, KEY_HOME},     {0x48, KEY_UP},       {0x49, KEY_PAGEUP},
    {0x4b, KEY_LEFT},     {0x4d, KEY_RIGHT},    {0x4f, KEY_END},      {0x50, KEY_DOWN},
    {0x51, KEY_PAGEDOWN}, {0x52, KEY_INSERT},   {0x53, KEY_DELETE},   {0x5b, KEY_LEFTMETA},
    {0x5c, KEY_RIGHTMETA}, {0x5d, KEY_COMPOSE}, {0x5e, KEY_POWER},    {0x5f, KEY_SLEEP},
    {0x63, KEY_WAKEUP},
}};

}  // namespace

std::optional<uint16_t> keysym_to_evdev(uint32_t keysym) {
  auto it = std::lower_bound(kKeysyms.begin(), kKeysyms.end(), keysym,
                             [](const KeysymKey& k, uint32_t v) { return k.keysym < v; });
  if (it == kKeysyms.end() || it->keysym != keysym) return std::nullopt;
  return it->evdev;
}

std::optional<uint16_t> xt_to_evdev(uint32_t xt) {
  if (xt == 0xe11d) return KEY_PAUSE;  // Pause's E1 1D 45 sequence, as noVNC names it
  bool extended = false;
  uint32_t code = xt;
  if ((xt & 0xff00) == 0xe000 && xt <= 0xffff) {
    extended = true;
    code = xt & 0xff;
  } else if (xt >= 0x80 && xt <= 0xff) {
    extended = true;
    code = xt & 0x7f;
  } else if (xt > 0xff) {
    return std::nullopt;
  }
  if (extended) {
    for (const auto& [make, evdev] : kExtended)
      if (make == code) return evdev;
    return std::nullopt;
  }
  // Linux numbers its key codes after set 1: ESC (1) .. F12 (0x58) are the make codes.
  if (code >= 0x01 && code <= 0x58 && code != 0x54 && code != 0x55) return static_cast<uint16_t>(code);
  return std::nullopt;
}

}  // namespace berth::vnc
