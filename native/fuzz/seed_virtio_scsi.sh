#!/bin/sh
# Writes seeds for fuzz_virtio_scsi into $1: an 8-entry request queue holding INQUIRY,
# TEST UNIT READY, READ CAPACITY and READ(10) for target 0, a request for a missing target,
# and a control queue with a logical unit reset, for the fuzzer to mutate.
set -e
out=${1:?usage: seed_virtio_scsi.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def lun(t):
    return bytes([1, t, 0x40, 0, 0, 0, 0, 0])
def seed(name, cmds):
    hdr = struct.pack('<BHHH', 3, 0x1000, 0x1400, 0x1800) + struct.pack('<BHHH', 3, 0x2000, 0x2400, 0x2800) + bytes([32, 96 | 0x80])
    ram = bytearray(0xc000)
    d = 0
    for i, (target, cdb, datalen) in enumerate(cmds):
        base = 0x3000 + i * 0x1000
        req = lun(target) + bytes(11) + bytes(cdb) + bytes(32 - len(cdb))
        ram[base:base + len(req)] = req
        descs = [(base, 51, 1), (base + 0x100, 108, 2 | (1 if datalen else 0))]
        if datalen:
            descs.append((base + 0x200, datalen, 2))
        head = d
        for j, (addr, ln, fl) in enumerate(descs):
            struct.pack_into('<QIHH', ram, 0x2000 + 16 * d, addr, ln, fl, d + 1)
            d += 1
        struct.pack_into('<H', ram, 0x2404 + 2 * i, head)
    struct.pack_into('<HH', ram, 0x2400, 0, len(cmds))
    # control queue: one LUN reset
    tmf = struct.pack('<II', 0, 5) + lun(0) + bytes(8)
    ram[0xb000:0xb000 + len(tmf)] = tmf
    struct.pack_into('<QIHH', ram, 0x1000, 0xb000, len(tmf), 1, 1)
    struct.pack_into('<QIHH', ram, 0x1010, 0xb100, 1, 2, 0)
    struct.pack_into('<HHH', ram, 0x1400, 0, 1, 0)
    open(os.path.join(out, 'seed-' + name), 'wb').write(hdr + bytes(ram))
seed('mix', [(0, [0x12, 0, 0, 0, 36, 0], 64), (0, [0, 0, 0, 0, 0, 0], 0), (0, [0x25] + [0] * 9, 8),
             (0, [0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], 2048), (3, [0x12, 0, 0, 0, 36, 0], 64),
             (1, [0, 0, 0, 0, 0, 0], 0), (0, [0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 1024)])
PY
