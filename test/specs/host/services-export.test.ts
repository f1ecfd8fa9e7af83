// Export and import through the `berth` command line: a VM with checkpoints exported and
// imported back (copy with a new id; restore and register refused while the id is taken),
// the libvirt XML checked by virt-xml-validate, the OVF envelope with qcow2 disks, and
// imports that fail the schema or name paths outside their folder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';

describe('export and import', () => {
  let home: string;
  let kernel: string;
  let out: string;
  let exported: string;
  before(() => {
    home = makeBerthHome('export');
    kernel = testGuestPath();
    out = mkdtempSync(join(tmpdir(), 'berth-exp-'));
  });
  after(async () => {
    rmSync(out, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  const { ok, refused } = cliRunner(() => home);
  const reads = (file: string, pattern: number): boolean =>
    !/failed/i.test(execFileSync('qemu-io', ['-r', '-c', `read -P ${pattern} 0 64k`, file]).toString());

  it('exports a VM with its checkpoints and imports it as a copy', async () => {
    const vm = await ok(
      'vm',
      'new',
      '--name',
      'exp',
      '--kernel',
      kernel,
      '--memory',
      '32',
      '--disk',
      'new:4M',
      '--disk',
      'new:4M:vhdx',
      '--nic',
      'nat,mac=02:00:00:aa:bb:01',
    );
    const disk = (vm['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 64k', disk]);
    await ok('checkpoint', 'create', 'exp', '--name', 'one');
    const r = await ok('export', 'exp', out);
    exported = r['folder'] as string;
    assert.ok(existsSync(join(exported, 'export.json')));
    const copy = await ok('import', exported, '--copy', '--name', 'exp2');
    assert.notEqual(copy['id'], vm['id']);
    // A copy is another machine on the network: a new MAC address, as Hyper-V gives it.
    const macOf = (v: Record<string, unknown>) => (v['config'] as { network: { mac: string }[] }).network[0]?.mac;
    assert.match(macOf(copy) ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.notEqual(macOf(copy), '02:00:00:aa:bb:01');
    assert.equal(macOf(await ok('vm', 'show', 'exp')), '02:00:00:aa:bb:01');
    const disks = (copy['config'] as { disks: { path: string }[] }).disks;
    assert.ok(
      disks.every((d) => d.path.startsWith(copy['folder'] as string)),
      'the copy has its own disks',
    );
    assert.ok(reads(disks[0]?.path ?? '', 0x5a), 'the data came along');
    const list = await ok('checkpoint', 'list', 'exp2');
    assert.deepEqual(
      (list['checkpoints'] as { name: string }[]).map((c) => c.name),
      ['one'],
    );
    const applied = await ok('checkpoint', 'apply', 'exp2', 'one');
    assert.equal(applied['now'], (list['checkpoints'] as { id: string }[])[0]?.id);
    const top = ((await ok('vm', 'show', 'exp2'))['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
    execFileSync('qemu-img', ['check', top]);
    assert.ok(reads(top, 0x5a), 'the checkpoint holds the data');
  });

  it('explains conflicts: the id or the name is already registered', async () => {
    assert.match(
      await refused('import', exported, '--restore'),
      /a VM with id .* is already registered \('exp'\); import it as a copy \(--copy\)/,
    );
    assert.match(await refused('import', exported, '--register'), /already registered \('exp'\)/);
    assert.match(
      await refused('import', exported, '--copy'),
      /a VM named 'exp' is already registered .*--copy --name NEW-NAME/,
    );
  });

  it('refuses configurations that fail the schema and paths that escape the folder', async () => {
    const bad = (name: string, edit: (config: Json, dir: string) => void): string => {
      const dir = join(out, name);
      cpSync(exported, dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Json;
      edit(config, dir);
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      return dir;
    };
    const disks = (c: Json): { path: string }[] => c['disks'] as { path: string }[];
    assert.match(
      await refused(
        'import',
        bad('schema', (c) => (c['memory'] = { startupMiB: 1 })),
        '--copy',
        '--name',
        'x1',
      ),
      /memory\.startupMiB/,
    );
    assert.match(
      await refused(
        'import',
        bad('dotdot', (c) => ((disks(c)[0] as { path: string }).path = '../../etc/passwd')),
        '--copy',
        '--name',
        'x2',
      ),
      /disks\[0\]\.path: '\.\.\/\.\.\/etc\/passwd' leaves the import folder/,
    );
    assert.match(
      await refused(
        'import',
        bad('absolute', (c) => ((disks(c)[0] as { path: string }).path = '/etc/passwd')),
        '--copy',
        '--name',
        'x3',
      ),
      /disks\[0\]\.path: '\/etc\/passwd' is an absolute path/,
    );
    const link = bad('symlink', (c, dir) => {
      symlinkSync('/etc/passwd', join(dir, 'disks', 'evil.raw'));
      (disks(c)[0] as { path: string }).path = 'disks/evil.raw';
    });
    assert.match(
      await refused('import', link, '--copy', '--name', 'x4'),
      /'disks\/evil\.raw' is a symbolic link that leads out of the import folder/,
    );
  });

  it('exports the configuration as Berth JSON, libvirt XML that validates, and OVF with qcow2 disks', async () => {
    const jsonFile = join(out, 'exp.json');
    await ok('export', 'exp', jsonFile, '--config-only');
    assert.equal((JSON.parse(readFileSync(jsonFile, 'utf8')) as Json)['name'], 'exp');
    const xml = join(out, 'exp.xml');
    await ok('export', 'exp', xml, '--config-only', '--format', 'libvirt');
    execFileSync('virt-xml-validate', [xml, 'domain'], { stdio: 'pipe' });
    const ovf = await ok('export', 'exp', join(out, 'ovf'), '--config-only', '--format', 'ovf');
    const envelope = readFileSync(ovf['envelope'] as string, 'utf8');
    assert.match(envelope, /<Envelope xmlns="http:\/\/schemas\.dmtf\.org\/ovf\/envelope\/2"/);
    assert.match(envelope, /ovf:format="https:\/\/www\.qemu\.org\/docs\/master\/interop\/qcow2\.html"/);
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', join(out, 'ovf', 'exp-disk0.qcow2')]).toString(),
    ) as Json;
    assert.equal(info['format'], 'qcow2');
    assert.equal(info['backing-filename'], undefined, 'OVF disks stand alone');
  });
});
