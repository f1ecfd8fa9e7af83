#!/bin/sh
# Writes seeds for fuzz_virtio_pci into $1: a driver bringing up virtio-rng's queue over
# INTx and over MSI-X, and virtio-blk's first queue, for the fuzzer to mutate from.
set -e
out=${1:?usage: seed_virtio_pci.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def cfg_write(off, size, v): return bytes([1, {1: 0, 2: 1, 4: 2}[size]]) + struct.pack('<HI', off, v)
def bar_write(off, size, v): return bytes([3, size - 1]) + struct.pack('<HQ', off, v)
def bar_read(off, size): return bytes([2, size - 1]) + struct.pack('<H', off)
def mem(addr, data): return bytes([4]) + struct.pack('<HB', addr, len(data)) + data
def bring_up(queue_size, msix):
    ops = b''
    if msix:
        ops += cfg_write(0x9a, 2, 0x8000)  # MSI-X enable (capability at 0x98)
        ops += bar_write(0x4000, 4, 0xfee00000) + bar_write(0x4008, 4, 0x20) + bar_write(0x400c, 4, 0)
    for status in (1, 3):
        ops += bar_write(0x14, 1, status)
    ops += bar_write(0x08, 4, 1) + bar_write(0x0c, 4, 1) + bar_write(0x14, 1, 0xb)
    ops += bar_write(0x16, 2, 0) + bar_write(0x18, 2, queue_size)
    ops += bar_write(0x20, 4, 0x1000) + bar_write(0x28, 4, 0x1800) + bar_write(0x30, 4, 0x2000)
    ops += bar_write(0x1a, 2, 0 if msix else 0xffff) + bar_write(0x1c, 2, 1) + bar_write(0x14, 1, 0xf)
    return ops
def rng(msix):
    ops = bring_up(8, msix)
    ops += mem(0x1000, struct.pack('<QIHH', 0x4000, 64, 2, 0))
    ops += mem(0x1800, struct.pack('<HHH', 0, 1, 0))
    ops += bar_write(0x3000, 2, 0) + bytes([5]) + bar_read(0x1000, 1) + bytes([6])
    return bytes([0]) + ops
def blk():
    ops = bring_up(8, False)
    ops += mem(0x3000, struct.pack('<IIQ', 0, 0, 1))  # read sector 1
    ops += mem(0x1000, struct.pack('<QIHH', 0x3000, 16, 1, 1) + struct.pack('<QIHH', 0x4000, 512, 3, 2)
               + struct.pack('<QIHH', 0x3100, 1, 2, 0))
    ops += mem(0x1800, struct.pack('<HHH', 0, 1, 0))
    ops += bar_write(0x3000, 2, 0) + bytes([5, 5]) + bar_read(0x1000, 1) + bytes([6])
    return bytes([1]) + ops
open(os.path.join(out, 'rng-intx'), 'wb').write(rng(False))
open(os.path.join(out, 'rng-msix'), 'wb').write(rng(True))
open(os.path.join(out, 'blk-read'), 'wb').write(blk())
PY
