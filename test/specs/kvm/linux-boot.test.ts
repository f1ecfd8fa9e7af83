// A real distribution kernel, Debian's cloud kernel, booted through Berth's VMM with ACPI on
// by each boot path and with 1 and 2 vCPUs: its busybox /init must print the marker, the
// kernel must have brought up every vCPU, and the VM must end by the guest's own ACPI
// power-off. The kernel and initramfs are prepared on the host beforehand
// (node dist/test/linux-boot/prepare.js): there is no network in the KVM lab.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  BOOT_PROTOCOL,
  bootLinux,
  describeBoot,
  LINUX_BOOT_PATHS,
  markerLine,
  type LinuxBootPath,
} from '../../linux-boot/boot';
import { linuxBootDir, loadPreparedLinuxBoot } from '../../linux-boot/prepare';

// Measured in the lab (Berth under KVM under QEMU's emulator): 13-23 s a boot. The limit
// leaves room for a loaded CI machine and still fails a hung boot well inside the test's own.
const BOOT_LIMIT_MS = 150_000;

const LABEL: Record<LinuxBootPath, string> = {
  bzimage: 'bzImage (64-bit boot protocol)',
  elf: 'vmlinux at its 64-bit ELF entry (PVH note masked)',
  pvh: 'vmlinux through PVH',
};

describe("Debian's cloud kernel boots through Berth with ACPI", () => {
  for (const path of LINUX_BOOT_PATHS) {
    for (const vcpus of [1, 2]) {
      it(
        `${LABEL[path]}, ${vcpus} vCPU(s): /init's marker, ${vcpus} CPU(s) up, ACPI power-off`,
        {
          timeout: BOOT_LIMIT_MS + 60_000,
        },
        async (t) => {
          const prepared = loadPreparedLinuxBoot(); // fails naming the command that prepares it
          const token = randomBytes(6).toString('hex');
          const r = await bootLinux(prepared, path, {
            vcpus,
            memoryMiB: 256,
            timeoutMs: BOOT_LIMIT_MS,
            token,
            consoleLog: join(linuxBootDir, `console-${path}-${vcpus}.log`),
          });
          const why = describeBoot(r);
          assert.equal(r.timedOut, false, `the boot passed its ${BOOT_LIMIT_MS / 1000} s limit\n${why}`);
          assert.equal(r.protocol, BOOT_PROTOCOL[path], `booted by the wrong path\n${why}`);
          assert.ok(r.console.includes(markerLine(token)), `no initramfs marker with our token\n${why}`);
          assert.equal(r.smpCpus, vcpus, `the kernel did not bring up ${vcpus} CPU(s)\n${why}`);
          assert.deepEqual(
            { reason: r.exit.reason, detail: r.exit.detail },
            { reason: 'power-off', detail: 'acpi' },
            `the VM did not end by the guest's ACPI power-off\n${why}`,
          );
          assert.doesNotMatch(r.console, /Kernel panic|BERTH-INITRAMFS-POWEROFF-RETURNED/, why);
          t.diagnostic(
            `${path} ${vcpus} vCPU: marker at ${r.markerSeconds?.toFixed(1) ?? '-'} s, power-off at ${r.seconds.toFixed(1)} s`,
          );
        },
      );
    }
  }
});
