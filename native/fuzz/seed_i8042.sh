#!/bin/sh
# Seeds for fuzz_i8042: a Linux-like probe (self test, command byte, keyboard reset and
# identify, aux loop, mouse knocks and enable), then typing and pointer movement.
set -e
dir=$1
mkdir -p "$dir"
python3 - "$dir" <<'PY'
import sys, os
d = sys.argv[1]
def cmd(c, data=None):  # opcode 4: command + data byte; opcode 2: one write to 0x64
    return bytes([4, c, data]) if data is not None else bytes([2, 4, c, 0, 0, 0])
def kbd(b): return bytes([2, 0, b, 0, 0, 0])
def aux(b): return bytes([4, 0xd4, b])
def read(n): return bytes([0, 0]) * n
def key(code, down): return bytes([5 | (0x80 if down else 0), code & 0xff, code >> 8])
def move(dx, dy, dz, b):
    enc = lambda v: (v & 0xffffffff).to_bytes(4, 'little')
    return bytes([6]) + enc(dx) + enc(dy) + enc(dz) + bytes([b])
probe = cmd(0xaa) + read(2) + cmd(0x60, 0x47) + kbd(0xff) + read(3) + kbd(0xf2) + read(4) + \
        cmd(0xd3, 0x5a) + read(2) + aux(0xff) + read(4)
for r in (200, 100, 80):
    probe += aux(0xf3) + aux(r)
probe += aux(0xf2) + aux(0xf4) + read(4)
typing = probe + key(30, True) + key(30, False) + key(103, True) + key(119, True) + key(99, True) + read(20) + bytes([7])
moving = probe + move(5, -3, 1, 1) + move(1000, 1000, -20, 0x1f) + read(30) + bytes([7]) + aux(0xf0) + aux(0xeb) + read(8)
for name, data in (('probe', probe), ('typing', typing), ('moving', moving)):
    open(os.path.join(d, name), 'wb').write(data)
PY
