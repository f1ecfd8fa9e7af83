// Runs the whole test suite after the build: native unit tests (ASan + UBSan), the bounded
// fuzz runs, the renderer's component tests, and the TypeScript specs. Whatever needs
// /dev/kvm (native tests marked TEST_KVM, test/specs/kvm/) runs where KVM works: on this
// host when its /dev/kvm is usable, otherwise in the KVM lab (test/lab), side by side with
// the host's stages. Prints each stage's counts, where it ran and how long it took, every
// skipped test with its reason, and one closing "N passed, N failed, N skipped" line.
// Under CI (CI=true) a skipped test fails the run: a missing prerequisite must be installed.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const lab = await import(join(root, 'dist', 'test', 'lab', 'lab.js'));
const kvmHere = lab.kvmHere();
const nativeTests = join(root, 'native', 'build', 'tests', 'native-tests');
const ci = process.env['CI'] === 'true';
// Builds use every core: nothing else runs beside them.
const jobs = `-j${availableParallelism()}`;

function prefixed(prefix, chunk) {
  const text = chunk.toString();
  return prefix ? text.replace(/^(?=.)/gm, prefix) : text;
}

// Without KVM here, the lab's specs are the run's longest path and the host's stages have
// time to spare: the CPU-bound ones (native tests, fuzzing) run at a lower priority, so that
// the lab's emulator gets the CPU when it wants it (on 2 cores, a full-priority sanitizer
// build beside the lab slowed its specs by half). The host's specs keep theirs: they wait on
// processes with time limits.
const hostPriority = kvmHere ? [] : ['nice', '-n', '15'];

function run(command, args, prefix, lowPriority = false) {
  return new Promise((resolve) => {
    let output = '';
    const argv = lowPriority ? [...hostPriority, command, ...args] : [command, ...args];
    const child = spawn(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout, child.stderr]) {
      stream.on('data', (chunk) => {
        output += chunk;
        process.stdout.write(prefixed(prefix, chunk));
      });
    }
    child.on('error', (e) => resolve({ status: 127, output: `${e.message}\n` }));
    child.on('close', (status) => resolve({ status: status ?? 1, output }));
  });
}

// The same through the lab when this host has no usable /dev/kvm. The lab's serial output
// arrives in chunks that end mid-line: it is prefixed and printed a whole line at a time.
async function runWithKvm(command, args, prefix, timeoutSeconds) {
  if (kvmHere) return run(command, args, prefix);
  let output = '';
  let partial = '';
  const print = (text) => {
    partial += text;
    const end = partial.lastIndexOf('\n') + 1;
    process.stdout.write(prefixed(prefix, partial.slice(0, end)));
    partial = partial.slice(end);
  };
  try {
    const r = await lab.runInLab([command, ...args], {
      cwd: root,
      timeoutSeconds,
      onOutput: (chunk) => {
        output += chunk;
        print(chunk.toString());
      },
    });
    if (partial) print('\n');
    return { status: r.status, output, bootSeconds: r.bootSeconds };
  } catch (e) {
    const message = `${partial ? '\n' : ''}lab: ${e.message}\n`;
    print(message);
    return { status: e.status ?? 125, output: output + message };
  }
}

