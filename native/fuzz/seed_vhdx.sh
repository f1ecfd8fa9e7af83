#!/bin/sh
# Seeds the VHDX fuzzer with small images from qemu-img (1 MiB blocks): an empty dynamic
# image, a small fixed one, and one converted from a patterned raw file (with data), each
# written in the harness's sparse "VXSP" form (the images span megabytes, mostly zeroes).
set -e
out="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f vhdx -o block_size=1M "$tmp/dynamic.vhdx" 3M
qemu-img create -q -f vhdx -o block_size=1M,subformat=fixed "$tmp/fixed.vhdx" 1M
head -c 2097152 /dev/zero > "$tmp/p.raw"
printf 'berth vhdx fuzz seed data' | dd of="$tmp/p.raw" bs=1 seek=4096 conv=notrunc 2>/dev/null
printf 'more data' | dd of="$tmp/p.raw" bs=1 seek=1040000 conv=notrunc 2>/dev/null
printf 'second block' | dd of="$tmp/p.raw" bs=1 seek=1100000 conv=notrunc 2>/dev/null
qemu-img convert -O vhdx -o block_size=1M "$tmp/p.raw" "$tmp/data.vhdx"
for name in dynamic fixed data; do
  python3 - "$tmp/$name.vhdx" "$out/$name.vxsp" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
out = bytearray(b'VXSP')
S = 4096
for off in range(0, len(data), S):
    chunk = data[off:off + S].rstrip(b'\0')
    if chunk:
        out += struct.pack('<IH', off // S, len(chunk)) + chunk
out += struct.pack('<IH', len(data) // S, 0)
open(sys.argv[2], 'wb').write(out)
PY
done
