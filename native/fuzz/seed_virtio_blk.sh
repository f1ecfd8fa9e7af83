#!/bin/sh
# Writes seeds for fuzz_virtio_blk into $1: a 16-entry queue holding well-formed IN, OUT,
# FLUSH, GET_ID, DISCARD and WRITE_ZEROES requests (one each), for the fuzzer to mutate.
set -e
out=${1:?usage: seed_virtio_blk.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def seed(name, reqtype, sector, data_len, data_writable, payload=b'', ro=0):
    hdr = struct.pack('<BHHHB', 4, 0x1000, 0x2000, 0x3000, ro)
    ram = bytearray(0x8000)
    descs = [(0x4000, 16, 1, 1)]
    if data_len:
        descs.append((0x5000, data_len, 1 | (2 if data_writable else 0), 2))
    descs.append((0x6000, 1, 2, 0))
    for i, (addr, ln, fl, nx) in enumerate(descs):
        struct.pack_into('<QIHH', ram, 0x1000 + 16 * i, addr, ln, fl, nx)
    struct.pack_into('<HHH', ram, 0x2000, 0, 1, 0)
    struct.pack_into('<IIQ', ram, 0x4000, reqtype, 0, sector)
    ram[0x5000:0x5000 + len(payload)] = payload
    open(os.path.join(out, 'seed-' + name), 'wb').write(hdr + bytes(ram))
seed('in', 0, 8, 1024, True)
seed('out', 1, 16, 512, False, b'\x5a' * 512)
seed('out-ro', 1, 16, 512, False, b'\x5a' * 512, ro=1)
seed('flush', 4, 0, 0, False)
seed('get-id', 8, 0, 20, True)
seed('discard', 11, 0, 16, False, struct.pack('<QII', 4, 8, 0))
seed('write-zeroes', 13, 0, 32, False, struct.pack('<QIIQII', 4, 8, 1, 100, 16, 0))
PY
