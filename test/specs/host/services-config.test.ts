// The VM configuration schema, its migrations, and the lifecycle's refusals (no VMs run).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  assertTransition,
  BerthError,
  CONFIG_SCHEMA_VERSION,
  ConfigError,
  migrateConfig,
  migrateConfigDetailed,
  parseConfig,
  protocol,
  randomMac,
  type VmConfig,
} from '../../../app/api';

const id = '6f1c2b8e-2a4d-4c3e-9f1a-0b2c3d4e5f60';
// A version-1 document (configurations/firmware.test.ts has version 2's own fields).
const good = {
  schemaVersion: 1,
  id,
  name: 'web1',
  memory: { startupMiB: 64 },
  boot: { kind: 'pvh', kernelPath: '/boot/guest.elf', cmdline: 'echo' },
};

function refused(raw: unknown, expected: RegExp, code = 'INVALID_CONFIG'): void {
  assert.throws(
    () => migrateConfig(raw),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.equal(err.code, code);
      assert.match(err.message, expected);
      return true;
    },
  );
}

describe('VM configuration schema', () => {
  it('fills defaults and keeps what it was given', () => {
    const c: VmConfig = migrateConfig(good);
    assert.equal(c.schemaVersion, CONFIG_SCHEMA_VERSION);
    assert.equal(c.processors.count, 1);
    assert.deepEqual(c.memory.dynamic.enabled, false);
    assert.deepEqual(c.com1, { enabled: true });
    assert.equal(c.checkpoints.type, 'standard');
    assert.equal(c.automaticStartAction, 'nothing');
    assert.equal(c.automaticStopAction, 'turn-off');
    assert.equal(c.testExitPort, false);
    assert.equal(c.boot.kind === 'pvh' && c.boot.cmdline, 'echo');
  });

  it('refuses bad configurations naming the field', () => {
    refused({ ...good, memory: { startupMiB: 1 } }, /^memory\.startupMiB: must be at least 2$/);
    refused({ ...good, memory: { startupMiB: '64' } }, /memory\.startupMiB: must be a number/);
    refused({ ...good, processors: { count: 0 } }, /processors\.count: must be at least 1/);
    refused({ ...good, id: 'web1' }, /^id: must be a UUID$/);
    refused({ ...good, name: undefined }, /^name: is required$/);
    refused({ ...good, name: ' web1' }, /name: must not start or end with spaces/);
    refused({ ...good, memory: { startupMiB: 64, extra: 1 } }, /^memory: unknown field 'extra'$/);
    refused(
      { ...good, boot: { kind: 'efi' } },
      /^boot\.kind: must be one of "pvh", "linux", "uefi", "bios", not "efi"$/,
    );
    // Version 1's reserved kind was refused there, and is gone from version 2.
    refused({ ...good, boot: { kind: 'firmware' } }, /^boot\.kind: must be one of .*not "firmware"$/);
    refused({ ...good, boot: { kind: 'linux' } }, /^boot\.kernelPath: is required$/);
    refused(
      { ...good, memory: { startupMiB: 64, dynamic: { enabled: true } } },
      /memory\.dynamic\.enabled: dynamic memory is reserved/,
    );
    refused(
      { ...good, disks: [{ slot: 64, kind: 'virtual', path: 'a.qcow2' }] },
      /^disks\[0\]\.slot: must be at most 63$/,
    );
    refused(
      {
        ...good,
        disks: [
          { slot: 1, kind: 'virtual', path: 'a.qcow2' },
          { slot: 1, kind: 'passthrough', deviceId: '/dev/sdb' },
        ],
      },
      /^disks\[1\]\.slot: slot 1 is already used by disks\[0\]$/,
    );
    refused({ ...good, network: [{ kind: 'bridge' }] }, /^network\[0\]\.bridge: is required when kind is 'bridge'/);
    refused({ ...good, network: [{ kind: 'nat', mac: '01:00:00:00:00:01' }] }, /network\[0\]\.mac: must be a unicast/);
    refused(
      { ...good, checkpoints: { type: 'sometimes' } },
      /^checkpoints\.type: must be one of "standard", "production", "disabled"/,
    );
    refused({ ...good, automaticStopAction: 'explode' }, /^automaticStopAction: must be one of/);
    refused('not an object', /^\(config\): must be a JSON object$/);
  });

  it('accepts disks on numbered slots and generates locally administered MACs', () => {
    const c = migrateConfig({
      ...good,
      disks: [
        { slot: 0, kind: 'virtual', path: 'disks/boot.qcow2' },
        { slot: 5, kind: 'passthrough', deviceId: '/dev/disk/by-id/usb-x', readOnly: true },
      ],
      network: [{ kind: 'nat' }, { kind: 'bridge', bridge: 'br0', mac: '02:AA:BB:CC:DD:EE' }],
    });
    assert.equal(c.disks.length, 2);
    assert.equal(c.disks[0]?.readOnly, false);
    const mac = c.network[0]?.mac ?? '';
    assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(parseInt(mac.slice(0, 2), 16) & 0b11, 0b10, 'locally administered, unicast');
    assert.equal(c.network[1]?.mac, '02:aa:bb:cc:dd:ee');
    for (let i = 0; i < 100; i++) assert.equal(parseInt(randomMac().slice(0, 2), 16) & 3, 2);
  });

  it('migrates the pre-release layout (version 0) and marks it for rewriting', () => {
    const old = { id, name: 'old', memoryMiB: 32, vcpus: 2, kernelPath: '/k', cmdline: 'hello', testExitPort: true };
    const { config, fromVersion, changed } = migrateConfigDetailed(old);
    assert.equal(fromVersion, 0);
    assert.equal(changed, true);
    assert.equal(config.schemaVersion, CONFIG_SCHEMA_VERSION);
    assert.equal(config.memory.startupMiB, 32);
    assert.equal(config.processors.count, 2);
    assert.deepEqual(config.boot, { kind: 'pvh', kernelPath: '/k', cmdline: 'hello' });
    assert.equal(config.testExitPort, true);
    // A version-0 file that is invalid after migration still names the new field.
    refused({ ...old, memoryMiB: 1 }, /^memory\.startupMiB: must be at least 2$/);
  });

  it('a current, complete configuration round-trips unchanged', () => {
    const first = migrateConfig(good);
    const again = migrateConfigDetailed(JSON.parse(JSON.stringify(first)));
    assert.equal(again.changed, false);
    assert.deepEqual(again.config, first);
  });

  it('refuses versions from the future and malformed versions, naming schemaVersion', () => {
    refused(
      { ...good, schemaVersion: 3 },
      /^schemaVersion: 3 is newer than this Berth understands \(2\)/,
      'UNSUPPORTED_VERSION',
    );
    refused({ ...good, schemaVersion: 'one' }, /^schemaVersion: must be a whole number/);
    refused({ ...good, schemaVersion: -1 }, /^schemaVersion: must be a whole number/);
  });

  it('parseConfig refuses an older version without migrating', () => {
    assert.throws(() => parseConfig({ ...good, schemaVersion: 0 }), /schemaVersion: must be 2/);
  });
});

