// SCSI hard disks of Generation 1 and 2 VMs: the configuration's `controller` (optional,
// 'virtio' by default, 'scsi' for firmware VMs only), the worker spec, the CLI (--disk
// ...,scsi and --controller), and libvirt XML / OVF carrying the bus. No VM runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigError, deviceCountProblem, MAX_VIRTIO_DEVICES, migrateConfig } from '../../../app/api';
import { parseDiskSpec } from '../../../app/cli/parse';
import { ovfEnvelope, scsiTargets, toLibvirt } from '../../../app/services/export-formats';
import { toWorkerSpec } from '../../../app/services/worker-spec';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';
import { testGuestPath } from '../../support/guest';

const id = '7a1c2b8e-2a4d-4c3e-9f1a-0b2c3d4e5f62';
const base = { schemaVersion: 2, id, name: 'g2', memory: { startupMiB: 1024 } };
const disk = (slot: number, controller?: 'virtio' | 'scsi') => ({
  slot,
  kind: 'virtual',
  path: `/vms/d${slot}.qcow2`,
  ...(controller ? { controller } : {}),
});

function refused(raw: unknown, expected: RegExp): void {
  assert.throws(
    () => migrateConfig(raw),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.match(err.message, expected);
      return true;
    },
  );
}

describe('disk controller in the configuration', () => {
  it('is optional: files without it stay valid and unchanged, and mean virtio', () => {
    const c = migrateConfig({ ...base, boot: { kind: 'uefi' }, disks: [disk(0)] });
    assert.equal(c.disks[0]?.controller, undefined);
    const spec = toWorkerSpec(c, { codePath: '/c.fd', varsPath: '/v.fd' }, '/vms/x');
    assert.deepEqual(spec.disks, [{ path: '/vms/d0.qcow2', readOnly: false, serial: 'berth-slot-0' }]);
  });

  it("puts a firmware VM's disk on the SCSI controller, and the worker spec says so", () => {
    const c = migrateConfig({
      ...base,
      boot: { kind: 'bios' },
      disks: [disk(1, 'scsi'), disk(0, 'virtio')],
      dvdDrives: [{ slot: 0 }],
    });
    assert.equal(c.disks[0]?.controller, 'scsi');
    const spec = toWorkerSpec(c, { codePath: '/bios.bin' }, '/vms/x');
    assert.deepEqual(spec.disks, [
      { path: '/vms/d0.qcow2', readOnly: false, serial: 'berth-slot-0' },
      { path: '/vms/d1.qcow2', readOnly: false, serial: 'berth-slot-1', controller: 'scsi' },
    ]);
  });

  it('refuses SCSI disks on a VM that boots a kernel file, and unknown controllers, naming the field', () => {
    refused(
      { ...base, boot: { kind: 'pvh', kernelPath: '/k' }, disks: [disk(0), disk(3, 'scsi')] },
      /^disks\[1\]\.controller: 'scsi' is for Generation 1 \(bios\) and 2 \(uefi\) VMs/,
    );
    refused(
      { ...base, boot: { kind: 'uefi' }, disks: [{ ...disk(0), controller: 'ide' }] },
      /^disks\[0\]\.controller: /,
    );
  });

  it('counts SCSI disks on the controller, not as virtio devices', () => {
    // Nine virtio disks fill the virtio devices; SCSI disks need only the one controller.
    const disks = Array.from({ length: MAX_VIRTIO_DEVICES }, (_, slot) => disk(slot, slot < 2 ? 'scsi' : undefined));
    const c = migrateConfig({ ...base, boot: { kind: 'uefi' }, disks });
    assert.equal(c.disks.length, MAX_VIRTIO_DEVICES);
    assert.match(deviceCountProblem(MAX_VIRTIO_DEVICES, 0, 1) ?? '', /DVD drives or SCSI disks/);
    refused(
      {
        ...base,
        boot: { kind: 'uefi' },
        disks: Array.from({ length: MAX_VIRTIO_DEVICES }, (_, slot) => disk(slot)),
        dvdDrives: [{ slot: 0 }],
      },
      /^disks: a VM can have at most/,
    );
  });
});

