#!/bin/sh
# Writes seeds for fuzz_saved_state into $1: valid processor records (machine, cpuid, one
# vCPU, platform), bare and inside a state file's front with correct checksums.
set -e
out=${1:?usage: seed_saved_state.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import os, struct, sys, zlib
out = sys.argv[1]
def s(b): return struct.pack('<I', len(b)) + b
def rec(name, body): return s(name.encode()) + struct.pack('<IQ', 1, len(body)) + body
machine = rec('machine', s(b'kvm') + s(b'memory=4096 vcpus=1'))
cpuid = rec('cpuid', struct.pack('<I', 2) + struct.pack('<7I', 1, 0, 0, 0x806f0, 0x800, 0x7ed8320b, 0x178bfbff)
            + struct.pack('<7I', 7, 0, 1, 0, 0x219c07ab, 0, 0))
seg = struct.pack('<QIHBBB', 0, 0xffff, 0, 3, 0, 1)
vcpu = b''.join(struct.pack('<Q', 0) for _ in range(17)) + struct.pack('<Q', 2)
vcpu += seg * 8 + struct.pack('<QH', 0, 0xffff) * 2 + struct.pack('<7Q', 0x60000010, 0, 0, 0, 0, 0, 0xfee00900)
vcpu += s(bytes(4096)) + struct.pack('<I', 1) + struct.pack('<IQ', 0, 1)
vcpu += struct.pack('<I', 1) + struct.pack('<IQ', 0x10, 12345) + s(bytes(1024)) + struct.pack('<I', 0)
vcpu += bytes([0, 0, 0, 0]) + struct.pack('<I', 0) + bytes([0, 0, 0, 0, 0, 0, 0]) + struct.pack('<I', 0) + bytes(4)
vcpu += struct.pack('<6Q', 0, 0, 0, 0, 0xffff0ff0, 0x400)
platform = rec('platform', s(b'kvm') + struct.pack('<I', 4) + s(bytes(512)) * 3 + s(bytes(112)) + struct.pack('<Q', 1))
records = machine + cpuid + rec('vcpu', vcpu) + platform
open(os.path.join(out, 'records'), 'wb').write(b'\x01' + records)
head = b'BERTHVMS' + struct.pack('<IQQIQQ', 1, 4096, len(records), zlib.crc32(records), 2 << 20, 4096)
head += struct.pack('<I', zlib.crc32(head))
front = head + bytes(4096 - len(head)) + records
open(os.path.join(out, 'file'), 'wb').write(b'\x00' + struct.pack('<Q', (2 << 20) + 4096) + front)
PY