describe('lifecycle state machine', () => {
  function refusal(
    state: Parameters<typeof assertTransition>[1],
    action: Parameters<typeof assertTransition>[2],
  ): BerthError {
    try {
      assertTransition('web1', state, action);
    } catch (err) {
      assert.ok(err instanceof BerthError);
      return err;
    }
    assert.fail(`${action} from ${state} should be refused`);
  }

  it('refuses what it does not allow, saying why', () => {
    assert.equal(refusal('Off', 'pause').message, "cannot pause 'web1': it is Off; start it first");
    assert.equal(refusal('Off', 'pause').code, 'INVALID_STATE');
    assert.equal(refusal('Running', 'start').message, "cannot start 'web1': it is Running; it is already running");
    assert.equal(refusal('Running', 'resume').message, "cannot resume 'web1': it is Running; it is not paused");
    assert.equal(refusal('Paused', 'reset').message, "cannot reset 'web1': it is Paused; resume it first");
    assert.equal(refusal('Running', 'remove').message, "cannot remove 'web1': it is Running; turn it off first");
    assert.equal(refusal('Off', 'turn-off').message, "cannot turn off 'web1': it is Off; it is already off");
    assert.equal(refusal('Off', 'save').code, 'INVALID_STATE');
    assert.equal(
      refusal('Off', 'save').message,
      "cannot save 'web1': it is Off; only a running or paused VM can be saved",
    );
    assert.equal(refusal('Saved', 'save').message, "cannot save 'web1': it is Saved; it is already saved");
    // A Saved VM has nothing running: Delete Saved State, not Turn Off, makes it Off (as in Hyper-V).
    assert.equal(
      refusal('Saved', 'turn-off').message,
      "cannot turn off 'web1': it is Saved; nothing runs (its memory is saved on disk); delete the saved state to " +
        'make it Off, or start it',
    );
    assert.equal(
      refusal('Running', 'delete-saved-state').message,
      "cannot delete the saved state of 'web1': it is Running; it has no saved state (save it first)",
    );
    assert.equal(
      refusal('Saved', 'console').message,
      "cannot attach to the console of 'web1': it is Saved; start it first (it resumes from its saved state)",
    );
  });

  it('allows the transitions of the diagram', () => {
    const ok: [Parameters<typeof assertTransition>[1], Parameters<typeof assertTransition>[2]][] = [
      ['Off', 'start'],
      ['Failed', 'start'],
      ['Running', 'pause'],
      ['Paused', 'resume'],
      ['Running', 'turn-off'],
      ['Paused', 'turn-off'],
      ['Failed', 'turn-off'],
      ['Running', 'reset'],
      ['Running', 'shut-down'],
      ['Off', 'remove'],
      ['Failed', 'remove'],
      ['Running', 'save'],
      ['Paused', 'save'],
      ['Saved', 'start'],
      ['Saved', 'delete-saved-state'],
      ['Saved', 'remove'],
    ];
    for (const [state, action] of ok) assert.doesNotThrow(() => assertTransition('web1', state, action));
  });
});

