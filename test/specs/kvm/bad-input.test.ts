// What bad configurations and bad kernel files get: a NativeError with a stable code
// and a message that says what is wrong and what to do.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Machine, NativeError, probe, type MachineConfig, type NativeErrorCode } from '../../../app/native';
import { testGuestPath } from '../../support/guest';

async function rejectsWith(config: MachineConfig, code: NativeErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(Machine.create(config), (err: unknown) => {
    assert.ok(err instanceof NativeError, `expected a NativeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

// An x86-64 ELF whose one PT_LOAD segment wants memory at 16 MiB .. 16 MiB + memsz.
function elf64(memsz: number): Buffer {
  const b = Buffer.alloc(0x1000);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // 64-bit
  b[5] = 1; // little endian
  b[6] = 1;
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(62, 18); // x86-64
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(0x1000000n, 24); // entry
  b.writeBigUInt64LE(64n, 32); // phoff
  b.writeUInt16LE(64, 52); // ehsize
  b.writeUInt16LE(56, 54); // phentsize
  b.writeUInt16LE(1, 56); // phnum
  const ph = 64;
  b.writeUInt32LE(1, ph); // PT_LOAD
  b.writeUInt32LE(5, ph + 4);
  b.writeBigUInt64LE(0x1000n, ph + 8); // offset
  b.writeBigUInt64LE(0xffffffff81000000n, ph + 16); // vaddr
  b.writeBigUInt64LE(0x1000000n, ph + 24); // paddr
  b.writeBigUInt64LE(0n, ph + 32); // filesz
  b.writeBigUInt64LE(BigInt(memsz), ph + 40); // memsz
  return b;
}

describe('bad input', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-bad-input-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const base = (): MachineConfig => ({ memoryMiB: 32, vcpus: 1, kernelPath: testGuestPath(), cmdline: 'hello' });

  it('refuses memory and vCPU counts the host cannot give, naming the limit', async () => {
    await rejectsWith(
      { ...base(), memoryMiB: 0 },
      'INVALID_ARGUMENT',
      /memoryMiB must be a whole number from 2 to \d+/,
    );
    await rejectsWith({ ...base(), memoryMiB: 1.5 }, 'INVALID_ARGUMENT', /memoryMiB/);
    await rejectsWith({ ...base(), memoryMiB: 1 << 30 }, 'INVALID_ARGUMENT', /this host's memory/);
    await rejectsWith({ ...base(), vcpus: 0 }, 'INVALID_ARGUMENT', /vcpus must be a whole number from 1/);
    await rejectsWith(
      { ...base(), vcpus: availableParallelism() + 1 },
      'INVALID_ARGUMENT',
      new RegExp(`from 1 to ${availableParallelism()} \\(this host's CPUs\\)`),
    );
  });

  it('refuses a kernel or initrd that does not exist or is a folder', async () => {
    await rejectsWith({ ...base(), kernelPath: join(dir, 'nope') }, 'INVALID_ARGUMENT', /kernel .*nope does not exist/);
    await rejectsWith({ ...base(), kernelPath: dir }, 'INVALID_ARGUMENT', /is not a regular file/);
    await rejectsWith({ ...base(), initrdPath: join(dir, 'nope') }, 'INVALID_ARGUMENT', /initrd .*nope does not exist/);
    await rejectsWith({ ...base(), cmdline: 'a\0b' }, 'INVALID_ARGUMENT', /NUL/);
  });

  it('refuses a file that is no kernel, naming the formats it accepts', async () => {
    const junk = join(dir, 'junk.bin');
    writeFileSync(junk, Buffer.from('this is not a kernel at all, just text\n'.repeat(100)));
    await rejectsWith(
      { ...base(), kernelPath: junk },
      'BOOT_UNKNOWN_FORMAT',
      /junk\.bin is not a bootable kernel: expected a PVH ELF .*bzImage .*vmlinux/,
    );
    const empty = join(dir, 'empty');
    writeFileSync(empty, '');
    await rejectsWith({ ...base(), kernelPath: empty }, 'BOOT_UNKNOWN_FORMAT', /empty is not a bootable kernel/);
  });

  it('refuses a kernel that does not fit in guest memory', async () => {
    const big = join(dir, 'vmlinux-big');
    writeFileSync(big, elf64(64 << 20));
    await rejectsWith(
      { ...base(), kernelPath: big, memoryMiB: 32 },
      'BOOT_KERNEL_TOO_BIG',
      /kernel .*vmlinux-big needs memory up to 80 MiB but the VM has 32 MiB; give the VM more memory/,
    );
  });

  it('refuses an initrd that does not fit in guest memory', async () => {
    const initrd = join(dir, 'initrd.img');
    writeFileSync(initrd, Buffer.alloc(40 << 20, 0x5a));
    await rejectsWith(
      { ...base(), initrdPath: initrd, memoryMiB: 32 },
      'BOOT_INITRD_TOO_BIG',
      /initrd .*initrd\.img is 40 MiB .* give the VM more memory or use a smaller initrd/,
    );
  });

  it('refuses a command line longer than the kernel accepts', async () => {
    await rejectsWith(
      { ...base(), cmdline: 'x'.repeat(70_000) },
      'BOOT_CMDLINE_TOO_LONG',
      /the kernel command line is 70000 bytes; .* accepts at most 65535/,
    );
  });

  it('the probe reports this host has KVM', () => {
    const caps = probe();
    assert.equal(caps.backend, 'kvm');
    assert.equal(caps.apiVersion, 12);
    assert.ok(caps.immediateExit);
  });

  it('writeConsole refuses values that are not bytes or text', async () => {
    const machine = await Machine.create(base());
    assert.throws(() => machine.writeConsole(42 as unknown as string), /writeConsole takes a string or a Uint8Array/);
    await machine.stop();
  });
});
