#!/bin/sh
# Writes seeds for fuzz_virtqueue into $1: well-formed 8-entry queues (a direct chain, an
# indirect chain, event index on) for the fuzzer to mutate from.
set -e
out=${1:?usage: seed_virtqueue.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def seed(name, descs, heads, flags=0, table=None):
    ram = bytearray(0x3100)
    for i, (addr, ln, fl, nx) in enumerate(descs):
        struct.pack_into('<QIHH', ram, 0x1000 + 16 * i, addr, ln, fl, nx)
    if table:
        for i, (addr, ln, fl, nx) in enumerate(table):
            struct.pack_into('<QIHH', ram, 0x800 + 16 * i, addr, ln, fl, nx)
    for i, h in enumerate(heads):
        struct.pack_into('<H', ram, 0x2004 + 2 * i, h)
    struct.pack_into('<H', ram, 0x2002, len(heads))
    ops = bytes([0, 2, 0, 2, 0, 2, 3])
    header = struct.pack('<HHHH', 3, 0x1000, 0x2000, 0x3000) + bytes([flags]) + ops
    open(os.path.join(out, name), 'wb').write(header + bytes(ram))
seed('direct', [(0x400, 16, 1, 1), (0x500, 32, 2, 0)], [0])
seed('indirect', [(0x800, 32, 4, 0)], [0], table=[(0x400, 8, 1, 1), (0x500, 8, 2, 0)])
seed('event-idx', [(0x400, 16, 2, 0), (0x500, 16, 2, 0)], [0, 1], flags=1)
PY
