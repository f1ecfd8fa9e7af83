// The shape of Berth's current per-VM worker, for the VMM benchmark: a Node process that
// loads the addon, creates one VM, starts it, copies its console to stdout and exits with
// the guest's test-exit code. Usage: node node-vm-worker.js KERNEL CMDLINE MEMORY_MIB
import { Machine } from '../../app/native';

async function main(): Promise<number> {
  const [kernelPath, cmdline, memory] = process.argv.slice(2);
  if (kernelPath === undefined || cmdline === undefined || memory === undefined) {
    process.stderr.write('usage: node-vm-worker KERNEL CMDLINE MEMORY_MIB\n');
    return 2;
  }
  const machine = await Machine.create({
    memoryMiB: Number(memory),
    vcpus: 1,
    kernelPath,
    cmdline,
    testExitPort: true,
    restartOnReset: false,
  });
  machine.on((event) => {
    if (event.type === 'console') process.stdout.write(event.data);
  });
  await machine.start();
  const exit = await machine.waitForExit();
  if (exit.reason === 'guest-exit') return exit.code & 0xff;
  process.stderr.write(`node-vm-worker: VM stopped: ${exit.reason} ${exit.detail}\n`);
  return exit.reason === 'power-off' ? 0 : 2;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`node-vm-worker: ${String(err)}\n`);
    process.exitCode = 2;
  },
);
