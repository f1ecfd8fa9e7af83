// Every test-guest scenario, run through the addon on this machine's real KVM, with the
// exact console output and exit code asserted.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';

import { runGuest } from '../../support/run-guest';

describe('test guest on the real KVM', () => {
  it('hello: prints its greeting and the command line we passed, exits 0', async () => {
    const run = await runGuest('hello  from berth');
    assert.equal(run.output, 'Hello from the Berth test guest\ncmdline: hello  from berth\n');
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
    assert.equal(run.machine.stats().bootProtocol, 'pvh');
  });

  for (const code of [0, 7, 255]) {
    it(`exit ${code}: the guest's exit code reaches JavaScript`, async () => {
      const run = await runGuest(`exit ${code}`);
      assert.equal(run.output, `exit: ${code}\n`);
      assert.equal(run.exit.reason, 'guest-exit');
      assert.equal(run.exit.code, code);
    });
  }

  it('boots with more than 3 GiB of RAM (memory above the PCI hole, mapped from 4 GiB)', async () => {
    const run = await runGuest('hello', { memoryMiB: 4608 });
    assert.equal(run.output, 'Hello from the Berth test guest\ncmdline: hello\n');
    assert.equal(run.machine.stats().memoryBytes, 4608 * 1024 * 1024);
  });

  it('the test-exit port exists only when asked for', async () => {
    // Without the port the guest's exit write goes nowhere and the VM keeps running.
    const run = await runGuest('exit 5', {
      testExitPort: false,
      interact: async (machine, console) => {
        await console.waitFor('exit: 5\n');
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(machine.state, 'running');
        await machine.stop();
      },
    });
    assert.equal(run.exit.reason, 'stopped');
  });

  it('an unknown scenario exits 3 and says so', async () => {
    const run = await runGuest('frobnicate');
    assert.equal(run.output, 'unknown scenario: frobnicate\n');
    assert.equal(run.exit.code, 3);
  });

  const cpus = Math.min(availableParallelism(), 4);
  for (const vcpus of [...new Set([1, cpus])]) {
    it(`smp with ${vcpus} vCPU(s): every vCPU in the MP table checks in`, async () => {
      const run = await runGuest('smp', { vcpus });
      const lines = [`smp: ${vcpus} cpus in MP table`];
      for (let id = 0; id < vcpus; id++) lines.push(`smp: cpu with APIC ID ${id} checked in`);
      lines.push(`smp: all ${vcpus} cpus checked in`);
      assert.equal(run.output, lines.join('\n') + '\n');
      assert.equal(run.exit.code, 0);
    });
  }

  it('echo: what the user types arrives by UART interrupt and is echoed back', async () => {
    const typed = 'Hello, Berth! 0123456789 the quick brown fox\n';
    const run = await runGuest('echo', {
      interact: async (machine, console) => {
        await console.waitFor('echo: ready\n');
        // In two bursts, the first longer than the 16-byte FIFO.
        machine.writeConsole(typed.slice(0, 30));
        await console.waitFor(typed.slice(0, 30));
        machine.writeConsole(typed.slice(30) + '\x04');
      },
    });
    assert.equal(run.output, `echo: ready\n${typed}\necho: done ${typed.length} bytes\n`);
    assert.equal(run.exit.code, 0);
    // Interrupt-driven: the guest halted between bytes instead of polling the UART.
    const [vcpu] = run.machine.stats().vcpus;
    assert.ok(vcpu);
    const exits = vcpu.exits;
    assert.ok(exits.io < 2000, `expected few port exits for an interrupt-driven echo, saw ${exits.io}`);
  });

  it('echo: a large paste larger than the FIFO arrives complete and in order', async () => {
    const typed = Array.from({ length: 600 }, (_, i) => String.fromCharCode(0x21 + (i % 90))).join('');
    const run = await runGuest('echo', {
      interact: async (machine, console) => {
        await console.waitFor('echo: ready\n');
        machine.writeConsole(typed + '\x04');
      },
    });
    assert.equal(run.output, `echo: ready\n${typed}\necho: done ${typed.length} bytes\n`);
  });

  it('timer: PIT interrupts arrive at the programmed 100 Hz, measured against the RTC', async () => {
    const run = await runGuest('timer');
    const match = /^timer: PIT at 100 Hz\ntimer: (\d+) ticks in one RTC second\ntimer: ok\n$/.exec(run.output);
    assert.ok(match, `unexpected output ${JSON.stringify(run.output)}`);
    const ticks = Number(match[1]);
    assert.ok(ticks >= 50 && ticks <= 150, `ticks ${ticks}`);
    assert.equal(run.exit.code, 0);
  });

  it('rtc: the guest reads the host time (UTC) from the CMOS clock', async () => {
    const before = Date.now();
    const run = await runGuest('rtc');
    const after = Date.now();
    const match = /^rtc: (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\n$/.exec(run.output);
    assert.ok(match, `unexpected output ${JSON.stringify(run.output)}`);
    const [, y, mo, d, h, mi, s] = match.map(Number) as [number, number, number, number, number, number, number];
    const guestTime = Date.UTC(y, mo - 1, d, h, mi, s);
    assert.ok(
      guestTime >= before - 2000 && guestTime <= after + 1000,
      `guest time ${new Date(guestTime).toISOString()}`,
    );
  });

  for (const method of ['i8042', 'triple']) {
    it(`reset via ${method}: the VM reboots, CMOS survives, and a reset event is reported`, async () => {
      const run = await runGuest(`reset ${method}`);
      const how = method === 'i8042' ? 'i8042' : 'triple fault';
      assert.equal(run.output, `reset: first boot, resetting via ${how}\nreset: second boot\n`);
      assert.equal(run.exit.code, 0);
      const resets = run.events.filter((e) => e.type === 'reset');
      assert.deepEqual(resets, [{ type: 'reset', reason: method === 'i8042' ? 'i8042' : 'triple-fault' }]);
      assert.equal(run.machine.stats().resets, 1);
    });
  }

  it('reset with restartOnReset off stops the VM with reason reset', async () => {
    const run = await runGuest('reset', { restartOnReset: false });
    assert.equal(run.output, 'reset: first boot, resetting via i8042\n');
    assert.deepEqual({ reason: run.exit.reason, detail: run.exit.detail }, { reason: 'reset', detail: 'i8042' });
  });

  it('acpi: the tables list every vCPU and the FADT sleep register powers the VM off', async () => {
    const run = await runGuest('acpi', { vcpus: cpus });
    assert.equal(
      run.output,
      `acpi: MADT lists ${cpus} cpus, IOAPIC at 0xfec00000\nacpi: powering off through the sleep control register\n`,
    );
    assert.deepEqual({ reason: run.exit.reason, detail: run.exit.detail }, { reason: 'power-off', detail: 'acpi' });
  });

  it('ioloop: port I/O exits are counted per vCPU', async () => {
    const run = await runGuest('ioloop 5000');
    assert.equal(run.output, 'ioloop: 5000\n');
    const stats = run.machine.stats();
    const [vcpu] = stats.vcpus;
    assert.ok(vcpu && stats.vcpus.length === 1);
    assert.ok(vcpu.exits.io >= 5000, `io exits ${vcpu.exits.io}`);
    // Read after the vCPU thread has ended: its CPU time must survive the thread.
    assert.ok(vcpu.cpuTimeMs > 0, `cpu time ${vcpu.cpuTimeMs}`);
    assert.ok(stats.rssBytes > 0 && stats.peakRssBytes >= stats.rssBytes);
    assert.equal(stats.memoryBytes, 64 * 1024 * 1024);
  });
});
