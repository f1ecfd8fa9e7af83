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
