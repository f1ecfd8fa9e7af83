// Boots Debian's cloud kernel through Berth's VMM with ACPI on, by each boot path, and
// reports for each boot how far it got and how long it took. Where this host has no usable
// /dev/kvm it prepares the files here and runs itself in the KVM lab. --repeat N boots each
// configuration N times in one run (to look for rare hangs).
//   npm run check:linux-boot -- [options]
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { kvmHere, LabSetupError, runInLab } from '../lab/lab';
import { BOOT_PROTOCOL, bootLinux, describeBoot, LINUX_BOOT_PATHS, markerLine, type LinuxBootPath } from './boot';
import { linuxBootDir, loadPreparedLinuxBoot, prepareLinuxBoot } from './prepare';

const USAGE = `usage: npm run check:linux-boot -- [options]
  --only PATH[,PATH]   bzimage (64-bit boot protocol), elf (vmlinux, 64-bit ELF entry),
                       pvh (vmlinux through PVH); default all three
  --vcpus N[,N]        vCPU counts to boot with (default 1,2)
  --repeat N           boot every configuration N times (default 1)
  --timeout S          time limit per boot in seconds (default 150)
  --memory MIB         guest memory (default 256)
  --append ARGS        extra kernel command-line arguments (may repeat)
  --tail N             console lines shown for a failed boot (default 25)`;

interface Options {
  paths: LinuxBootPath[];
  vcpus: number[];
  repeat: number;
  timeoutS: number;
  memoryMiB: number;
  append: string[];
  tail: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    paths: [...LINUX_BOOT_PATHS],
    vcpus: [1, 2],
    repeat: 1,
    timeoutS: 150,
    memoryMiB: 256,
    append: [],
    tail: 25,
  };
  const num = (flag: string, s: string | undefined): number => {
    const n = Number(s);
    if (!s || !Number.isInteger(n) || n <= 0)
      throw new Error(`${flag} needs a positive whole number, not ${String(s)}`);
    return n;
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i] ?? '';
    const v = (): string => {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${a} needs a value`);
      return value;
    };
    if (a === '--only') {
      const list = v().split(',');
      const bad = list.filter((p) => !LINUX_BOOT_PATHS.includes(p as LinuxBootPath));
      if (bad.length) throw new Error(`--only takes ${LINUX_BOOT_PATHS.join(', ')}, not ${bad.join(', ')}`);
      o.paths = LINUX_BOOT_PATHS.filter((p) => list.includes(p));
    } else if (a === '--vcpus')
      o.vcpus = v()
        .split(',')
        .map((n) => num(a, n));
    else if (a === '--repeat') o.repeat = num(a, v());
    else if (a === '--timeout') o.timeoutS = num(a, v());
    else if (a === '--memory') o.memoryMiB = num(a, v());
    else if (a === '--append') o.append.push(v());
    else if (a === '--tail') o.tail = num(a, v());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  return o;
}

// printk time of the first line matching re, for the report.
function printkAt(text: string, re: RegExp): string {
  for (const line of text.split('\n')) {
    if (!re.test(line)) continue;
    const m = /^\[\s*(\d+\.\d+)\]/.exec(line);
    return m?.[1] ? `${Number(m[1]).toFixed(1)}s` : 'yes';
  }
  return '-';
}

async function checkHere(o: Options): Promise<number> {
  const prepared = loadPreparedLinuxBoot();
  process.stdout.write(`Berth Linux boot check: ${prepared.packageName}, ${o.memoryMiB} MiB, ACPI on\n`);
  const failed: string[] = [];
  const times = new Map<string, number[]>();
  for (let round = 1; round <= o.repeat; ++round) {
    for (const path of o.paths) {
      for (const vcpus of o.vcpus) {
        const token = randomBytes(6).toString('hex');
        const name = `${path} ${vcpus} vCPU${o.repeat > 1 ? ` #${round}` : ''}`;
        const r = await bootLinux(prepared, path, {
          vcpus,
          memoryMiB: o.memoryMiB,
          timeoutMs: o.timeoutS * 1000,
          token,
          append: o.append,
          consoleLog: join(linuxBootDir, `console-${path}-${vcpus}.log`),
        });
        const ok =
          !r.timedOut &&
          r.protocol === BOOT_PROTOCOL[path] &&
          r.console.includes(markerLine(token)) &&
          r.smpCpus === vcpus &&
          r.exit.reason === 'power-off' &&
          r.exit.detail === 'acpi';
        const kernel = `guest: banner ${printkAt(r.console, /Linux version \d/)}, /init ${printkAt(r.console, /Run \/init/)}, power down ${printkAt(r.console, /reboot: Power down/)}`;
        process.stdout.write(
          `${ok ? 'PASS' : 'FAIL'} ${name}: ${r.protocol}, CPUs up ${r.smpCpus ?? '-'}, marker ${r.markerSeconds?.toFixed(1) ?? '-'} s, ` +
            `exit ${r.exit.reason}${r.exit.detail ? `/${r.exit.detail}` : ''} at ${r.seconds.toFixed(1)} s (${kernel})\n`,
        );
        if (!ok) {
          failed.push(name);
          process.stdout.write(`${describeBoot(r, o.tail).replace(/^/gm, '    | ')}\n`);
        } else {
          const key = `${path} ${vcpus} vCPU`;
          times.set(key, [...(times.get(key) ?? []), r.seconds]);
        }
      }
    }
  }
  for (const [key, list] of times) {
    const sorted = [...list].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    process.stdout.write(
      `${key}: ${list.length} boot(s), power-off after ${(sorted[0] ?? 0).toFixed(1)}-${(sorted.at(-1) ?? 0).toFixed(1)} s (median ${median.toFixed(1)} s)\n`,
    );
  }
  const total = o.repeat * o.paths.length * o.vcpus.length;
  process.stdout.write(
    `${total - failed.length} of ${total} boots passed${failed.length ? `; failed: ${failed.join(', ')}` : ''}\n`,
  );
  return failed.length ? 1 : 0;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  if (kvmHere()) return checkHere(o);
  // No /dev/kvm here: download and build on this host (the lab has no network), boot there.
  prepareLinuxBoot();
  // 2-vCPU boots need a host thread per lab CPU (see test/lab/lab.ts).
  const r = await runInLab([process.execPath, __filename, ...argv], { tcgThread: 'multi' });
  return r.status;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`linux-boot-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof LabSetupError ? err.status : 2);
  },
);
