#!/bin/sh
# Seeds the VHD fuzzer with small qemu-img vpc images: dynamic empty, dynamic with data,
# fixed. Block size is qemu's 2 MiB, so the images stay a few KiB (sparse data aside).
set -e
out="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f vpc "$tmp/empty.vhd" 4M
cp "$tmp/empty.vhd" "$out/dynamic-empty.vhd"
# Data in one block: a 64 KiB block size keeps the seed small.
printf 'berth-fuzz-seed' > "$tmp/data.raw"
truncate -s 1M "$tmp/data.raw"
qemu-img convert -q -f raw -O vpc "$tmp/data.raw" "$tmp/data.vhd"
# Cut the data block down: keep the metadata and the first sectors of the block.
head -c 8192 "$tmp/data.vhd" > "$out/dynamic-data-head.vhd"
tail -c 512 "$tmp/data.vhd" >> "$out/dynamic-data-head.vhd"
qemu-img create -q -f vpc -o subformat=fixed "$tmp/fixed.vhd" 64K
cp "$tmp/fixed.vhd" "$out/fixed-small.vhd"
# A differencing VHD (type 4) naming parent.vhd through a W2ru locator and its parent
# name, 64 KiB in 4 KiB blocks, one block allocated with half its sector bitmap set.
# qemu-img cannot create differencing VHDs: the empty dynamic image's footer is reused
# (checksums recomputed).
if command -v python3 >/dev/null 2>&1; then
  python3 - "$tmp/empty.vhd" "$out/differencing.vhd" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
def csum(b, at):
    b[at:at + 4] = b'\0\0\0\0'
    b[at:at + 4] = struct.pack('>I', ~sum(b) & 0xffffffff)
footer = bytearray(d[-512:])
footer[40:56] = struct.pack('>QQ', 65536, 65536)
footer[56:60] = struct.pack('>HBB', 65535, 16, 255)   # size from current_size
footer[60:64] = struct.pack('>I', 4)
csum(footer, 64)
name = 'parent.vhd'
path = name.encode('utf-16-le')
header = bytearray(1024)
header[0:8] = b'cxsparse'
header[8:36] = struct.pack('>QQIII', 0xffffffffffffffff, 1536, 0x00010000, 16, 4096)
header[40:56] = bytes(range(16))                        # parent unique id
header[64:64 + 2 * len(name)] = name.encode('utf-16-be')
header[576:600] = struct.pack('>IIIIQ', 0x57327275, 512, len(path), 0, 2048)
csum(header, 36)
bat = bytearray(b'\xff' * 512)
bat[0:4] = struct.pack('>I', 2560 // 512)
bitmap = bytearray(512); bitmap[0] = 0xf0              # sectors 0-3 here, 4-7 from the parent
data = b'berth-fuzz-diff'.ljust(4096, b'\0')
img = footer + header + bat + path.ljust(512, b'\0') + bitmap + data + footer
open(sys.argv[2], 'wb').write(bytes(img))
PY
fi
