#!/usr/bin/env bash
# Installs the system packages Berth needs on Debian or Ubuntu, the one list of them
# (README.md shows it; .ci/run uses this script). Packages already present are skipped;
# as a user, apt-get runs through sudo, which asks for your password.
#
#   ./setup.sh               what building and running Berth needs
#   ./setup.sh --with-tests  also what `npm test` needs
#   ./setup.sh --check       only says what is missing (exit 1 if anything is)
set -euo pipefail

# Building the native addon and berth-vmm: a C++20 compiler and make (build-essential),
# python3 for node-gyp, pkg-config, zlib (qcow2 compression), libslirp and its glib (NAT
# networking), nlohmann-json (the worker's control protocol), liburing (asynchronous disk I/O),
# libpng (berth-vmm's --screenshot-after writes the display as PNG), libvncserver (the
# graphical console's VNC server; its libvncclient is the native tests' viewer);
# and the firmware Generation 2 and Generation 1 VMs boot, unmodified: OVMF (UEFI) and SeaBIOS.
build=(build-essential python3 pkg-config zlib1g-dev libslirp-dev libglib2.0-dev nlohmann-json3-dev liburing-dev
  libpng-dev libvncserver-dev ovmf seabios)
# The tests: qemu-img and QEMU are the independent references the specs compare against,
# and QEMU runs the KVM lab on hosts without /dev/kvm; busybox-static, cpio, xz-utils, lz4
# and e2fsprogs build the lab's and the Linux boot spec's initramfs and images; clang
# brings libFuzzer and the sanitizers; chromium drives the window end to end;
# libvirt-clients and libxml2-utils validate exported libvirt XML and OVF; acpica-tools (iasl)
# judges the ACPI tables firmware VMs get; GRUB's EFI and BIOS images, xorriso and mtools
# make a bootable ISO of Debian's installer (debian-installer-12-netboot-amd64) for the
# firmware boot specs; debootstrap installs Debian onto a disk image that grub-install
# (grub2-common, with grub-pc-bin's BIOS images) makes bootable, for the disk boot spec
# and bench:boot.
tests=(qemu-system-x86 qemu-utils clang libclang-rt-14-dev lz4 xz-utils cpio busybox-static e2fsprogs chromium
  libvirt-clients libxml2-utils acpica-tools grub-efi-amd64-bin grub-pc-bin xorriso mtools
  debian-installer-12-netboot-amd64 debootstrap grub2-common)

with_tests=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --with-tests) with_tests=1 ;;
    --check) check_only=1 ;;
    -h | --help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "setup.sh: unknown option '$arg' (takes --with-tests, --check)" >&2
      exit 2
      ;;
  esac
done

packages=("${build[@]}")
[ "$with_tests" = 1 ] && packages+=("${tests[@]}")

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "setup.sh installs packages on Debian and Ubuntu only; on this system install the" >&2
  echo "equivalents of: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

node_note=""
if ! command -v node >/dev/null; then
  node_note="Node.js 20 or later is not installed: get it from https://nodejs.org or your distribution"
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  node_note="Node.js $(node -v) is too old: Berth needs 20 or later (https://nodejs.org)"
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages are installed"
elif [ "$check_only" = 1 ]; then
  echo "setup.sh: missing: ${missing[*]}"
else
  echo "setup.sh: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup.sh: run this as root, or install sudo: apt-get needs root to install packages" >&2
      exit 1
    fi
    sudo=(sudo)
    echo "setup.sh: apt-get needs root: running it with sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ -n "$node_note" ]; then
  echo "setup.sh: $node_note" >&2
  exit 1
fi
if [ ! -e /dev/kvm ]; then
  echo "setup.sh: note: no /dev/kvm here; Berth runs VMs only where KVM works (npm test runs what needs it in the KVM lab)"
fi
[ "$check_only" = 1 ] && [ ${#missing[@]} -gt 0 ] && exit 1
exit 0
