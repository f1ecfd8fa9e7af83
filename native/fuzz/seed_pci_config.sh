#!/bin/sh
# Writes seeds for fuzz_pci_config into $1: a firmware-like script (place and enable the
# probe function's BARs through CF8/CFC, touch each BAR window, ECAM, the PM block and the
# reset register), the same followed by saved records for the loaders to start from.
set -e
out=${1:?usage: seed_pci_config.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
def op(code, width=2, sel=0, value=0):
    return struct.pack('<BBHI', code, width, sel, value)
def addr(reg):
    return op(0, value=(3 << 11) | reg)
script = b''.join([
    addr(0x10), op(0x82, value=0x1001),
    addr(0x14), op(0x82, value=0xc0000000),
    addr(0x18), op(0x82, value=0), addr(0x1c), op(0x82, value=0x10),
    addr(0x04), op(0x82, width=1, value=3),
    op(0x84, sel=0, value=0x12345678), op(0x04, sel=0x3c, width=1),
    op(0x85, sel=0, value=1), op(0x05, sel=0xff, width=3),
    op(0x86, sel=0, value=2), op(0x06, sel=0xfff, width=3),
    op(0x83, sel=(1 << 12) | 0x3c, width=0, value=0x0b), op(0x03, sel=0x40, width=2),
    op(0x87, sel=2, width=1, value=0x100), op(9), op(0x07, sel=8),
    op(0x87, sel=5, width=0, value=0x20), op(0x8b, sel=0, width=0, value=0x06),
    op(8, value=1), addr(0x04), op(0x82, width=1, sel=1, value=0x04),
])
open(os.path.join(out, 'firmware'), 'wb').write(script)
def record(name, version, body):
    n = name.encode()
    return struct.pack('<I', len(n)) + n + struct.pack('<IQ', version, len(body)) + body
cfg = bytearray(256)
struct.pack_into('<HH', cfg, 0, 0x1b36, 0x0005)
cfg[0x0b] = 0xff
cfg[0x3d] = 1
struct.pack_into('<I', cfg, 0x14, 0xc0000000)
cfg[0x04] = 3
pci = record('pci-function', 1, bytes(cfg) + b'\x01')
pm = record('ich9-acpi-pm', 1, struct.pack('<HHHQQIIQ', 0x100, 0x100, 0, 4, 4, 0x20, 0, 12345))
open(os.path.join(out, 'records-pci'), 'wb').write(script + op(0xff) + pci)
open(os.path.join(out, 'records-pm'), 'wb').write(script + op(0xff) + pm)
open(os.path.join(out, 'records-bus'), 'wb').write(op(0xff) + record('pci-bus', 1, struct.pack('<I', 0x80001800)))
PY
