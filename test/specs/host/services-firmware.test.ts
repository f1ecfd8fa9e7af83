// Generation 1 and 2 VMs through the `berth` command line, without starting one: the UEFI
// variable store made from the template that matches Secure Boot (0600), Secure Boot turned
// off and on, DVD drives edited offline, starts refused before the worker spawns (missing
// image, missing firmware, a store of the wrong size), checkpoints keeping the store,
// export/import and move carrying it, libvirt XML and OVF. Firmware images are stand-ins in
// BERTH_FIRMWARE_DIR.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';
import { testGuestPath } from '../../support/guest';

type Vm = Json & { id: string; folder: string; config: Json & { dvdDrives: { slot: number; path?: string }[] } };

describe('Generation 1 and 2 VMs (services and CLI, no VM started)', () => {
  let home: string;
  let work: string;
  let fw: string;
  let iso: string;
  const savedDir = process.env['BERTH_FIRMWARE_DIR'];
  before(() => {
    home = makeBerthHome('fw');
    work = mkdtempSync(join(tmpdir(), 'berth-fw-'));
    fw = join(work, 'firmware');
    mkdirSync(fw);
    // Stand-ins of Debian's files, told apart by their bytes.
    writeFileSync(join(fw, 'OVMF_CODE_4M.fd'), Buffer.alloc(3653632));
    writeFileSync(join(fw, 'OVMF_VARS_4M.ms.fd'), Buffer.alloc(540672, 'M'));
    writeFileSync(join(fw, 'OVMF_VARS_4M.fd'), Buffer.alloc(540672, 'B'));
    iso = join(work, 'install.iso');
    const image = Buffer.alloc(64 * 1024);
    image.write('CD001', 0x8001, 'latin1');
    writeFileSync(iso, image);
    writeFileSync(join(work, 'notes.iso'), 'not an image');
    process.env['BERTH_FIRMWARE_DIR'] = fw;
  });
  after(async () => {
    if (savedDir === undefined) delete process.env['BERTH_FIRMWARE_DIR'];
    else process.env['BERTH_FIRMWARE_DIR'] = savedDir;
    rmSync(work, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  const { run, ok } = cliRunner(() => home);
  const vm = async (...args: string[]): Promise<Vm> => (await ok(...args)) as Vm;
  const fails = async (args: string[], code: string, message: RegExp, env: Record<string, string> = {}) => {
    const r = await run([...args, '--json'], env);
    assert.equal(r.code, code === 'USAGE' ? 2 : 1, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    const error = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
  };
  const vars = (v: Vm): string => join(v.folder, 'firmware', 'uefi-vars.fd');
  const template = (name: string): Buffer => readFileSync(join(fw, name));

  it('creates a Generation 2 VM with Secure Boot, an image in a DVD drive first to boot, and a new disk', async () => {
    const g2 = await vm('vm', 'new', '--name', 'g2', '--generation', '2', '--iso', iso, '--disk-size', '16M');
    assert.deepEqual(g2.config['boot'], {
      kind: 'uefi',
      secureBoot: true,
      bootOrder: ['dvd', 'disk', 'network'],
      display: true,
    });
    assert.deepEqual(g2.config.dvdDrives, [{ slot: 0, path: iso }]);
    assert.equal((g2.config['memory'] as { startupMiB: number }).startupMiB, 1024);
    const disks = g2.config['disks'] as { path: string }[];
    assert.equal(disks.length, 1);
    assert.ok(existsSync(disks[0]?.path ?? ''), 'the new disk exists');
    assert.ok(readFileSync(vars(g2)).equals(template('OVMF_VARS_4M.ms.fd')), "Microsoft's keys: Secure Boot on");
    assert.equal(statSync(vars(g2)).mode & 0o777, 0o600);
    assert.equal(statSync(join(g2.folder, 'firmware')).mode & 0o777, 0o700);
    const shown = await run(['vm', 'show', 'g2']);
    assert.match(shown.stdout, /Generation: +2\n/);
    assert.match(shown.stdout, /Secure Boot: +on/);
    assert.match(shown.stdout, /Boot order: +DVD drive, hard disk, network adapter/);
    assert.match(shown.stdout, new RegExp(`DVD drives: +0: ${iso}`));
  });

  it('makes Generation 2 without Secure Boot from the template without keys, and Generation 1 without a store', async () => {
    const off = await vm('vm', 'new', '--name', 'g2-off', '--generation', '2', '--secure-boot', 'off');
    assert.ok(readFileSync(vars(off)).equals(template('OVMF_VARS_4M.fd')));
    const g1 = await vm('vm', 'new', '--name', 'g1', '--generation', '1', '--boot-order', 'disk,network');
    assert.deepEqual(g1.config['boot'], { kind: 'bios', bootOrder: ['disk', 'network'], display: true });
    assert.deepEqual(g1.config.dvdDrives, [{ slot: 0 }], 'Generation 1 has an empty DVD drive, as in Hyper-V');
    assert.ok(!existsSync(join(g1.folder, 'firmware')));
  });

  it('turns the display off and on while the VM is off, and says where it does not apply', async () => {
    const off = await vm('vm', 'set', 'g1', '--display', 'off');
    assert.equal((off.config['boot'] as { display: boolean }).display, false);
    assert.match((await run(['vm', 'show', 'g1'])).stdout, /Display: +off \(serial console only\)/);
    const on = await vm('vm', 'set', 'g1', '--display', 'on');
    assert.equal((on.config['boot'] as { display: boolean }).display, true);
    assert.match((await run(['vm', 'show', 'g1'])).stdout, /Display: +on \(graphical console\)/);
    await fails(['vm', 'set', 'g1', '--display', 'maybe'], 'USAGE', /--display takes on or off/);
    await fails(
      ['vm', 'new', '--name', 'kd', '--kernel', testGuestPath(), '--display', 'off'],
      'USAGE',
      /--display is for Generation 1 and 2 VMs/,
    );
  });

  it('refuses bad input with clear errors', async () => {
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '2', '--iso', join(work, 'gone.iso')],
      'DVD_MEDIA_NOT_FOUND',
      /DVD drive 0: the image .*gone\.iso does not exist/,
    );
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '2', '--iso', join(work, 'notes.iso')],
      'DVD_MEDIA_INVALID',
      /not a bootable image file/,
    );
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '1', '--secure-boot', 'on'],
      'USAGE',
      /only Generation 2 VMs have it/,
    );
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '3'],
      'USAGE',
      /--generation takes 1 \(BIOS\) or 2 \(UEFI\)/,
    );
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '2', '--boot-order', 'dvd,disk,dvd'],
      'USAGE',
      /'dvd' is listed twice/,
    );
    await fails(['vm', 'new', '--name', 'x', '--kernel', testGuestPath(), '--iso', iso], 'USAGE', /no DVD drive/);
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '2', '--kernel', testGuestPath()],
      'USAGE',
      /boots firmware/,
    );
    await fails(
      ['vm', 'set', 'g1', '--secure-boot', 'on'],
      'INVALID_CONFIG',
      /Secure Boot is a UEFI setting; 'g1' is a Generation 1/,
    );
    await fails(
      ['vm', 'new', '--name', 'x', '--generation', '2'],
      'FIRMWARE_NOT_FOUND',
      /install Debian's ovmf package/,
      {
        BERTH_FIRMWARE_DIR: join(work, 'empty'),
      },
    );
    const list = await ok('vm', 'list');
    assert.ok(!(list['vms'] as { name: string }[]).some((v) => v.name === 'x'), 'no half-made VM is left');
  });

  it('turning Secure Boot off and on replaces the store from the other template, saying it resets UEFI settings', async () => {
    const before = await vm('vm', 'show', 'g2');
    writeFileSync(vars(before), Buffer.alloc(540672, 'E')); // boot entries the firmware wrote
    const r = await run(['vm', 'set', 'g2', '--secure-boot', 'off']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Secure Boot is now off; .*reset its UEFI settings \(boot entries\)/);
    assert.ok(readFileSync(vars(before)).equals(template('OVMF_VARS_4M.fd')));
    const on = await vm('vm', 'set', 'g2', '--secure-boot', 'on', '--boot-order', 'disk,dvd');
    assert.deepEqual(on.config['boot'], { kind: 'uefi', secureBoot: true, bootOrder: ['disk', 'dvd'], display: true });
    assert.ok(readFileSync(vars(on)).equals(template('OVMF_VARS_4M.ms.fd')));
    assert.equal(statSync(vars(on)).mode & 0o777, 0o600);
  });

  it('adds, fills, empties and removes DVD drives of a VM that is off', async () => {
    let g1 = await vm('vm', 'dvd', 'add', 'g1', '--iso', iso);
    assert.deepEqual(g1.config.dvdDrives, [{ slot: 0 }, { slot: 1, path: iso }]);
    g1 = await vm('vm', 'dvd', 'insert', 'g1', iso);
    assert.deepEqual(g1.config.dvdDrives[0], { slot: 0, path: iso });
    g1 = await vm('vm', 'dvd', 'eject', 'g1', '--drive', '1');
    assert.deepEqual(g1.config.dvdDrives[1], { slot: 1 });
    g1 = await vm('vm', 'dvd', 'remove', 'g1', '--drive', '1');
    assert.deepEqual(g1.config.dvdDrives, [{ slot: 0, path: iso }]);
    const listed = await ok('vm', 'dvd', 'list', 'g1');
    assert.deepEqual(listed, { vm: 'g1', generation: 1, drives: [{ slot: 0, path: iso }] });
    await fails(
      ['vm', 'dvd', 'insert', 'g1', join(work, 'gone.iso')],
      'DVD_MEDIA_NOT_FOUND',
      /DVD drive 0 of 'g1': the image .*gone\.iso/,
    );
    await fails(['vm', 'dvd', 'eject', 'g1', '--drive', '5'], 'NOT_FOUND', /no DVD drive 5; its drives are 0/);
    await ok('vm', 'new', '--name', 'k', '--kernel', testGuestPath());
    await fails(['vm', 'dvd', 'add', 'k'], 'INVALID_CONFIG', /boots a kernel file directly and has no SCSI controller/);
  });

  it('a screenshot needs a running Generation 1 or 2 VM and a .png file', async () => {
    const shot = join(work, 'screen.png');
    await fails(
      ['vm', 'screenshot', 'g2', join(work, 'screen.jpg')],
      'INVALID_ARGUMENT',
      /a screenshot is a PNG file: name it \.png/,
    );
    await fails(
      ['vm', 'screenshot', 'g2', shot],
      'INVALID_STATE',
      /cannot take a screenshot of 'g2': it is Off; start it first/,
    );
    await fails(
      ['vm', 'screenshot', 'k', shot],
      'INVALID_STATE',
      /'k' has no display: it boots a Linux kernel directly/,
    );
    await fails(['vm', 'screenshot', 'nope', shot], 'NOT_FOUND', /nope/);
    // A VM whose display is off in its settings has its serial console only.
    await vm('vm', 'new', '--name', 'headless', '--generation', '1', '--display', 'off');
    await fails(
      ['vm', 'screenshot', 'headless', shot],
      'INVALID_STATE',
      /'headless' has no display: it is off in its settings \(serial console only\); turn it on with berth vm set headless --display on/,
    );
    await fails(['vm', 'screenshot', 'g2'], 'USAGE', /FILE/);
    assert.ok(!existsSync(shot), 'no file was written');
  });

  it('converts a VM that boots a kernel to Generation 2 (a new store) and back (the store goes)', async () => {
    const g = await vm('vm', 'set', 'k', '--generation', '2', '--secure-boot', 'off');
    assert.deepEqual(g.config['boot'], {
      kind: 'uefi',
      secureBoot: false,
      bootOrder: ['dvd', 'disk', 'network'],
      display: true,
    });
    assert.ok(readFileSync(vars(g)).equals(template('OVMF_VARS_4M.fd')));
    await fails(['vm', 'set', 'k', '--boot', 'pvh'], 'INVALID_CONFIG', /booting a kernel directly needs the kernel/);
    await fails(['vm', 'set', 'k', '--kernel', testGuestPath()], 'INVALID_CONFIG', /boots firmware, not a kernel file/);
    const back = await vm('vm', 'set', 'k', '--boot', 'pvh', '--kernel', testGuestPath());
    assert.equal((back.config['boot'] as { kind: string }).kind, 'pvh');
    assert.ok(!existsSync(vars(back)));
  });

  it('refuses a start before the worker spawns: a missing image, missing firmware, a store of another size', async () => {
    const gone = join(work, 'later.iso');
    writeFileSync(gone, readFileSync(iso));
    const g = await vm('vm', 'new', '--name', 'starts', '--generation', '2', '--iso', gone);
    rmSync(gone);
    await fails(
      ['vm', 'start', 'starts'],
      'DVD_MEDIA_NOT_FOUND',
      new RegExp(`DVD drive 0: the image ${gone} does not exist`),
    );
    await ok('vm', 'dvd', 'eject', 'starts');
    await fails(['vm', 'start', 'starts'], 'FIRMWARE_NOT_FOUND', /OVMF_CODE_4M\.fd.*install Debian's ovmf package/, {
      BERTH_FIRMWARE_DIR: join(work, 'empty'),
    });
    await fails(['vm', 'start', 'g1'], 'FIRMWARE_NOT_FOUND', /bios-256k\.bin.*install Debian's seabios package/);
    truncateSync(vars(g), 4096);
    await fails(['vm', 'start', 'starts'], 'FIRMWARE_VARS_MISMATCH', /is 4096 bytes, but this host's OVMF/);
    assert.ok(!existsSync(join(g.folder, 'run', 'machine.json')), 'no worker was started');
    assert.equal((await ok('vm', 'show', 'starts'))['state'], 'Off');
  });

  it("a checkpoint keeps the VM's UEFI settings and applying it puts them back", async () => {
    const g = await vm('vm', 'show', 'g2');
    writeFileSync(vars(g), Buffer.alloc(540672, '1'));
    await ok('checkpoint', 'create', 'g2', '--name', 'one');
    writeFileSync(vars(g), Buffer.alloc(540672, '2'));
    await ok('checkpoint', 'apply', 'g2', 'one');
    assert.ok(readFileSync(vars(g)).equals(Buffer.alloc(540672, '1')));
    assert.equal(statSync(vars(g)).mode & 0o777, 0o600);
  });

  it("export and import carry the store (and the checkpoints' copies); images stay where they are", async () => {
    const out = join(work, 'exports');
    const r = await ok('export', 'g2', out);
    const folder = r['folder'] as string;
    const manifest = JSON.parse(readFileSync(join(folder, 'export.json'), 'utf8')) as Json;
    assert.equal(manifest['firmwareVars'], 'firmware/uefi-vars.fd');
    assert.equal((manifest['checkpointFirmwareVars'] as string[]).length, 1);
    const copy = await vm('import', folder, '--copy', '--name', 'g2-copy');
    assert.ok(readFileSync(vars(copy)).equals(Buffer.alloc(540672, '1')));
    assert.equal(statSync(vars(copy)).mode & 0o777, 0o600);
    assert.deepEqual(copy.config.dvdDrives, [{ slot: 0, path: iso }]);
    writeFileSync(vars(copy), Buffer.alloc(540672, '3'));
    await ok('checkpoint', 'apply', 'g2-copy', 'one');
    assert.ok(readFileSync(vars(copy)).equals(Buffer.alloc(540672, '1')), "the checkpoint's copy came along");
    // One checkpoint exported as a new VM takes the UEFI settings it had then.
    const cp = await ok('export', 'g2-copy', join(work, 'cp-export'), '--checkpoint', 'one');
    const fromCheckpoint = await vm('import', cp['folder'] as string, '--copy', '--name', 'g2-then');
    assert.ok(readFileSync(vars(fromCheckpoint)).equals(Buffer.alloc(540672, '1')));
  });

  it('move takes the store to the other root; remove deletes it with the VM', async () => {
    const other = join(work, 'other-root');
    mkdirSync(join(other, 'vms'), { recursive: true });
    const before = await vm('vm', 'show', 'g2-off');
    await ok('vm', 'move', 'g2-off', '--to', other);
    const there = join(other, 'vms', before.id, 'firmware', 'uefi-vars.fd');
    assert.ok(readFileSync(there).equals(template('OVMF_VARS_4M.fd')));
    assert.ok(!existsSync(before.folder));
    const copy = await vm('vm', 'show', 'g2-copy');
    await ok('vm', 'remove', 'g2-copy', '--delete-disks');
    assert.ok(!existsSync(vars(copy)));
  });

  it('exports libvirt XML that validates (UEFI with its store and Secure Boot; BIOS) and OVF with firmware and DVD drives', async () => {
    for (const name of ['g2', 'g1', 'headless']) {
      const xml = join(work, `${name}.xml`);
      await ok('export', name, xml, '--config-only', '--format', 'libvirt');
      execFileSync('virt-xml-validate', [xml, 'domain'], { stdio: 'pipe' });
      const text = readFileSync(xml, 'utf8');
      // The display as QEMU's same device, and a VNC console for it; none for 'headless'.
      if (name === 'headless') assert.doesNotMatch(text, /<video>|<graphics/);
      else assert.match(text, /<graphics type="vnc"[^>]*\/>\n {4}<video>\n {6}<model type="bochs" vram="16384"\/>/);
      if (name === 'g2') {
        assert.match(text, /<os firmware="efi">/);
        assert.match(text, /<feature enabled="yes" name="secure-boot"\/>/);
        assert.match(text, /<nvram template="[^"]*OVMF_VARS_4M\.ms\.fd">[^<]*firmware\/uefi-vars\.fd<\/nvram>/);
        assert.match(text, /<boot dev="hd"\/>\n {4}<boot dev="cdrom"\/>/);
        assert.match(text, /<disk type="file" device="cdrom">/);
      } else {
        assert.doesNotMatch(text, /firmware="efi"|<loader/);
        assert.match(text, /<controller type="scsi" index="0" model="virtio-scsi"\/>/);
      }
    }
    const ovf = await ok('export', 'g2', join(work, 'ovf'), '--config-only', '--format', 'ovf');
    const envelope = readFileSync(ovf['envelope'] as string, 'utf8');
    assert.match(envelope, /vmw:key="firmware" vmw:value="efi"/);
    assert.match(envelope, /berth:secureBoot="true" berth:bootOrder="disk,dvd" berth:display="true"/);
    assert.match(envelope, /<rasd:ResourceType>16<\/rasd:ResourceType>/);
    execFileSync('xmllint', ['--noout', ovf['envelope'] as string], { stdio: 'pipe' });
  });
});
