// `npm start` until the window exists: boots the test guest through the VMM addon on this
// host's hypervisor and shows its console, so a fresh checkout proves the whole stack.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { Machine, NativeError, probe } from '../native';

const guest = join(__dirname, '..', '..', '..', 'build', 'guest', 'berth-test-guest.elf');

async function main(): Promise<number> {
  const caps = probe();
  console.log(`Berth: hypervisor ${caps.backend} (API ${caps.apiVersion}), up to ${caps.maxVcpus} vCPUs`);
  if (!existsSync(guest)) {
    console.error(`the test guest is missing at ${guest}: run 'make -C test/guest'`);
    return 1;
  }
  const scenarios = ['hello Berth demo', 'smp', 'rtc'];
  for (const cmdline of scenarios) {
    const machine = await Machine.create({
      memoryMiB: 64,
      vcpus: cmdline === 'smp' ? 2 : 1,
      kernelPath: guest,
      cmdline,
      testExitPort: true,
    });
    machine.on((event) => {
      if (event.type === 'console') process.stdout.write(Buffer.from(event.data).toString('utf8'));
    });
    const started = process.hrtime.bigint();
    await machine.start();
    const exit = await machine.waitForExit();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const stats = machine.stats();
    const exits = stats.vcpus.reduce((n, v) => n + v.exits.io + v.exits.mmio, 0);
    console.log(
      `  -> ${exit.reason} ${exit.code} after ${ms.toFixed(1)} ms, ${stats.vcpus.length} vCPU(s), ${exits} device exits\n`,
    );
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof NativeError) console.error(`Berth: ${err.message} [${err.code}]`);
    else console.error(err);
    process.exit(1);
  },
);
