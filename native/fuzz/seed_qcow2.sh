#!/bin/sh
# Seeds the qcow2 fuzzer with small images from qemu-img: empty, with data, compressed,
# with a backing name, version 2, small clusters.
set -e
out="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
command -v qemu-img >/dev/null || exit 0
head -c 20000 /dev/urandom > "$tmp/data.raw"
printf 'berth qcow2 seed' | dd of="$tmp/data.raw" bs=1 seek=9000 conv=notrunc 2>/dev/null
truncate -s 64K "$tmp/data.raw"
qemu-img create -q -f qcow2 -o cluster_size=512 "$out/empty-512.qcow2" 64K
qemu-img convert -q -f raw -O qcow2 -o cluster_size=512 "$tmp/data.raw" "$out/data-512.qcow2"
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=1024 "$tmp/data.raw" "$out/compressed-1k.qcow2"
qemu-img convert -q -f raw -O qcow2 -o compat=0.10,cluster_size=512 "$tmp/data.raw" "$out/v2-512.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.qcow2 -F qcow2 -u "$out/backing-512.qcow2" 64K
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 "$out/refcount1-512.qcow2" 64K
