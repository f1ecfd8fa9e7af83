#!/bin/sh
# PID 1 of the lab VM (test/lab/lab.ts starts it under QEMU). Loads kvm-amd and the modules
# listed in /lab/modules/order, mounts the host's root read-only and the project read-write
# over 9p, and runs the host's command in a chroot of that root. The command's output goes
# to ttyS1 (streamed by the host); this script's own messages and the kernel's go to ttyS0
# (the run's console.log). The command's exit status is written to the run folder and
# printed as "BERTH-LAB-STATUS N"; then the VM powers off.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

fail() {
  echo "BERTH-LAB-FAILED $*"
  sync
  poweroff -f
}

while read -r module; do
  insmod "/lab/modules/$module.ko" || fail "insmod $module"
done < /lab/modules/order

if [ ! -e /dev/kvm ]; then
  dmesg | grep -iE 'kvm|svm' | tail -n 5
  echo "BERTH-LAB-NO-KVM"
  sync
  poweroff -f
fi

p9='trans=virtio,version=9p2000.L,msize=512000'
mount -t 9p -o "$p9" labrun /lab/run || fail "mount the run folder"
# Sets PROJECT (the project's absolute path) and FORWARDS (ports to relay to loopback).
. /lab/run/settings

# cache=loose: the host's files do not change under a run, and it lets the page cache keep
# what Node and the addon read, which over uncached 9p costs a round trip per read.
root=/root
mount -t 9p -o "$p9,cache=loose,ro" hostroot "$root" || fail "mount the host root"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount -t devtmpfs dev "$root/dev"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts devpts "$root/dev/pts"
mount -t tmpfs shm "$root/dev/shm"
mount -t tmpfs tmp "$root/tmp"
mount -t tmpfs run "$root/run"
mkdir -p "$root/run/berth-lab"
mount --bind /lab/run "$root/run/berth-lab"
# After /tmp and /run: a project checked out under either must not be hidden by them.
mkdir -p "$root$PROJECT" 2>/dev/null
mount -t 9p -o "$p9,cache=loose" project "$root$PROJECT" || fail "mount the project at $PROJECT"

ip link set lo up
if [ -n "$FORWARDS" ]; then
  ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2 ||
    fail "configure eth0 for the forwarded ports"
  # QEMU delivers forwarded connection n to eth0 port 61000+n (above Linux's ephemeral
  # ports); a persistent busybox nc relays each one to the command's loopback port.
  relay=61000
  for port in $FORWARDS; do
    nc -ll -p "$relay" -e nc 127.0.0.1 "$port" &
    relay=$((relay + 1))
  done
fi

stty -F /dev/ttyS1 raw -echo
echo "BERTH-LAB-READY $(cut -d' ' -f1 /proc/uptime)"
# The heartbeat test/lab/watchdog.ts expects (BEAT_SECONDS): a lab that stops printing it froze.
while sleep 5; do echo "BERTH-LAB-BEAT $(cut -d' ' -f1 /proc/uptime)"; done &
chroot "$root" /bin/sh /run/berth-lab/command < /dev/null > /dev/ttyS1 2>&1
status=$?
# tcsetattr(TCSADRAIN): returns once the UART has sent everything the command wrote.
stty -F /dev/ttyS1 raw -echo
echo "$status" > /lab/run/status
echo "BERTH-LAB-STATUS $status"
sync
poweroff -f
