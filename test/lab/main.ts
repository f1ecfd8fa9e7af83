// `npm run lab -- [options] CMD [ARGS...]`: runs CMD in the project root where /dev/kvm
// works (this host, or the lab VM when this host has none) and exits with its status.
import { kvmHere, LabSetupError, runInLab, type LabOptions } from './lab';

const USAGE = `usage: npm run lab -- [--timeout SECONDS] [--forward PORT]... [--cpus N] [--memory MIB] [--] CMD [ARGS...]

Runs CMD where /dev/kvm works: on this host when it has a usable /dev/kvm, otherwise inside
the lab VM (QEMU's emulator with AMD SVM; Debian's kvm-amd gives it a real /dev/kvm). The
host's files are the lab's (the project read-write, the rest read-only, /tmp its own).
  --timeout S    end the run after S seconds (exit 124; default 3600, or BERTH_LAB_TIMEOUT)
  --forward P    forward 127.0.0.1:P on the host to 127.0.0.1:P in the lab (repeatable)
  --cpus N       the lab VM's CPUs (default 2, or BERTH_LAB_CPUS)
  --memory MIB   the lab VM's memory (default 6144, or BERTH_LAB_MEMORY_MIB)
BERTH_LAB=always uses the lab even where /dev/kvm works; BERTH_LAB=never refuses it.`;

function usage(message: string): never {
  process.stderr.write(`lab: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function positive(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (!value || !Number.isInteger(n) || n <= 0) usage(`${flag} needs a positive whole number, not ${String(value)}`);
  return n;
}

function parse(argv: string[]): { options: LabOptions; command: string[] } {
  const options: LabOptions = { forwards: [] };
  let i = 0;
  for (; i < argv.length; ++i) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      ++i;
      break;
    }
    if (!arg.startsWith('--')) break;
    const value = argv[++i];
    if (arg === '--timeout') options.timeoutSeconds = positive(arg, value);
    else if (arg === '--forward') {
      const port = positive(arg, value);
      if (port > 65535) usage(`--forward takes a TCP port, not ${port}`);
      options.forwards?.push(port);
    } else if (arg === '--cpus') options.cpus = positive(arg, value);
    else if (arg === '--memory') options.memoryMiB = positive(arg, value);
    else if (arg === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usage(`unknown option ${arg}`);
  }
  const command = argv.slice(i);
  if (command.length === 0) usage('no command given');
  return { options, command };
}

async function main(): Promise<void> {
  const { options, command } = parse(process.argv.slice(2));
  const where = kvmHere() ? 'this host (its /dev/kvm works)' : 'the lab VM';
  process.stderr.write(`[lab] running ${command.join(' ')} on ${where}\n`);
  try {
    const result = await runInLab(command, options);
    const boot = result.bootSeconds === undefined ? '' : `, the lab booted in ${result.bootSeconds.toFixed(1)} s`;
    const log = result.consoleLog ? `; the lab's kernel log: ${result.consoleLog}` : '';
    process.stderr.write(`[lab] exit ${result.status} after ${result.seconds.toFixed(1)} s${boot}${log}\n`);
    process.exitCode = result.status;
  } catch (e) {
    if (!(e instanceof LabSetupError)) throw e;
    process.stderr.write(`[lab] ${e.message}\n`);
    process.exitCode = e.status;
  }
}

void main();
