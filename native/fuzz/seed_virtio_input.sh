#!/bin/sh
# Writes seeds for fuzz_virtio_input into $1: an event queue of 8 writable 8-byte buffers
# and a status queue holding one LED event, with a few host reports.
set -e
out=${1:?usage: seed_virtio_input.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def seed(name, select, subsel, reports):
    # event queue: size 8 at 0x1000/0x2000/0x3000; status queue: size 4 at 0x4000/0x5000/0x6000
    ram = bytearray(0x8000)
    for i in range(8):
        struct.pack_into('<QIHH', ram, 0x1000 + 16 * i, 0x7000 + 8 * i, 8, 2, 0)
        struct.pack_into('<H', ram, 0x2000 + 4 + 2 * i, i)
    struct.pack_into('<HH', ram, 0x2000, 0, 8)
    struct.pack_into('<QIHH', ram, 0x4000, 0x7800, 8, 0, 0)
    struct.pack_into('<HHH', ram, 0x5000, 0, 1, 0)
    struct.pack_into('<HHI', ram, 0x7800, 0x11, 0x01, 1)
    header = bytes([3, 2, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, select, subsel, reports])
    open(os.path.join(out, 'seed-' + name), 'wb').write(header + bytes(ram))
seed('name', 1, 0, 0x13)
seed('ev-key', 0x11, 1, 0x2a)
seed('abs-info', 0x12, 0, 0x7f)
PY