// The KVM specs in the lab, one file after another behind a marker line. The lab itself
// can freeze or its kernel fault with a guest running in it (QEMU's emulated SVM under
// multi-threaded TCG, on a loaded host, froze 3 labs in 7 runs of two spec files; the lab
// now runs single-threaded TCG, which froze none in 8, see test/lab/lab.ts); then nothing
// inside can end or finish the run. The lab's watchdog (test/lab/watchdog.ts) stops a lab whose
// heartbeat stopped or whose kernel reported a fatal fault within a minute; a run silent
// for SILENCE_S is killed here as a last resort. The file it was in is reported, and a new
// lab goes on from there: a file caught in a broken lab is run again in a fresh one (and
// said so), up to LAB_RERUNS times; a failing test is never rerun. KVM_STAGE_S bounds the
// whole stage so that CI stays within its 45 minutes. The longest single test seen there
// took about 200 s under CI load.
const SILENCE_S = 360;
const LAB_RERUNS = 3;
// 2100 s fit the specs and no breakdown; a firmware boot that stalls in the first
// multi-threaded lab (3 of 3 CI runs, never in standalone labs: see the firmware spec) costs
// SILENCE_S and a rerun, which 2100 s did not leave room for. The run then takes ~50 minutes.
const KVM_STAGE_S = 2500;
const SMP_LINUX_SPECS = [
  'linux-boot.test.js',
  'saved-state-guests.test.js',
  'shut-down.test.js',
  'firmware-boot.test.js',
];
async function kvmSpecsInLab(dir, timeoutSeconds) {
  const files = readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => join(dir, f));
  let output = '';
  // The lab's serial output arrives in chunks that end mid-line: whole lines only.
  let partial = '';
  const onLine = [];
  const out = (text) => {
    partial += text;
    const end = partial.lastIndexOf('\n') + 1;
    if (end === 0) return;
    const lines = partial.slice(0, end);
    partial = partial.slice(end);
    output += lines;
    for (const line of lines.split('\n')) for (const f of onLine) f(line);
    process.stdout.write(prefixed('[kvm] ', lines));
  };
  const flush = () => partial && out('\n');
  const deadline = Date.now() + timeoutSeconds * 1000;
  const brokeDown = new Map(); // file -> how often the lab broke down while it ran
  let status = 0;
  let bootSeconds;
  // Specs whose Linux guests have several vCPUs run in labs with a host thread per lab CPU:
  // with one thread, a guest's CPUs wait on each other for the emulator's 100 ms time slices
  // and a 2-vCPU Linux boot does not reach its console within minutes; so do the firmware
  // boots, whose BIOS disk reads wait on the VMM's I/O thread the same way. Those labs freeze more
  // often (see test/lab/lab.ts); the watchdog and the reruns cover them.
  const groups = [
    { tcgThread: 'single', files: files.filter((f) => !SMP_LINUX_SPECS.some((s) => f.endsWith(s))) },
    { tcgThread: 'multi', files: files.filter((f) => SMP_LINUX_SPECS.some((s) => f.endsWith(s))) },
  ];
  for (const { tcgThread, files } of groups) {
    let next = 0;
    while (next < files.length) {
      const left = Math.round((deadline - Date.now()) / 1000);
      if (left <= 0) {
        out(`lab: no time left for ${files.slice(next).join(', ')}\n`);
        return { status: 124, output, bootSeconds };
      }
      const script = files
        .slice(next)
        .map(
          (f) =>
            `echo "=== spec ${f}"; t=$(date +%s); node --test --test-reporter=tap --test-timeout=600000 '${f}' || status=1; ` +
            `echo "=== spec ${f} took $(( $(date +%s) - t )) s"`,
        )
        .join('\n');
      let current = next;
      onLine[0] = (line) => {
        const m = /^=== spec (\S*)$/.exec(line);
        if (m) current = files.indexOf(m[1]);
      };
      let timer;
      const abort = new AbortController();
      const quiet = () => {
        clearTimeout(timer);
        timer = setTimeout(() => abort.abort(), SILENCE_S * 1000);
      };
      quiet();
      let r;
      try {
        r = await lab.runInLab(['sh', '-c', `status=0\n${script}\nexit $status`], {
          cwd: root,
          timeoutSeconds: left,
          tcgThread,
          signal: abort.signal,
          onOutput: (chunk) => {
            quiet();
            out(chunk.toString());
          },
        });
      } catch (e) {
        clearTimeout(timer);
        flush();
        out(`lab: ${e.message}\n`);
        if (e.status !== lab.LAB_DIED_STATUS) return { status: e.status ?? 125, output, bootSeconds };
        r = { status: e.status, died: true };
      }
      clearTimeout(timer);
      flush();
      bootSeconds ??= r.bootSeconds;
      if (!abort.signal.aborted && !r.died) {
        if (r.status !== 0) status = r.status;
        break;
      }
      const file = files[current];
      if (!r.died) {
        out(
          `lab: the lab was silent for ${SILENCE_S} s during ${file} and was stopped; its kernel's log ended with:\n` +
            `${r.consoleTail ?? ''}\n`,
        );
      }
      const times = (brokeDown.get(file) ?? 0) + 1;
      brokeDown.set(file, times);
      if (times > LAB_RERUNS) {
        out(`not ok - ${file}: the lab broke down ${times} times while it ran\n# fail 1\n`);
        status = 1;
        next = current + 1;
      } else {
        out(`lab: running ${file} again in a new lab\n`);
        next = current;
      }
    }
  }
  if (brokeDown.size > 0) {
    const list = [...brokeDown].map(([f, n]) => `${f} (${n}x)`).join(', ');
    out(`lab: the lab froze or died during ${list}; each was run again in a new lab\n`);
  }
  return { status, output, bootSeconds };
}

