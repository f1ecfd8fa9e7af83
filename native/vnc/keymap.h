// From what an RFB client sends to the key a guest's keyboard reports, as a Linux evdev key
// code (linux/input-event-codes.h), which the PS/2 keyboard turns into scan codes.
//
// Two paths, as in QEMU's VNC server:
//  - layout-independent: QEMU's extended key event carries the client's XT scan code (the
//    physical key; noVNC sends it when the server offers the extension), so any keyboard
//    layout the guest is set to works;
//  - keysyms only (every other client): the keysym is mapped to the key that types it on a
//    US keyboard. Shifted symbols map to their unshifted key ('!' -> KEY_1); the client has
//    already sent Shift, so the guest sees Shift+1.
#pragma once

#include <cstdint>
#include <optional>

namespace berth::vnc {

// The evdev code of an X11 keysym, or nothing for a keysym no US key types.
std::optional<uint16_t> keysym_to_evdev(uint32_t keysym);

// The evdev code of an XT scan code as QEMU's extended key event numbers them: set 1 make
// codes, 0xE0-prefixed keys as 0xE0nn (noVNC) or 0x80 | nn (QEMU's own numbering).
std::optional<uint16_t> xt_to_evdev(uint32_t xt);

}  // namespace berth::vnc
