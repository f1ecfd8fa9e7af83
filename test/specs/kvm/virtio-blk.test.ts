// virtio-blk on the real KVM: the test guest's own driver writes a pattern through each
// disk format Berth supports, flushes and reads it back; qemu-img then judges the image
// (check, and the pattern read back through `qemu-img convert -O raw`), and a second boot
// reads the pattern again. 32 requests in flight at once, read-only disks, discard / write
// zeroes, hostile requests and two disks in one VM follow.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { createDisk, Machine, NativeError, type DiskFormat } from '../../../app/native';
import { testGuestPath } from '../../support/guest';
import { runGuest } from '../../support/run-guest';

const MiB = 1024 * 1024;
const PATTERN_BYTES = 64 * 1024;
const QEMU_NAME: Record<DiskFormat, string> = { raw: 'raw', qcow2: 'qcow2', vhdx: 'vhdx', vhd: 'vpc' };

// The guest's pattern_word(): 32-bit little-endian word j of seed's pattern.
function pattern(seed: number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let j = 0; j < bytes / 4; j++) {
    let v = (Math.imul(j + 1, 2654435761) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
    v = (v ^ (v >>> 13)) >>> 0;
    v = Math.imul(v, 0xc2b2ae35) >>> 0;
    v = (v ^ (v >>> 16)) >>> 0;
    out.writeUInt32LE(v, j * 4);
  }
  return out;
}

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-virtio-blk-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

// The image's first `bytes` bytes as qemu-img reads them.
function readBack(path: string, format: DiskFormat, bytes: number): Buffer {
  const raw = `${path}.readback.raw`;
  execFileSync('qemu-img', ['convert', '-f', QEMU_NAME[format], '-O', 'raw', path, raw]);
  try {
    return readFileSync(raw).subarray(0, bytes);
  } finally {
    rmSync(raw, { force: true });
  }
}

async function newDisk(name: string, format: DiskFormat, size = 64 * MiB): Promise<string> {
  const path = join(dir, name);
  await createDisk(path, { format, size });
  return path;
}

function assertExit0(run: { exit: { reason: string; code: number } }): void {
  assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
}