const stages = [];

async function stage(name, where, parse, go, prefix = '') {
  process.stdout.write(prefixed(prefix, `\n=== ${name} (${where})\n`));
  const started = Date.now();
  const r = await go();
  const counts = parse(r.output);
  if (r.status !== 0 && counts.failed === 0) counts.failed = 1; // a crash or build failure counts
  counts.failures = failuresIn(r.output);
  const seconds = (Date.now() - started) / 1000;
  const boot = r.bootSeconds === undefined ? '' : `, lab boot ${r.bootSeconds.toFixed(1)} s`;
  stages.push({ name, where: `${where}, ${seconds.toFixed(0)} s${boot}`, ...counts, status: r.status });
  return r.status === 0;
}

const none = () => ({ passed: 0, failed: 0, skipped: [] });

// What failed, for the summary: CI shows only the tail of a long run. TAP "not ok" lines
// with the first lines of their error, and the native harness's "FAIL" lines with its reasons.
function failuresIn(text) {
  const lines = text.split('\n');
  const found = [];
  for (let i = 0; i < lines.length; i++) {
    const tap = /^\s*not ok \d+ - (.*)$/.exec(lines[i]);
    const native = /^FAIL (.*)$/.exec(lines[i]);
    if (!tap && !native) continue;
    const detail = [];
    for (let j = i + 1; j < lines.length && detail.length < 12; j++) {
      const l = lines[j];
      if (tap && (/^\s*(ok|not ok) \d+/.test(l) || /^\s*\.\.\.\s*$/.test(l))) break;
      if (native && !/^ {4}\S/.test(l)) break;
      if (/duration_ms|failureType|^\s*---\s*$|^\s*(code|name|operator): |^\s*stack: \|-|^\s*$/.test(l)) continue;
      detail.push(`    ${l.trim()}`);
    }
    // A failing suite repeats its failing subtest; keep subtests (they carry the error).
    if (tap && detail.some((d) => /subtestsFailed|tests? failed/.test(d))) continue;
    found.push([`  ${(tap ?? native)[1]}`, ...detail].join('\n'));
  }
  return found;
}

// "N passed, N failed[, N skipped]" with "skipped: NAME: REASON" lines (native harness, fuzz).
const plainCounts = (text) => {
  const m = [...text.matchAll(/^(\d+) passed, (\d+) failed/gm)].pop();
  const skipped = [...text.matchAll(/^skipped: (.*)$/gm)].map((s) => s[1]);
  return m ? { passed: Number(m[1]), failed: Number(m[2]), skipped } : { ...none(), skipped };
};

