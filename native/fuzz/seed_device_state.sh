#!/bin/sh
# Writes seeds for fuzz_device_state into $1: one valid record per device (a running
# virtio-blk and virtio-console with requests waiting in guest memory, an idle virtio-blk,
# the UART, the RTC, the i8042, ACPI sleep), for the fuzzer to mutate from.
set -e
out=${1:?usage: seed_device_state.sh <corpus dir>}
mkdir -p "$out"
python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]
u8 = lambda v: struct.pack('<B', v)
u16 = lambda v: struct.pack('<H', v)
u32 = lambda v: struct.pack('<I', v)
u64 = lambda v: struct.pack('<Q', v)
blob = lambda b: u32(len(b)) + b
def record(name, body, version=1):
    return blob(name.encode()) + u32(version) + u64(len(body)) + body
def seed(name, target, record_bytes, ram=b''):
    open(os.path.join(out, name), 'wb').write(u8(target) + u16(len(ram)) + ram + record_bytes)

def queue(size=0, desc=0, avail=0, used=0, active=False, last_avail=0, used_idx=0):
    return record('virtqueue', u32(size) + u64(desc) + u64(avail) + u64(used) + u8(active) + u8(0) +
                  u16(last_avail) + u16(used_idx) + u16(0) + u8(0) + u8(0) + blob(b''))
def mmio(device_id, status, features, queues, device):
    return record('virtio-mmio', u32(device_id) + u16(len(queues)) + u32(status) + u32(0) + u32(0) +
                  u64(features) + u32(0) + u32(0) + u32(0) + blob(b'') + b''.join(queues) + device)
running = 0x0f  # ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
version1 = 1 << 32
rings = [queue(8, 0x1000, 0x1080, 0x2000, True), queue(8, 0x3000, 0x3080, 0x4000, True)]

# Guest memory: queue 0 holds one chain (a 3-part virtio-blk IN request, or one writable
# buffer for the console's receive queue).
ram = bytearray(0x8100)
struct.pack_into('<QIHH', ram, 0x1000, 0x6000, 16, 1, 1)
struct.pack_into('<QIHH', ram, 0x1010, 0x7000, 512, 3, 2)
struct.pack_into('<QIHH', ram, 0x1020, 0x8000, 1, 2, 0)
struct.pack_into('<HHH', ram, 0x1080, 0, 1, 0)
struct.pack_into('<IIQ', ram, 0x6000, 0, 0, 0)
seed('blk-running', 0, mmio(2, running, version1, rings,
     record('virtio-blk', u64(2048) + u8(0) + u16(2) + u64(3))), bytes(ram))
seed('blk-idle', 0, mmio(2, 0, 0, [queue(), queue()], record('virtio-blk', u64(2048) + u8(0) + u16(2) + u64(0))))
con = bytearray(0x4100)
struct.pack_into('<QIHH', con, 0x1000, 0x5000, 16, 2, 0)
struct.pack_into('<HHH', con, 0x1080, 0, 1, 0)
seed('console-running', 1, mmio(3, running, version1, rings, record('virtio-console', blob(b'hello'))), bytes(con))

seed('uart', 2, record('uart16550', bytes([1, 0, 0x0f, 0x03, 0x0b, 0, 0xb0, 0x5a]) + u8(1) + u8(0x40) + u8(1) +
     blob(b'abc') + blob(b'defg') + u64(0)))
seed('rtc', 3, record('cmos-rtc', u8(0x40) + u8(0x26) + u8(0x82) + u8(0) + u64(3600) + u8(1) + u64(2031) +
     bytes([5, 6, 7, 8, 9, 3]) + bytes(range(128))))
seed('i8042', 4, record('i8042', bytes([0x45] + [0] * 31) + u8(3) + u8(0x55) + u8(1) + u8(1) + u8(0x60)))
kbd = record('ps2-keyboard', u8(3) + bytes([0xfa, 0xe0, 0x75]) + u64(1) + u8(2) + u8(4) + u8(0x2b) + u8(1) + u8(0xed) + u8(0xfa))
mouse = record('ps2-mouse', u8(4) + bytes([0x08, 1, 2, 0]) + u64(0) + u8(3) + u8(80) + u8(2) + u8(0) + u8(1) + u8(0) +
               u8(0) + u8(0) + u8(0) + bytes([200, 100, 80]) + u32(300) + u32(0) + u32(2) + u8(1) + u8(1))
seed('i8042-devices', 4, record('i8042', bytes([0x47] + [0] * 31) + u8(3) + u8(0x1e) + u8(1) + u8(0) + u8(0) +
     u8(0) + u8(0) + u8(1) + u8(0x45) + u8(0) + u8(0) + u8(1) + kbd + mouse, version=2))
seed('acpi-sleep', 5, record('acpi-sleep', b''))
PY