describe('disk specs on the command line', () => {
  it('takes ,scsi and ,virtio after a disk in any order with ,ro, and --controller for all', () => {
    assert.deepEqual(parseDiskSpec('--disk', 'new:1G,scsi'), { kind: 'new', sizeBytes: 2 ** 30, controller: 'scsi' });
    assert.deepEqual(parseDiskSpec('--disk', '2=new:1G:raw,ro,scsi'), {
      kind: 'new',
      sizeBytes: 2 ** 30,
      format: 'raw',
      slot: 2,
      readOnly: true,
      controller: 'scsi',
    });
    assert.deepEqual(parseDiskSpec('--disk', '/a.qcow2,scsi,ro'), {
      kind: 'file',
      path: '/a.qcow2',
      readOnly: true,
      controller: 'scsi',
    });
    assert.deepEqual(parseDiskSpec('--disk', '/a.qcow2', 'scsi'), {
      kind: 'file',
      path: '/a.qcow2',
      controller: 'scsi',
    });
    assert.deepEqual(parseDiskSpec('--disk', '/a.qcow2,virtio', 'scsi'), { kind: 'file', path: '/a.qcow2' });
  });
});

describe('export', () => {
  const c = migrateConfig({
    ...base,
    boot: { kind: 'uefi', bootOrder: ['disk', 'dvd'] },
    disks: [disk(0, 'scsi'), disk(1), { ...disk(2, 'scsi'), readOnly: true }],
    dvdDrives: [{ slot: 0 }, { slot: 1, path: '/isos/a.iso' }],
  });

  it('numbers SCSI targets as the machine does: SCSI disks, then DVD drives, each by slot', () => {
    const t = scsiTargets(c);
    assert.deepEqual(
      [...t.disks],
      [
        [0, 0],
        [2, 1],
      ],
    );
    assert.deepEqual(
      [...t.dvds],
      [
        [0, 2],
        [1, 3],
      ],
    );
    assert.equal(t.count, 4);
  });

  it('writes libvirt XML with the SCSI disks on the virtio-scsi controller, which validates', () => {
    const xml = toLibvirt(c, '/vms/x');
    assert.match(
      xml,
      /<source file="\/vms\/d0\.qcow2"\/>\n {6}<target dev="sda" bus="scsi"\/>\n {6}<serial>berth-slot-0<\/serial>\n {6}<address type="drive" controller="0" bus="0" target="0" unit="0"\/>/,
    );
    assert.match(xml, /<source file="\/vms\/d1\.qcow2"\/>\n {6}<target dev="vdb" bus="virtio"\/>/);
    assert.match(xml, /<target dev="sdb" bus="scsi"\/>\n {6}<readonly\/>\n {6}<serial>berth-slot-2<\/serial>/);
    assert.match(
      xml,
      /<target dev="sdd" bus="scsi"\/>\n {6}<readonly\/>\n {6}<address type="drive" controller="0" bus="0" target="3" unit="0"\/>/,
    );
    assert.equal(xml.match(/<controller type="scsi"/g)?.length, 1);
    const dir = mkdtempSync(join(tmpdir(), 'berth-scsi-xml-'));
    try {
      const file = join(dir, 'd.xml');
      execFileSync('sh', ['-c', `cat > '${file}'`], { input: xml });
      execFileSync('virt-xml-validate', [file, 'domain'], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes OVF with the SCSI disks parented to the SCSI controller at their targets', () => {
    const files = [0, 1, 2].map((slot) => ({ id: `file${slot}`, href: `d${slot}.qcow2`, size: 1, capacity: 1, slot }));
    const env = ovfEnvelope(c, files);
    const items = env.split('<Item>').slice(1);
    const controller = items.find((i) => i.includes('<rasd:ResourceType>6<'));
    assert.ok(controller);
    const controllerId = /<rasd:InstanceID>(\d+)</.exec(controller)?.[1];
    const diskItem = (slot: number) => items.find((i) => i.includes(`ovf:/disk/vmdisk${slot}<`)) ?? '';
    assert.match(diskItem(0), new RegExp(`<rasd:AddressOnParent>0<[^]*<rasd:Parent>${controllerId}<`));
    assert.match(diskItem(2), new RegExp(`<rasd:AddressOnParent>1<[^]*<rasd:Parent>${controllerId}<`));
    assert.doesNotMatch(diskItem(1), /<rasd:Parent>/);
    const dvd1 = items.find((i) => i.includes('DVD drive 1')) ?? '';
    assert.match(dvd1, new RegExp(`<rasd:AddressOnParent>3<[^]*<rasd:Parent>${controllerId}<`));
    const dir = mkdtempSync(join(tmpdir(), 'berth-scsi-ovf-'));
    try {
      const file = join(dir, 'd.ovf');
      execFileSync('sh', ['-c', `cat > '${file}'`], { input: env });
      execFileSync('xmllint', ['--noout', file], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('CLI: SCSI disks of a VM', () => {
  let home: string;
  let fw: string;
  const savedDir = process.env['BERTH_FIRMWARE_DIR'];
  before(() => {
    home = makeBerthHome('scsi');
    // Stand-ins of Debian's firmware files (Generation 2 needs them to exist).
    fw = mkdtempSync(join(tmpdir(), 'berth-scsi-fw-'));
    writeFileSync(join(fw, 'OVMF_CODE_4M.fd'), Buffer.alloc(3653632));
    writeFileSync(join(fw, 'OVMF_VARS_4M.ms.fd'), Buffer.alloc(540672, 'M'));
    writeFileSync(join(fw, 'OVMF_VARS_4M.fd'), Buffer.alloc(540672, 'B'));
    process.env['BERTH_FIRMWARE_DIR'] = fw;
  });
  after(async () => {
    if (savedDir === undefined) delete process.env['BERTH_FIRMWARE_DIR'];
    else process.env['BERTH_FIRMWARE_DIR'] = savedDir;
    rmSync(fw, { recursive: true, force: true });
    await cleanBerthHome(home);
  });
  const { run, ok } = cliRunner(() => home);
  type Vm = Json & { config: { disks: { slot: number; controller?: string }[] } };

  it('creates a Generation 2 VM with a SCSI disk, adds one with --controller, shows them', async () => {
    const vm = (await ok(
      'vm',
      'new',
      '--name',
      'g2',
      '--generation',
      '2',
      '--disk',
      'new:16M,scsi',
      '--disk',
      'new:16M',
    )) as Vm;
    assert.deepEqual(
      vm.config.disks.map((d) => [d.slot, d.controller]),
      [
        [0, 'scsi'],
        [1, undefined],
      ],
    );
    const set = (await ok('vm', 'set', 'g2', '--add-disk', 'new:16M', '--controller', 'scsi')) as Vm;
    assert.equal(set.config.disks[2]?.controller, 'scsi');
    const shown = await run(['vm', 'show', 'g2']);
    assert.match(shown.stdout, /0:[^,]*disk0\.qcow2 \(SCSI\), 1:[^,]*disk1\.qcow2, 2:[^,]*\(SCSI\)/);
  });

  it('refuses a SCSI disk on a VM that boots a kernel file, and an unknown --controller', async () => {
    await ok('vm', 'new', '--name', 'k', '--kernel', testGuestPath());
    const r = await run(['vm', 'set', 'k', '--add-disk', 'new:16M,scsi', '--json']);
    assert.equal(r.code, 1, r.stdout);
    const error = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
    assert.match(error.message, /controller: 'scsi' is for Generation 1 \(bios\) and 2 \(uefi\) VMs/);
    const bad = await run(['vm', 'set', 'k', '--add-disk', 'new:16M', '--controller', 'ide', '--json']);
    assert.equal(bad.code, 2, bad.stdout);
  });
});