// node --test's TAP: the closing "# pass/# fail" counts, and every test or suite marked
// "# SKIP" or "# TODO" by name, since a skipped suite's tests appear in no count at all.
const tapCounts = (text) => {
  const skipped = [...text.matchAll(/^\s*ok \d+ - (.*?) # (SKIP|TODO)\b ?(.*)$/gm)].map(
    (m) => `${m[1]}: ${m[3] || m[2].toLowerCase()}`,
  );
  // One closing count per node --test run; the lab's KVM specs are several runs.
  const sum = (re) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
  return { passed: sum(/^# pass (\d+)/gm), failed: sum(/^# fail (\d+)/gm), skipped };
};

const vitestCounts = (text) => {
  // eslint-disable-next-line no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*m/g, '');
  const line = [...plain.matchAll(/^\s*Tests\s+(.*)$/gm)].pop()?.[1] ?? '';
  const count = (word) => Number(new RegExp(`(\\d+) ${word}`).exec(line)?.[1] ?? 0);
  const skipped = [...plain.matchAll(/^\s*↓ (.*)$/gm)].map((m) => `${m[1].trim()}: skipped`);
  while (skipped.length < count('skipped') + count('todo')) skipped.push('(a vitest test): skipped');
  return { passed: count('passed'), failed: count('failed'), skipped };
};

const kvmWhere = kvmHere ? 'this host, its /dev/kvm' : 'the KVM lab';
// A hung test fails after 10 minutes instead of holding the run until CI's limit.
const specs = (dir) => ['--test', '--test-reporter=tap', '--test-timeout=600000', join('dist', 'test', 'specs', dir)];

// What both sides need first: the test guest, the native test binary, the Linux boot files
// (the lab has no network, so anything fetched is fetched here). The sanitizer build goes
// first on purpose: run beside the lab's specs it slowed them by half (the command-line
// spec then overran its 10 minutes), which cost more than it saved.
const ready =
  (await stage('test guest build', 'this host', none, () =>
    run('make', ['-s', jobs, '-C', 'test/guest', `OUT=${join(root, 'build', 'guest')}`]),
  )) &&
  (await stage('native unit tests: build (ASan + UBSan)', 'this host', none, () =>
    run('make', ['-s', jobs, '-C', 'native/tests', `OUT=${join(root, 'native', 'build', 'tests')}`, nativeTests]),
  )) &&
  (await stage('Linux boot files (Debian cloud kernel, initramfs)', 'this host', none, () =>
    run(process.execPath, [join('dist', 'test', 'linux-boot', 'prepare.js')]),
  )) &&
  (await stage('firmware boot files (Debian installer ISO)', 'this host', none, () =>
    run(process.execPath, [join('dist', 'test', 'firmware', 'prepare.js')]),
  ));

if (ready) {
  const host = async () => {
    await stage(
      'native unit tests (ASan + UBSan)',
      kvmHere ? 'this host' : 'this host, without the TEST_KVM tests',
      plainCounts,
      () => run(nativeTests, kvmHere ? [] : ['--no-kvm'], '', true),
    );
    if (existsSync(join(root, 'native', 'fuzz', 'Makefile'))) {
      await stage('native fuzzing (bounded, ASan + UBSan)', 'this host', plainCounts, () =>
        run('make', ['-s', jobs, '-C', 'native/fuzz', 'ci'], '', true),
      );
    }
    await stage('renderer component tests (vitest + happy-dom)', 'this host', vitestCounts, () =>
      run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'renderer/vite.config.mjs']),
    );
    await stage('specs that need no KVM (test/specs/host)', 'this host', tapCounts, () =>
      run(process.execPath, specs('host')),
    );
  };
  // On this host the KVM stages share the CPU with the host's; in the lab they overlap.
  const kvm = async () => {
    if (!kvmHere) {
      await stage(
        'native unit tests that need KVM (TEST_KVM)',
        kvmWhere,
        plainCounts,
        () => runWithKvm(nativeTests, ['--kvm'], '[kvm] ', 600),
        '[kvm] ',
      );
    }
    await stage(
      'specs on the real KVM (test/specs/kvm)',
      kvmWhere,
      tapCounts,
      () =>
        kvmHere
          ? run(process.execPath, specs('kvm'), '')
          : kvmSpecsInLab(join('dist', 'test', 'specs', 'kvm'), KVM_STAGE_S),
      kvmHere ? '' : '[kvm] ',
    );
  };
  if (kvmHere) {
    await host();
    await kvm();
  } else {
    await Promise.all([host(), kvm()]);
  }
}

console.log('\n=== summary');
let passed = 0;
let failed = 0;
const skipped = [];
for (const s of stages) {
  const skip = s.skipped.length ? `, ${s.skipped.length} skipped` : '';
  console.log(
    `${s.name} [${s.where}]: ${s.passed} passed, ${s.failed} failed${skip}${s.status !== 0 ? ` (exit ${s.status})` : ''}`,
  );
  passed += s.passed;
  failed += s.failed;
  skipped.push(...s.skipped.map((why) => `${s.name}: ${why}`));
}
for (const s of stages.filter((x) => x.failures.length > 0)) {
  console.log(`failed in ${s.name}:`);
  for (const f of s.failures) console.log(f);
}
for (const s of skipped) console.log(`skipped: ${s}`);
if (ci && skipped.length > 0) {
  console.log(`CI runs everything: ${skipped.length} skipped test(s) above fail this run; install what they name`);
  failed += skipped.length;
}
console.log(`${passed} passed, ${failed} failed, ${skipped.length} skipped`);
process.exit(failed === 0 && stages.every((s) => s.status === 0) ? 0 : 1);
