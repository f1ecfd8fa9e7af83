#!/bin/sh
# Writes seeds for fuzz_fw_cfg into $1: the firmware's usual conversations (the signature
# through the data port, the file directory by DMA, a DMA write to the writable file, a
# skip then read) for the fuzzer to mutate from.
set -e
out=${1:?usage: seed_fw_cfg.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def select(key): return bytes([0]) + struct.pack('<H', key)
def read(n): return bytes([1, 0, 1]) * n
def desc(at, control, length, addr):
    return bytes([2]) + struct.pack('<HI', at, control) + bytes([0x80]) + struct.pack('<IH', length, addr)
def start(at): return bytes([3]) + struct.pack('<H', at) + bytes([1])
def poke(at, b8): return bytes([7]) + struct.pack('<H', at) + b8
def seed(name, script): open(os.path.join(out, name), 'wb').write(script)
seed('signature', select(0) + read(4) + select(1) + read(4))
seed('directory-dma', desc(0x1000, 0x19 << 16 | 0x0a, 4 + 4 * 64, 0x2000) + start(0x1000) + bytes([6]))
seed('write-file', poke(0x3000, b'ABCDEFGH') + desc(0x1000, 0x23 << 16 | 0x18, 8, 0x3000) + start(0x1000))
seed('skip-read', desc(0x1000, 0x22 << 16 | 0x0c, 3, 0) + start(0x1000) +
     desc(0x1000, 0x02, 16, 0x2000) + start(0x1000) + bytes([5, 6]))
PY
