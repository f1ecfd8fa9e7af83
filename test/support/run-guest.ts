// Runs the test guest through the addon on the host's real KVM and collects what it
// printed on COM1 and how it ended.
import { Machine, type ExitEvent, type MachineConfig, type MachineEvent } from '../../app/native';
import { testGuestPath } from './guest';

export interface GuestRun {
  output: string;
  exit: ExitEvent;
  events: MachineEvent[];
  machine: Machine;
}

export interface GuestOptions extends Partial<MachineConfig> {
  // Called with the machine once it runs, e.g. to type into the console.
  interact?: (machine: Machine, console: ConsoleWatcher) => Promise<void>;
  // The VM is turned off after this long, so a hung guest fails the test instead of hanging it.
  timeoutMs?: number;
}

// Collects console output and lets a test wait for text to appear.
export class ConsoleWatcher {
  text = '';
  private waiters: { needle: string; resolve: () => void }[] = [];

  push(bytes: Uint8Array): void {
    this.text += Buffer.from(bytes).toString('latin1');
    this.waiters = this.waiters.filter((w) => {
      if (!this.text.includes(w.needle)) return true;
      w.resolve();
      return false;
    });
  }

  waitFor(needle: string, timeoutMs = 10_000): Promise<void> {
    if (this.text.includes(needle)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`console never showed ${JSON.stringify(needle)}; it showed ${JSON.stringify(this.text)}`)),
        timeoutMs,
      );
      this.waiters.push({
        needle,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

export async function runGuest(cmdline: string, options: GuestOptions = {}): Promise<GuestRun> {
  const { interact, timeoutMs = 20_000, ...config } = options;
  const machine = await Machine.create({
    memoryMiB: 64,
    vcpus: 1,
    kernelPath: testGuestPath(),
    testExitPort: true,
    ...config,
    cmdline,
  });
  const watcher = new ConsoleWatcher();
  const events: MachineEvent[] = [];
  machine.on((event) => {
    events.push(event);
    if (event.type === 'console') watcher.push(event.data);
  });
  const timer = setTimeout(() => void machine.stop(), timeoutMs);
  try {
    await machine.start();
    if (interact) await interact(machine, watcher);
    const exit = await machine.waitForExit();
    return { output: watcher.text, exit, events, machine };
  } catch (err) {
    await machine.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
