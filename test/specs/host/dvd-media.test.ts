// Changing a running VM's DVD media: the services send protocol 4's media request to the
// VM's worker (here a stand-in speaking the control protocol on run/control.sock, so no VM
// runs), naming the drive by its index in the worker's spec, and the configuration follows
// so the media stays after a restart; a worker's refusal keeps its code and the old media.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BerthError, protocol, type VmStats } from '../../../app/api';
import { DvdService, VmManager } from '../../../app/services';
import { atomicWriteJson, processStartTime } from '../../../app/services/fsutil';
import { toWorkerSpec } from '../../../app/services/worker-spec';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';

const stats: VmStats = {
  cpuUsagePercent: 0,
  assignedMemoryMiB: 1024,
  residentBytes: 0,
  uptimeMs: 1,
  vcpuCount: 1,
  vcpus: [],
  disks: [],
  resets: 0,
};

describe('DVD media of a running VM (a stand-in worker)', () => {
  let home: string;
  let work: string;
  let server: Server | undefined;
  let vmId = '';
  const media: { drive: number; path: string }[] = [];
  const savedDir = process.env['BERTH_FIRMWARE_DIR'];
  const iso = (name: string): string => {
    const p = join(work, name);
    const image = Buffer.alloc(64 * 1024);
    image.write('CD001', 0x8001, 'latin1');
    writeFileSync(p, image);
    return p;
  };

  before(async () => {
    home = makeBerthHome('dvd');
    work = mkdtempSync(join(tmpdir(), 'berth-dvd-'));
    const fw = join(work, 'firmware');
    mkdirSync(fw);
    writeFileSync(join(fw, 'OVMF_CODE_4M.fd'), Buffer.alloc(3653632));
    writeFileSync(join(fw, 'OVMF_VARS_4M.ms.fd'), Buffer.alloc(540672, 'M'));
    process.env['BERTH_FIRMWARE_DIR'] = fw;
    const manager = new VmManager({ root: home });
    const vm = await manager.create({
      name: 'live',
      memory: { startupMiB: 1024 },
      boot: { kind: 'uefi' },
      dvdDrives: [{ slot: 3, path: iso('first.iso') }, { slot: 1 }],
    });
    vmId = vm.id;
    const run = join(vm.folder, 'run');
    const spec = toWorkerSpec(vm.config, { codePath: join(fw, 'OVMF_CODE_4M.fd'), varsPath: '/v' }, vm.folder);
    await atomicWriteJson(join(run, 'machine.json'), spec);
    const startedAt = new Date().toISOString();
    server = createServer((socket) => {
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString();
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const parsed = protocol.parseRequest(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
          if (!parsed.ok) throw new Error(parsed.error);
          const r = parsed.request;
          const answer = (result: unknown) => socket.write(`${JSON.stringify({ id: r.id, ok: true, result })}\n`);
          if (r.op === 'hello') answer({ protocol: protocol.PROTOCOL_VERSION, pid: process.pid, vmId, startedAt });
          else if (r.op === 'state') answer({ state: 'Running', uptimeMs: 1 });
          else if (r.op === 'stats') answer(stats);
          else if (r.op === 'media' && r.path.endsWith('scratched.iso')) {
            const error = { code: 'DVD_MEDIA_INVALID', message: `${r.path} has no readable volume` };
            socket.write(`${JSON.stringify({ id: r.id, ok: false, error })}\n`);
          } else if (r.op === 'media') {
            media.push({ drive: r.drive, path: r.path });
            answer({});
          } else throw new Error(`unexpected ${r.op}`);
        }
      });
    });
    await new Promise<void>((resolve) => server?.listen(join(run, 'control.sock'), resolve));
    await atomicWriteJson(join(run, 'worker.pid'), {
      pid: process.pid,
      procStart: processStartTime(process.pid),
      startedAt,
      protocol: protocol.PROTOCOL_VERSION,
    });
  });
  after(async () => {
    if (savedDir === undefined) delete process.env['BERTH_FIRMWARE_DIR'];
    else process.env['BERTH_FIRMWARE_DIR'] = savedDir;
    await new Promise((resolve) => server?.close(resolve));
    rmSync(join(home, 'vms', vmId, 'run', 'worker.pid'), { force: true });
    rmSync(work, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  it('inserts and ejects through the worker, naming the drive by its place in the spec, and keeps the media', async () => {
    const manager = new VmManager({ root: home });
    const dvd = new DvdService(manager);
    assert.equal((await manager.state(vmId)).state, 'Running');
    const second = iso('second.iso');
    let vm = await dvd.insert('live', second, 1);
    assert.deepEqual(media, [{ drive: 0, path: second }], 'slot 1 is the first drive in slot order');
    assert.deepEqual(
      vm.config.dvdDrives.find((d) => d.slot === 1),
      { slot: 1, path: second },
    );
    vm = await dvd.eject('live', 3);
    assert.deepEqual(media[1], { drive: 1, path: '' });
    assert.deepEqual(
      vm.config.dvdDrives.find((d) => d.slot === 3),
      { slot: 3 },
    );
    // The window's Settings: only the media may differ while it runs.
    vm = await dvd.replace('live', [{ slot: 1 }, { slot: 3, path: second }]);
    assert.deepEqual(media.slice(2), [
      { drive: 0, path: '' },
      { drive: 1, path: second },
    ]);
    await assert.rejects(
      dvd.replace('live', [{ slot: 1 }]),
      /cannot change the DVD drives of 'live' while it is Running; turn it off first/,
    );
    await assert.rejects(dvd.add('live'), /while it is Running; turn it off first/);
    // Firmware settings wait until the VM is off, like Hyper-V's.
    await assert.rejects(
      manager.set('live', { secureBoot: false }),
      /cannot change Secure Boot of 'live' while it is Running; turn it off first/,
    );
  });

  it("passes the worker's refusal on with its code and keeps the configuration", async () => {
    const manager = new VmManager({ root: home });
    const before = (await manager.show('live')).config.dvdDrives;
    await assert.rejects(new DvdService(manager).insert('live', iso('scratched.iso'), 3), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.code, 'DVD_MEDIA_INVALID');
      assert.match(
        err.message,
        /cannot change the media of DVD drive 3 of 'live': .*scratched\.iso has no readable volume/,
      );
      return true;
    });
    assert.deepEqual((await manager.show('live')).config.dvdDrives, before);
  });
});
