// Saved state, standard checkpoints with memory and quick migration, through the `berth`
// command line, where no VM runs: a VM is Saved because its state/saved.bstate exists. The
// state files these specs write are arbitrary bytes (nothing restores them here; a start
// that tries is expected to fail and keep them); the KVM lab's saved-state spec restores
// real ones.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { STATE_FILES } from '../../../app/api';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';
import { testGuestPath } from '../../support/guest';

const STATE_BYTES = 256 * 1024;

describe('saved state (no VM running)', () => {
  let home: string;
  let second: string;
  let out: string;
  let kernel: string;
  before(() => {
    home = makeBerthHome('saved');
    second = makeBerthHome('saved2');
    out = mkdtempSync(join(tmpdir(), 'berth-saved-out-'));
    kernel = testGuestPath();
  });
  after(async () => {
    await cleanBerthHome(home);
    await cleanBerthHome(second);
    rmSync(out, { recursive: true, force: true });
  });
  const { run, ok, refused } = cliRunner(() => home);
  const there = cliRunner(() => second);

  const vmFolder = (root: string, id: string): string => join(root, 'vms', id);
  // What the worker's op save would leave: state/saved.bstate (any bytes will do here).
  const saveByHand = (root: string, id: string): string => {
    const file = join(vmFolder(root, id), 'state', STATE_FILES.saved);
    mkdirSync(join(vmFolder(root, id), 'state'), { recursive: true });
    writeFileSync(file, Buffer.alloc(STATE_BYTES, 0xa5));
    return file;
  };
  const newVm = async (name: string): Promise<{ id: string; disk: string }> => {
    const vm = await ok('vm', 'new', '--name', name, '--kernel', kernel, '--memory', '32', '--disk', 'new:4M');
    const disk = (vm['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
    return { id: vm['id'] as string, disk };
  };

  it('a VM whose saved-state file exists is Saved, in show, list and --json', async () => {
    const { id } = await newVm('s1');
    assert.equal((await ok('vm', 'show', 's1'))['state'], 'Off');
    const file = saveByHand(home, id);
    const shown = await ok('vm', 'show', 's1');
    assert.equal(shown['state'], 'Saved');
    const saved = shown['savedState'] as Json;
    assert.equal(saved['path'], file);
    assert.ok((saved['stateBytes'] as number) >= STATE_BYTES, JSON.stringify(saved));
    const text = await run(['vm', 'show', 's1']);
    assert.match(text.stdout, /State:\s+Saved\n/);
    assert.match(text.stdout, new RegExp(`Saved state:\\s+256\\.0 KiB at \\S+ \\(${file}\\)`));
    assert.match((await run(['vm', 'list'])).stdout, /^s1\s+Saved\s/m);
  });

  it('refuses hardware and disk changes while Saved, saying to delete the saved state or start it', async () => {
    const { disk } = await newVm('s2');
    const id = ((await ok('vm', 'show', 's2'))['id'] as string) ?? '';
    saveByHand(home, id);
    const hint = "delete the saved state first ('berth vm delete-saved-state s2'), or start it and shut it down";
    assert.equal(
      await refused('vm', 'set', 's2', '--memory', '64'),
      `cannot change the memory of 's2' while it is Saved: its saved state belongs to the hardware it was saved with; ${hint}`,
    );
    assert.match(
      await refused('vm', 'set', 's2', '--cpus', '2'),
      /cannot change the processor count of 's2' while it is Saved/,
    );
    assert.match(
      await refused('vm', 'set', 's2', '--add-disk', 'new:4M'),
      new RegExp(`while it is Saved: .*${hint.replace(/[()]/g, '\\$&')}`),
    );
    assert.match(await refused('vm', 'set', 's2', '--remove-disk', '0'), /while it is Saved/);
    assert.equal(
      await refused('disk', 'resize', disk, '--size', '8M'),
      `cannot resize ${disk}: VM 's2' is Saved and its saved state expects this disk unchanged (slot 0); ` +
        "delete the saved state first ('berth vm delete-saved-state s2'), or start the VM and shut it down",
    );
    assert.match(
      await refused('vm', 'turn-off', 's2'),
      /^cannot turn off 's2': it is Saved; nothing runs .*delete the saved state/,
    );
    assert.equal(await refused('vm', 'save', 's2'), "cannot save 's2': it is Saved; it is already saved");
    assert.equal(
      await refused('vm', 'pause', 's2'),
      "cannot pause 's2': it is Saved; start it first (it resumes from its saved state)",
    );
    assert.match(await refused('checkpoint', 'create', 's2'), /cannot take a checkpoint of 's2' while it is Saved/);
    // Settings that are not hardware still change; the state is still there.
    await ok('vm', 'set', 's2', '--notes', 'saved on purpose');
    assert.equal((await ok('vm', 'show', 's2'))['state'], 'Saved');
    // Bad input is still named.
    const bad = await run(['vm', 'save', 's2', 'extra']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unexpected argument 'extra'/);
  });

  it('save and delete-saved-state refuse VMs that are Off, saying why', async () => {
    await newVm('s3');
    assert.equal(
      await refused('vm', 'save', 's3'),
      "cannot save 's3': it is Off; only a running or paused VM can be saved",
    );
    assert.equal(
      await refused('vm', 'delete-saved-state', 's3'),
      "cannot delete the saved state of 's3': it is Off; it has no saved state",
    );
    assert.match(await refused('vm', 'save', 'nope'), /no VM named 'nope'/);
  });

  it('delete-saved-state makes a Saved VM Off and removes its file', async () => {
    const id = ((await ok('vm', 'show', 's2'))['id'] as string) ?? '';
    const file = join(vmFolder(home, id), 'state', STATE_FILES.saved);
    assert.ok(existsSync(file));
    const r = await run(['vm', 'delete-saved-state', 's2']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "'s2' is Off\n");
    assert.ok(!existsSync(file));
    assert.equal((await ok('vm', 'show', 's2'))['state'], 'Off');
    await ok('vm', 'set', 's2', '--memory', '64'); // allowed again
  });

  it('a start that cannot resume keeps the saved state and says how to delete it', async () => {
    const id = ((await ok('vm', 'show', 's2'))['id'] as string) ?? '';
    const file = saveByHand(home, id);
    const message = await refused('vm', 'start', 's2');
    assert.match(message, /^cannot start 's2': /);
    assert.match(
      message,
      new RegExp(
        `its saved state was kept \\(${file}\\): start it again once the cause is fixed, or delete the saved state ` +
          "\\('berth vm delete-saved-state s2', or Delete Saved State in the window\\) to boot it afresh$",
      ),
    );
    assert.ok(existsSync(file));
    assert.equal((await ok('vm', 'show', 's2'))['state'], 'Saved');
  });

  it('accepts save as the automatic stop action', async () => {
    const set = await ok('vm', 'set', 's3', '--automatic-stop-action', 'save');
    assert.equal((set['config'] as Json)['automaticStopAction'], 'save');
    assert.match((await run(['vm', 'show', 's3'])).stdout, /Automatic stop:\s+save\n/);
    assert.match(
      (await run(['vm', 'set', 's3', '--automatic-stop-action', 'hibernate'])).stderr,
      /--automatic-stop-action takes one of turn-off, save, shut-down, not 'hibernate'/,
    );
  });

  it('checkpoint list shows which checkpoints hold memory, with the state size; deleting one removes it', async () => {
    const { id } = await newVm('c1');
    const plain = await ok('checkpoint', 'create', 'c1', '--name', 'disks-only');
    assert.equal(plain['holdsMemory'], false);
    assert.equal(plain['stateBytes'], null);
    // What a checkpoint of the running VM records (the worker's op checkpoint writes the file).
    const live = await ok('checkpoint', 'create', 'c1', '--name', 'live');
    const record = join(vmFolder(home, id), 'checkpoints', `${live['id'] as string}.json`);
    writeFileSync(record, JSON.stringify({ ...JSON.parse(readFileSync(record, 'utf8')), holdsMemory: true }));
    const stateDir = join(vmFolder(home, id), 'checkpoints', live['id'] as string);
    mkdirSync(stateDir);
    writeFileSync(join(stateDir, STATE_FILES.checkpoint), Buffer.alloc(STATE_BYTES, 1));
    const list = await ok('checkpoint', 'list', 'c1');
    const byName = new Map((list['checkpoints'] as Json[]).map((c) => [c['name'], c]));
    assert.equal(byName.get('disks-only')?.['holdsMemory'], false);
    assert.equal(byName.get('live')?.['holdsMemory'], true);
    assert.ok((byName.get('live')?.['stateBytes'] as number) >= STATE_BYTES);
    const text = (await run(['checkpoint', 'list', 'c1'])).stdout;
    assert.match(text, /^disks-only {2}\([0-9a-f]{8}, \S+, standard\)$/m);
    assert.match(text, /^ {2}live {2}\([0-9a-f]{8}, \S+, standard, memory 256\.0 KiB\)$/m);
    await ok('checkpoint', 'remove', 'c1', 'live');
    assert.ok(!existsSync(stateDir), 'the checkpoint memory state is deleted with it');
  });

  it('exports a Saved VM with its saved state; the import is Saved too', async () => {
    const { id } = await newVm('e1');
    saveByHand(home, id);
    const r = await ok('export', 'e1', out);
    const folder = r['folder'] as string;
    const manifest = JSON.parse(readFileSync(join(folder, 'export.json'), 'utf8')) as Json;
    assert.equal(manifest['savedState'], 'state/saved.bstate');
    assert.equal(readFileSync(join(folder, 'state', STATE_FILES.saved)).length, STATE_BYTES);
    const imported = await there.ok('import', folder, '--restore');
    assert.equal(imported['id'], id);
    assert.equal(imported['state'], 'Saved');
    assert.equal(readFileSync(join(vmFolder(second, id), 'state', STATE_FILES.saved)).length, STATE_BYTES);
    // A copy would get new MAC addresses the saved guest does not expect: refused, saying why.
    assert.match(
      await refused('import', folder, '--copy', '--name', 'e1-copy'),
      /^'e1' was exported Saved: .* import it with --restore or --register/,
    );
    assert.match((await run(['import', folder, '--copy', '--move-files'])).stderr, /--move-files goes with --restore/);
  });

  it('moves a Saved VM and an Off VM to another data root: files arrive, registered there, gone here', async () => {
    const target = makeBerthHome('saved3');
    mkdirSync(join(target, 'vms'));
    const third = cliRunner(() => target);
    try {
      const { id } = await newVm('m1');
      saveByHand(home, id);
      await ok('checkpoint', 'list', 'm1');
      const moved = await ok('vm', 'move', 'm1', '--to', target);
      assert.equal(moved['id'], id);
      assert.equal(moved['stateThere'], 'Saved');
      assert.equal(moved['downtimeMs'], null); // it was not running
      assert.deepEqual(moved['leftBehind'], []);
      assert.ok(!existsSync(vmFolder(home, id)), 'gone here');
      assert.match(await refused('vm', 'show', 'm1'), /no VM named 'm1'/);
      const shown = await third.ok('vm', 'show', 'm1');
      assert.equal(shown['state'], 'Saved');
      assert.equal(readFileSync(join(vmFolder(target, id), 'state', STATE_FILES.saved)).length, STATE_BYTES);
      const disks = (shown['config'] as { disks: { path: string }[] }).disks;
      assert.ok(disks[0]?.path.startsWith(join(vmFolder(target, id), 'disks')), disks[0]?.path);
      assert.ok(existsSync(disks[0]?.path ?? ''));
      assert.deepEqual(
        readFileSync(join(target, 'vms', id, 'config.json'), 'utf8').includes(home),
        false,
        'nothing there names the old root',
      );

      const off = await newVm('m2');
      await ok('checkpoint', 'create', 'm2', '--name', 'before-move');
      const text = await run(['vm', 'move', 'm2', '--to', target]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`^moved 'm2' to ${target}; it is Off there \\(.* copied\\)\\n$`));
      const list = await third.ok('checkpoint', 'list', 'm2');
      assert.deepEqual(
        (list['checkpoints'] as Json[]).map((c) => c['name']),
        ['before-move'],
      );
      assert.ok(!existsSync(vmFolder(home, off.id)));
      // No staging folder is left in either root.
      assert.deepEqual(
        (await import('node:fs')).readdirSync(join(target, 'vms')).filter((n) => n.startsWith('.incoming')),
        [],
      );
    } finally {
      await cleanBerthHome(target);
    }
  });

  it('refuses a move to a missing root, to a folder that is not a Berth root, and where the id exists', async () => {
    const { id } = await newVm('m3');
    const missing = join(out, 'no-such-root');
    assert.equal(
      await refused('vm', 'move', 'm3', '--to', missing),
      `the destination ${missing} does not exist; point --to at another Berth data root (the folder BERTH_HOME ` +
        "names there), or create one with 'mkdir -p ROOT/vms'",
    );
    const plain = mkdtempSync(join(tmpdir(), 'berth-not-root-'));
    try {
      assert.match(
        await refused('vm', 'move', 'm3', '--to', plain),
        new RegExp(`^${plain} is not a Berth data root \\(it has no vms/ folder\\)`),
      );
    } finally {
      rmSync(plain, { recursive: true, force: true });
    }
    // The same VM (same id) already registered there, by an export restored into it.
    const r = await ok('export', 'm3', out);
    await there.ok('import', r['folder'] as string, '--restore');
    assert.match(
      await refused('vm', 'move', 'm3', '--to', second),
      new RegExp(`^${second} already has a VM with id ${id} \\('m3'\\); remove or rename it there first$`),
    );
    assert.equal((await ok('vm', 'show', 'm3'))['state'], 'Off', 'the VM stays here, untouched');
    assert.match(await refused('vm', 'move', 'm3', '--to', home), /'m3' is already in/);
    assert.match(
      await refused('vm', 'move', 'm3', '--to', 'ssh://-oProxyCommand=x/root'),
      /^destination 'ssh:\/\/-oProxyCommand=x\/root': '-oProxyCommand=x' is not a host name/,
    );
    const usage = await run(['vm', 'move', 'm3']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--to is required: the destination data root/);
  });
});
