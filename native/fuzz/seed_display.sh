#!/bin/sh
# Writes seeds for fuzz_display into $1: a firmware-like script (place BAR 0, BAR 2 and
# the ROM BAR, enable memory decoding, read the DISPI ID and EDID, set 1024x768x32, read
# the picture's changes, read the ROM), then the same followed by a saved record.
set -e
out=${1:?usage: seed_display.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def op(code, width=2, sel=0, value=0):
    return struct.pack('<BBHI', code, width, sel, value)
def dispi(index, value):
    return op(2, width=2, sel=0x800 + 0x500 + 2 * index, value=value)
script = b''.join([
    op(0, 4, 0x10, 0xc1000000), op(0, 4, 0x18, 0xc2000000), op(0, 4, 0x30, 0xc2010001),
    op(0, 2, 0x04, 0x0002),
    op(3, 2, 0x800 + 0x500), op(3, 4, 0x800), op(3, 4, 0x800 + 0x600),
    dispi(4, 0), dispi(1, 1024), dispi(2, 768), dispi(3, 32), dispi(4, 0x41),
    op(4, 4, 0, 0xc1000000 >> 0), op(7, 0, 0, 2), op(5, 4, 0, 0xc2010000),
    op(2, 4, 0x800 + 0x604, 0xbebebebe), op(9), op(8),
])
open(os.path.join(out, 'firmware'), 'wb').write(script)
open(os.path.join(out, 'firmware-state'), 'wb').write(script + b'\xff' + b'\x00' * 64)
PY
