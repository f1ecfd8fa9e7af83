#!/bin/sh
# Seeds the boot fuzzer with the real test guest (a PVH ELF).
set -e
out="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
make -s -C "$root/test/guest" OUT="$root/build/guest" >/dev/null
cp "$root/build/guest/berth-test-guest.elf" "$out/pvh-guest.elf"