describe('control protocol messages', () => {
  it('validates requests and names the failing field', () => {
    assert.deepEqual(protocol.parseRequest('{"id":1,"op":"state"}'), { ok: true, request: { id: 1, op: 'state' } });
    const bad = protocol.parseRequest('{"id":2,"op":"console-input","data":"not base64!"}');
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && bad.id === 2 && /^data: must be base64$/.test(bad.error));
    const unknown = protocol.parseRequest('{"id":3,"op":"format-disk"}');
    assert.ok(!unknown.ok && /^op: must be one of/.test(unknown.error));
    assert.ok(!protocol.parseRequest('{').ok);
    assert.throws(() => protocol.parseIncoming('{"event":"state","state":"Dancing"}'), /state: must be one of/);
  });

  it('takes save and checkpoint with absolute paths only', () => {
    assert.deepEqual(protocol.parseRequest('{"id":4,"op":"save","path":"/vm/state/saved.bstate"}'), {
      ok: true,
      request: { id: 4, op: 'save', path: '/vm/state/saved.bstate' },
    });
    const relative = protocol.parseRequest('{"id":5,"op":"save","path":"state/saved.bstate"}');
    assert.ok(!relative.ok && /^path: must be an absolute path$/.test(relative.error), JSON.stringify(relative));
    const disks = protocol.parseRequest('{"id":6,"op":"checkpoint","path":"/c/memory.bstate","disks":["d.qcow2"]}');
    assert.ok(!disks.ok && /^disks\[0\]: must be an absolute path$/.test(disks.error), JSON.stringify(disks));
    const exit = protocol.parseIncoming(
      '{"event":"exit","exit":{"reason":"saved","code":0,"detail":"","at":"2026-01-01T00:00:00.000Z","pid":7}}',
    );
    assert.equal(exit.kind === 'event' && exit.message.event === 'exit' && exit.message.exit.reason, 'saved');
  });
});
