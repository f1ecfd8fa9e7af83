#!/bin/sh
# Writes seeds for fuzz_scsi_disk into $1: each command the SCSI disk knows, well formed,
# on a read-write and a read-only disk, with a failed read and a save/load; and a
# saved-state record.
set -e
out=${1:?usage: seed_scsi_disk.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import os, sys, struct
out = sys.argv[1]
cdbs = [
    [0x00, 0, 0, 0, 0, 0], [0x03, 0, 0, 0, 18, 0], [0x12, 0, 0, 0, 36, 0], [0x12, 1, 0x00, 0, 255, 0],
    [0x12, 1, 0x80, 0, 255, 0], [0x12, 1, 0x83, 0, 255, 0], [0x12, 1, 0xb0, 0, 255, 0],
    [0x12, 1, 0xb1, 0, 255, 0], [0x12, 1, 0xb2, 0, 255, 0], [0x1a, 0, 0x3f, 0, 255, 0],
    [0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0], [0x1b, 0, 0, 0, 1, 0], [0x25] + [0] * 9,
    [0x9e, 0x10] + [0] * 8 + [0, 0, 0, 32, 0, 0], [0x08, 0, 0, 1, 2, 0], [0x0a, 0, 0, 3, 1, 0],
    [0x28, 0, 0, 0, 0, 2, 0, 0, 4, 0], [0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0], [0x2e, 0, 0, 0, 0, 8, 0, 0, 1, 0],
    [0x2f, 0, 0, 0, 0, 0, 0, 0, 8, 0], [0x35] + [0] * 9, [0xa8, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0],
    [0xaa, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], [0x88] + [0] * 8 + [0, 0, 0, 0, 1, 0, 0],
    [0x8a] + [0] * 8 + [0x3f, 0, 0, 0, 1, 0, 0], [0x91] + [0] * 15, [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
]
body = b''
for c in cdbs:
    body += bytes([len(c)]) + bytes(c)
open(os.path.join(out, 'seed-rw'), 'wb').write(b'\x00' + body)
open(os.path.join(out, 'seed-ro'), 'wb').write(b'\x01' + body)
open(os.path.join(out, 'seed-fail'), 'wb').write(b'\x00' + bytes([64, 10, 0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0, 200]) + body)
name = b'scsi-disk'
rec_body = struct.pack('<I', 512) + struct.pack('<Q', 64) + bytes([0])
rec = struct.pack('<I', len(name)) + name + struct.pack('<IQ', 1, len(rec_body)) + rec_body
open(os.path.join(out, 'seed-state'), 'wb').write(b'\xff' + rec)
PY
