// The KVM lab's watchdog on a console log written here: a lab that keeps its heartbeat is
// left alone, one whose heartbeat stops or whose kernel reports a fatal fault is named broken.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { watchLabConsole } from '../../lab/watchdog';

const dir = mkdtempSync(join(tmpdir(), 'berth-watchdog-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const timing = { beatLimitMs: 1000, pollMs: 50 };

function watch(name: string): { log: string; reasons: string[]; stop: () => void } {
  const log = join(dir, name);
  writeFileSync(log, '[    1.0] booting\nBERTH-LAB-READY 4.2\n');
  const reasons: string[] = [];
  const dog = watchLabConsole(log, (r) => reasons.push(r), timing);
  return { log, reasons, stop: () => dog.stop() };
}

describe('the KVM lab watchdog', () => {
  it('leaves a lab alone while its heartbeat goes on, however long the command is quiet', async () => {
    const w = watch('alive.log');
    for (let i = 0; i < 10; i++) {
      appendFileSync(w.log, `BERTH-LAB-BEAT ${i}\n`);
      await sleep(100);
    }
    w.stop();
    assert.deepEqual(w.reasons, []);
  });

  it('leaves a lab alone that has not started its heartbeat yet (it is still booting)', async () => {
    const w = watch('booting.log');
    await sleep(1500);
    w.stop();
    assert.deepEqual(w.reasons, []);
  });

  it('names a lab broken once its heartbeat stops', async () => {
    const w = watch('frozen.log');
    appendFileSync(w.log, 'BERTH-LAB-BEAT 5.0\n');
    await sleep(2000);
    w.stop();
    assert.deepEqual(w.reasons, ['it stopped answering (no heartbeat for 1 s)']);
  });

  it('names a lab broken when its kernel reports a fatal fault, quoting the line, once', async () => {
    const w = watch('oops.log');
    appendFileSync(
      w.log,
      'BERTH-LAB-BEAT 5.0\n[  233.2] kvm [935]: vcpu0, guest rIP: 0xffff Unhandled WRMSR(0xc0010007) = 0xffff\n',
    );
    await sleep(200);
    assert.deepEqual(w.reasons, [], 'a guest MSR warning is not a breakdown');
    // Written in two pieces: the watchdog reads whole lines only.
    appendFileSync(w.log, '[  240.1] general protection fault, probably for non-canonical addr');
    await sleep(150);
    appendFileSync(w.log, 'ess 0xdead: 0000 [#1] PREEMPT SMP NOPTI\nBERTH-LAB-BEAT 6.0\n');
    await sleep(400);
    w.stop();
    assert.deepEqual(w.reasons, [
      'its kernel reported "[  240.1] general protection fault, probably for non-canonical address 0xdead: 0000 [#1] PREEMPT SMP NOPTI"',
    ]);
  });
});