describe('virtio-blk on the real KVM', () => {
  for (const format of ['raw', 'qcow2', 'vhdx', 'vhd'] as const) {
    it(`${format}: the guest writes, flushes and verifies; qemu-img agrees; a second boot reads it back`, async () => {
      const path = await newDisk(`disk.${format}`, format);
      const serial = `berth-${format}`;
      const write = await runGuest('virtio-blk write 7', { disks: [{ path, serial }] });
      assert.match(
        write.output,
        new RegExp(
          `^virtio-blk: capacity (\\d+) sectors, id ${serial}\\nvirtio-blk: wrote and verified 128 sectors\\n$`,
        ),
      );
      const sectors = Number(/capacity (\d+)/.exec(write.output)?.[1]);
      assert.ok(sectors >= (64 * MiB) / 512 && sectors < (65 * MiB) / 512, `capacity ${sectors}`);
      assertExit0(write);
      if (format === 'qcow2' || format === 'vhdx') {
        execFileSync('qemu-img', ['check', '-f', format, path], { encoding: 'utf8' });
      }
      assert.ok(readBack(path, format, PATTERN_BYTES).equals(pattern(7, PATTERN_BYTES)), 'qemu-img reads the pattern');

      const read = await runGuest('virtio-blk read 7', { disks: [{ path, serial }] });
      assert.equal(
        read.output,
        `virtio-blk: capacity ${sectors} sectors, id ${serial}\nvirtio-blk: verified 128 sectors\n`,
      );
      assertExit0(read);
    });
  }

  // The guest offers 32 writes, then 32 reads, each batch with one notify: the device keeps
  // them all on the disk at once (its stats say so), whatever order they finish in.
  for (const format of ['raw', 'qcow2', 'vhdx', 'vhd'] as const) {
    it(`${format}: 32 requests in flight together are all carried out; qemu-img agrees`, async () => {
      const path = await newDisk(`depth.${format}`, format);
      const run = await runGuest('virtio-blk-depth 32', { disks: [{ path }], vcpus: 2 });
      assert.match(
        run.output,
        /^virtio-blk-depth: 32 writes, then 32 reads, offered together and verified\nvirtio-blk-depth: completions out of submission order: \d+\n$/,
      );
      assertExit0(run);
      const [disk] = run.machine.stats().disks;
      assert.ok(disk);
      assert.equal(disk.path, path);
      assert.equal(disk.queues, 2, 'one request queue per vCPU');
      assert.ok(['io_uring', 'threads'].includes(disk.ioBackend), disk.ioBackend);
      assert.ok(disk.peakInFlight >= 32, `at most ${disk.peakInFlight} requests were on the disk at once`);
      assert.ok(disk.completedRequests >= 65, `${disk.completedRequests} requests completed`);
      if (format === 'qcow2' || format === 'vhdx') execFileSync('qemu-img', ['check', '-f', format, path]);
      const back = readBack(path, format, (31 * 40 + 8) * 512);
      for (let k = 0; k < 32; k++) {
        const at = k * 40 * 512;
        const want = pattern(k + 1, at + 4096).subarray(at);
        assert.ok(back.subarray(at, at + 4096).equals(want), `slot ${k} as qemu-img reads it`);
      }
    });
  }

  it('a read-only disk: reads work, a write gets IOERR and the image is untouched', async () => {
    const path = join(dir, 'ro.raw');
    const content = pattern(5, 4 * MiB);
    writeFileSync(path, content);
    const run = await runGuest('virtio-blk ro', { disks: [{ path, readOnly: true }] });
    assert.equal(run.output, 'virtio-blk: read-only disk, write refused with IOERR\n');
    assertExit0(run);
    assert.ok(readFileSync(path).equals(content));
  });

  for (const format of ['raw', 'qcow2'] as const) {
    it(`${format}: discard and write zeroes read back as zeroes (unmap on discard is UNSUPP)`, async () => {
      const path = await newDisk(`discard.${format}`, format);
      const run = await runGuest('virtio-blk discard', { disks: [{ path }] });
      assert.equal(run.output, 'virtio-blk: discard and write-zeroes read back as zeroes\n');
      assertExit0(run);
      const back = readBack(path, format, PATTERN_BYTES);
      const expected = Buffer.alloc(PATTERN_BYTES);
      pattern(3, PATTERN_BYTES).copy(expected, 32 * 512, 32 * 512, 64 * 512);
      assert.ok(back.equals(expected), 'qemu-img sees the zeroed ranges and the rest of the pattern');
      if (format === 'qcow2') execFileSync('qemu-img', ['check', '-f', 'qcow2', path]);
    });
  }

  it('hostile requests each get an error status and the device keeps working', async () => {
    const path = await newDisk('hostile.raw', 'raw', 8 * MiB);
    const run = await runGuest('virtio-blk-hostile', { disks: [{ path }] });
    assert.equal(
      run.output,
      [
        'short header -> IOERR',
        'sector past the end -> IOERR',
        'sector 2^64-1 -> IOERR',
        'odd length -> IOERR',
        'too many segments -> IOERR',
        'unknown type -> UNSUPP',
        'discard past the end -> IOERR',
      ]
        .map((l) => `virtio-blk-hostile: ${l}, device ok\n`)
        .join('') + 'virtio-blk-hostile: all cases handled\n',
    );
    assertExit0(run);
  });

  it('two disks in one VM, each with its own serial and contents', async () => {
    const a = await newDisk('two-a.raw', 'raw', 16 * MiB);
    const b = await newDisk('two-b.qcow2', 'qcow2', 32 * MiB);
    const run = await runGuest('virtio-blk two 11', {
      disks: [
        { path: a, serial: 'disk-a' },
        { path: b, serial: 'disk-b' },
      ],
    });
    assert.equal(
      run.output,
      'virtio-blk: capacity 32768 sectors, id disk-a\n' +
        'virtio-blk: capacity 65536 sectors, id disk-b\n' +
        'virtio-blk: two disks written and verified\n',
    );
    assertExit0(run);
    assert.ok(readBack(a, 'raw', PATTERN_BYTES).equals(pattern(11, PATTERN_BYTES)));
    assert.ok(readBack(b, 'qcow2', PATTERN_BYTES).equals(pattern(12, PATTERN_BYTES)));
  });

  it('disk errors come out of create() with their codes', async () => {
    const create = (disks: { path: string; serial?: string }[]) =>
      Machine.create({ memoryMiB: 16, vcpus: 1, kernelPath: testGuestPath(), disks });
    await assert.rejects(create([{ path: join(dir, 'missing.raw') }]), (e: NativeError) => e.code === 'DISK_NOT_FOUND');
    const path = await newDisk('twice.raw', 'raw', MiB);
    await assert.rejects(create([{ path }, { path }]), (e: NativeError) => e.code === 'DISK_IN_USE');
    await assert.rejects(create([{ path, serial: 'x'.repeat(21) }]), (e: NativeError) => e.code === 'INVALID_ARGUMENT');
    await assert.rejects(
      Machine.create({ memoryMiB: 16, vcpus: 1, kernelPath: testGuestPath(), disks: [{ path, format: 'qcow2' }] }),
      (e: NativeError) => e.code === 'DISK_FORMAT_MISMATCH',
    );
  });
});
