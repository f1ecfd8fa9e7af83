// Benchmarks that need /dev/kvm run where it works: on this host when it has one, otherwise
// the whole benchmark re-executes itself inside the KVM lab (test/lab: a Linux VM under
// QEMU's emulator whose kvm-amd gives a real /dev/kvm), with one lab boot for all of it, so
// Berth and QEMU are measured side by side in the same lab VM.
import { kvmHere, LabSetupError, runInLab, type LabOptions } from '../lab/lab';

export const IN_LAB = process.env['BERTH_IN_LAB'] === '1';

// Repetitions: BERTH_BENCH_REPS when set, else the given default.
export function benchReps(fallback: number): number {
  const n = Number(process.env['BERTH_BENCH_REPS']);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

// When this host cannot run KVM guests, runs this script (same arguments) in the lab,
// sets process.exitCode to its status and returns true; the caller then does nothing more.
export async function rerunInLab(name: string, options: Pick<LabOptions, 'memoryMiB'> = {}): Promise<boolean> {
  if (kvmHere()) return false;
  const script = process.argv[1];
  if (script === undefined) throw new Error('cannot tell which script is running');
  process.stdout.write(
    `${name}: this host has no usable /dev/kvm; the whole benchmark runs inside the KVM lab ` +
      `(npm run lab: nested KVM in a VM under QEMU's TCG emulator), Berth and QEMU in the same lab run\n`,
  );
  try {
    // A thread per lab CPU: guests run at the lab's full speed (see test/lab/lab.ts).
    const result = await runInLab([process.execPath, script, ...process.argv.slice(2)], {
      ...options,
      tcgThread: 'multi',
    });
    const boot = result.bootSeconds === undefined ? '' : `, of which the lab's boot ${result.bootSeconds.toFixed(0)} s`;
    process.stdout.write(
      `${name}: lab run ended with status ${result.status} after ${result.seconds.toFixed(0)} s${boot}\n`,
    );
    process.exitCode = result.status;
  } catch (err) {
    if (!(err instanceof LabSetupError)) throw err;
    process.stderr.write(`${name}: the KVM lab could not run the benchmark: ${err.message}\n`);
    process.exitCode = err.status;
  }
  return true;
}

// Printed with the results: where they were taken and what they are good for.
export function whereMeasured(): string {
  return IN_LAB
    ? 'Measured INSIDE THE KVM LAB: the guests ran under KVM nested in a VM that QEMU emulates with TCG ' +
        '(no hardware virtualization). Absolute times are not meaningful (every VM exit, process start ' +
        'and file read is emulated); only the Berth/QEMU ratios, taken in the same lab run, are.'
    : 'Measured on this host with its /dev/kvm.';
}
