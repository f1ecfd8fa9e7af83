// Configuration version 2 (Generation 1 and 2 VMs, DVD drives), the migration of version-1
// files on disk, the worker spec a firmware VM gets, and the protocol's media request. No VM
// runs.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  CheckpointRecord,
  CONFIG_SCHEMA_VERSION,
  ConfigError,
  deviceCountProblem,
  MAX_DVD_DRIVES,
  MAX_VIRTIO_DEVICES,
  migrateConfig,
  migrateConfigDetailed,
  protocol,
  type VmConfig,
} from '../../../app/api';
import { Registry } from '../../../app/services';
import { toWorkerSpec } from '../../../app/services/worker-spec';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';

const id = '6f1c2b8e-2a4d-4c3e-9f1a-0b2c3d4e5f61';
const base = { schemaVersion: 2, id, name: 'g2', memory: { startupMiB: 1024 } };

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

describe('configuration version 2', () => {
  it('is the version written, and fills the firmware defaults (Secure Boot on, DVD first)', () => {
    assert.equal(CONFIG_SCHEMA_VERSION, 2);
    const c = migrateConfig({ ...base, boot: { kind: 'uefi' } });
    assert.deepEqual(c.boot, { kind: 'uefi', secureBoot: true, bootOrder: ['dvd', 'disk', 'network'], display: true });
    assert.deepEqual(c.dvdDrives, []);
    const bios = migrateConfig({ ...base, boot: { kind: 'bios', bootOrder: ['disk'] }, dvdDrives: [{ slot: 1 }] });
    assert.deepEqual(bios.boot, { kind: 'bios', bootOrder: ['disk'], display: true });
    assert.deepEqual(bios.dvdDrives, [{ slot: 1 }]);
  });

  it('refuses what a firmware VM cannot have, naming the field', () => {
    refused(
      { ...base, boot: { kind: 'uefi', bootOrder: ['dvd', 'disk', 'dvd'] } },
      /^boot\.bootOrder\[2\]: 'dvd' is listed twice$/,
    );
    refused({ ...base, boot: { kind: 'uefi', bootOrder: ['floppy'] } }, /^boot\.bootOrder\[0\]: must be one of/);
    refused({ ...base, boot: { kind: 'uefi', bootOrder: [] } }, /^boot\.bootOrder: /);
    refused({ ...base, boot: { kind: 'bios', secureBoot: true } }, /^boot: unknown field 'secureBoot'$/);
    refused(
      { ...base, boot: { kind: 'pvh', kernelPath: '/k' }, dvdDrives: [{ slot: 0 }] },
      /^dvdDrives: DVD drives are for Generation 1 \(bios\) and 2 \(uefi\) VMs/,
    );
    refused(
      { ...base, boot: { kind: 'uefi' }, dvdDrives: [{ slot: 0 }, { slot: 0, path: '/a.iso' }] },
      /^dvdDrives\[1\]\.slot: slot 0 is already used by dvdDrives\[0\]$/,
    );
    const many = Array.from({ length: MAX_DVD_DRIVES + 1 }, (_, slot) => ({ slot }));
    refused({ ...base, boot: { kind: 'uefi' }, dvdDrives: many }, /^dvdDrives: /);
    refused({ ...base, boot: { kind: 'uefi' }, dvdDrives: [{ slot: 0, path: '' }] }, /^dvdDrives\[0\]\.path: /);
  });

  it('counts the SCSI controller of the DVD drives as one of the virtio devices', () => {
    assert.equal(deviceCountProblem(MAX_VIRTIO_DEVICES, 0, 0), undefined);
    assert.match(deviceCountProblem(MAX_VIRTIO_DEVICES, 0, 1) ?? '', /SCSI controller takes one of its device slots/);
    assert.equal(deviceCountProblem(MAX_VIRTIO_DEVICES - 1, 0, MAX_DVD_DRIVES), undefined);
    const disks = Array.from({ length: MAX_VIRTIO_DEVICES }, (_, slot) => ({
      slot,
      kind: 'virtual',
      path: `d${slot}`,
    }));
    refused({ ...base, boot: { kind: 'uefi' }, disks, dvdDrives: [{ slot: 0 }] }, /^disks: a VM can have at most/);
  });

  it('migrates a version-1 kernel VM unchanged but for the version, and keeps old checkpoint records readable', () => {
    const v1 = { ...base, schemaVersion: 1, boot: { kind: 'linux', kernelPath: '/vmlinuz', cmdline: 'quiet' } };
    const { config, fromVersion, changed } = migrateConfigDetailed(v1);
    assert.equal(fromVersion, 1);
    assert.equal(changed, true);
    assert.equal(config.schemaVersion, 2);
    assert.deepEqual(config.boot, { kind: 'linux', kernelPath: '/vmlinuz', cmdline: 'quiet' });
    assert.deepEqual(config.dvdDrives, []);
    const record = CheckpointRecord.parse({
      id: '6f1c2b8e-2a4d-4c3e-9f1a-0b2c3d4e5f62',
      name: 'before the upgrade',
      parent: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      config: v1,
      disks: [],
      excludedSlots: [],
      type: 'standard',
      holdsMemory: false,
    });
    assert.equal(record.config.schemaVersion, 2);
  });
});

