#!/bin/sh
# Writes seeds for fuzz_scsi_cdb into $1: an insert followed by each command the DVD drive
# knows, well formed, for the fuzzer to mutate; and a saved-state record.
set -e
out=${1:?usage: seed_scsi_cdb.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import os, sys, struct
out = sys.argv[1]
cdbs = [
    [0x00, 0, 0, 0, 0, 0], [0x03, 0, 0, 0, 18, 0], [0x12, 0, 0, 0, 36, 0], [0x12, 1, 0x83, 0, 255, 0],
    [0x1a, 0, 0x3f, 0, 255, 0], [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 255, 0], [0x1b, 0, 0, 0, 2, 0],
    [0x1e, 0, 0, 0, 1, 0], [0x25] + [0] * 9, [0x28, 0, 0, 0, 0, 2, 0, 0, 4, 0],
    [0xa8, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], [0x88] + [0] * 8 + [0, 0, 0, 0, 1, 0, 0],
    [0x43, 2, 0, 0, 0, 0, 0, 0, 255, 0], [0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0],
    [0x46, 0, 0, 0, 0, 0, 0, 255, 255, 0], [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0],
    [0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], [0xbd] + [0] * 8 + [8, 0, 0], [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
]
data = bytes([64])  # insert
for c in cdbs:
    data += bytes([len(c)]) + bytes(c)
open(os.path.join(out, 'seed-all'), 'wb').write(data)
open(os.path.join(out, 'seed-empty'), 'wb').write(data[1:])
open(os.path.join(out, 'seed-save'), 'wb').write(bytes([64, 6, 0, 0, 0, 0, 0, 0, 68]) + data[1:])
name = b'scsi-cdrom'
body = struct.pack('<I', 0) + struct.pack('<Q', 0) + bytes([1, 0, 1, 6, 0x28, 0, 2])
rec = struct.pack('<I', len(name)) + name + struct.pack('<IQ', 1, len(body)) + body
open(os.path.join(out, 'seed-state'), 'wb').write(b'\xff' + rec)
PY