describe('a version-1 config.json on disk', () => {
  let home: string;
  before(() => (home = makeBerthHome('fwcfg')));
  after(async () => cleanBerthHome(home));

  it('is read as version 2 and written back as version 2, booting the same kernel', async () => {
    const registry = new Registry(home);
    const folder = registry.paths(id).folder;
    mkdirSync(join(folder, 'run'), { recursive: true });
    const v1 = {
      schemaVersion: 1,
      id,
      name: 'old',
      memory: { startupMiB: 64 },
      boot: { kind: 'pvh', kernelPath: '/boot/guest.elf', cmdline: 'hello' },
      network: [{ kind: 'nat', mac: '02:00:00:00:00:01' }],
    };
    writeFileSync(join(folder, 'config.json'), JSON.stringify(v1));
    const c = await registry.read(id);
    assert.equal(c.schemaVersion, 2);
    const onDisk = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as VmConfig;
    assert.equal(onDisk.schemaVersion, 2);
    assert.deepEqual(onDisk.boot, v1.boot);
    assert.equal(onDisk.network[0]?.mac, '02:00:00:00:00:01');
    assert.equal(statSync(join(folder, 'config.json')).mode & 0o777, 0o600);
  });
});

describe('the worker spec of a firmware VM', () => {
  const fw = { codePath: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsPath: '/vms/x/firmware/uefi-vars.fd' };

  it("names the UEFI code, the VM's store, the boot order, its display and the DVD drives in slot order", () => {
    const c = migrateConfig({
      ...base,
      boot: { kind: 'uefi', secureBoot: false, bootOrder: ['disk', 'dvd'] },
      dvdDrives: [{ slot: 2, path: '/isos/b.iso' }, { slot: 0 }, { slot: 1, path: 'rel.iso' }],
    });
    const spec = toWorkerSpec(c, fw, '/vms/x');
    assert.deepEqual(spec.boot, { firmware: { kind: 'uefi', ...fw, bootOrder: ['disk', 'dvd'], display: true } });
    assert.deepEqual(spec.dvds, [{ path: '' }, { path: '/vms/x/rel.iso' }, { path: '/isos/b.iso' }]);
  });

  it("gives a BIOS VM its ROM, its display's option ROM and no variable store; a kernel VM no DVD drives", () => {
    const bios = migrateConfig({ ...base, boot: { kind: 'bios' } });
    const rom = '/usr/share/seabios/vgabios-bochs-display.bin';
    assert.deepEqual(toWorkerSpec(bios, { codePath: '/usr/share/seabios/bios-256k.bin', displayRomPath: rom }).boot, {
      firmware: {
        kind: 'bios',
        codePath: '/usr/share/seabios/bios-256k.bin',
        bootOrder: ['dvd', 'disk', 'network'],
        display: true,
        displayRomPath: rom,
      },
    });
    // Without a display: no display device and no option ROM for it.
    const headless = migrateConfig({ ...base, boot: { kind: 'bios', display: false } });
    assert.deepEqual(toWorkerSpec(headless, { codePath: '/usr/share/seabios/bios-256k.bin' }).boot, {
      firmware: {
        kind: 'bios',
        codePath: '/usr/share/seabios/bios-256k.bin',
        bootOrder: ['dvd', 'disk', 'network'],
        display: false,
      },
    });
    refused({ ...base, boot: { kind: 'uefi', display: 'yes' } }, /^boot\.display: /);
    refused({ ...base, boot: { kind: 'pvh', kernelPath: '/k', display: true } }, /^boot: unknown field 'display'$/);
    const kernel = migrateConfig({ ...base, boot: { kind: 'pvh', kernelPath: '/k' } });
    const spec = toWorkerSpec(kernel);
    assert.equal(spec.dvds, undefined);
    assert.deepEqual(spec.boot, { kernelPath: '/k', cmdline: '' });
    assert.throws(() => toWorkerSpec(bios), /boots firmware, but none was found/);
  });
});

describe('protocol 4: media', () => {
  it('takes a drive index and an absolute image path, or an empty path to eject', () => {
    assert.deepEqual(protocol.parseRequest('{"id":1,"op":"media","drive":0,"path":"/isos/debian.iso"}'), {
      ok: true,
      request: { id: 1, op: 'media', drive: 0, path: '/isos/debian.iso' },
    });
    assert.ok(protocol.parseRequest('{"id":2,"op":"media","drive":1,"path":""}').ok);
    const relative = protocol.parseRequest('{"id":3,"op":"media","drive":0,"path":"debian.iso"}');
    assert.ok(!relative.ok && /^path: /.test(relative.error), JSON.stringify(relative));
    const negative = protocol.parseRequest('{"id":4,"op":"media","drive":-1,"path":""}');
    assert.ok(!negative.ok && /^drive: /.test(negative.error), JSON.stringify(negative));
    assert.ok(protocol.Results.media.safeParse({}).success);
  });
});

describe('protocol 5: the firmware found nothing to boot', () => {
  it("a state result may carry the firmware's boot problem, a bounded sentence", () => {
    assert.equal(protocol.PROTOCOL_VERSION, 5);
    const reason = 'the firmware found nothing to boot ("No bootable device.")';
    assert.deepEqual(protocol.Results.state.parse({ state: 'Running', uptimeMs: 5, bootProblem: reason }), {
      state: 'Running',
      uptimeMs: 5,
      bootProblem: reason,
    });
    assert.ok(protocol.Results.state.safeParse({ state: 'Running', uptimeMs: 5 }).success);
    assert.ok(
      !protocol.Results.state.safeParse({ state: 'Running', uptimeMs: 5, bootProblem: 'x'.repeat(1001) }).success,
    );
  });
});
