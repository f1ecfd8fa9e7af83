// Runs the whole test suite after the build: native unit tests (ASan + UBSan), the
// bounded fuzz runs, and the TypeScript specs on this machine's real KVM. Prints each
// stage's counts and one closing "N passed, N failed" line.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function run(command, args, options = {}) {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...options });
    for (const stream of [child.stdout, child.stderr]) {
      stream.on('data', (chunk) => {
        output += chunk;
        process.stdout.write(chunk);
      });
    }
    child.on('close', (status, signal) => resolve({ status: status ?? 1, signal, output }));
  });
}

const stages = [];

async function stage(name, command, args, parse) {
  console.log(`\n=== ${name}`);
  const r = await run(command, args);
  const counts = parse(r.output);
  if (r.status !== 0 && counts.failed === 0) counts.failed = 1; // a crash or build failure counts
  stages.push({ name, ...counts, status: r.status });
}

const plainCounts = (text) => {
  const m = [...text.matchAll(/^(\d+) passed, (\d+) failed/gm)].pop();
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : { passed: 0, failed: 0 };
};
const tapCounts = (text) => ({
  passed: Number([...text.matchAll(/^# pass (\d+)/gm)].pop()?.[1] ?? 0),
  failed: Number([...text.matchAll(/^# fail (\d+)/gm)].pop()?.[1] ?? 0),
});

await stage('test guest build', 'make', ['-s', '-C', 'test/guest', `OUT=${join(root, 'build', 'guest')}`], () => ({
  passed: 0,
  failed: 0,
}));
await stage(
  'native unit tests (ASan + UBSan)',
  'make',
  ['-s', '-C', 'native/tests', `OUT=${join(root, 'native', 'build', 'tests')}`],
  plainCounts,
);
if (existsSync(join(root, 'native', 'fuzz', 'Makefile'))) {
  await stage('native fuzzing (bounded, ASan + UBSan)', 'make', ['-s', '-C', 'native/fuzz', 'ci'], plainCounts);
}
await stage(
  'renderer component tests (vitest + happy-dom)',
  process.execPath,
  ['node_modules/vitest/vitest.mjs', 'run', '--config', 'renderer/vite.config.mjs'],
  (text) => {
    // eslint-disable-next-line no-control-regex
    const plain = text.replace(/\x1b\[[0-9;]*m/g, '');
    const line = [...plain.matchAll(/^\s*Tests\s+(.*)$/gm)].pop()?.[1] ?? '';
    return { passed: Number(/(\d+) passed/.exec(line)?.[1] ?? 0), failed: Number(/(\d+) failed/.exec(line)?.[1] ?? 0) };
  },
);
await stage(
  'TypeScript specs on the real KVM',
  process.execPath,
  ['--test', '--test-reporter=tap', 'dist/test/specs/'],
  tapCounts,
);

console.log('\n=== summary');
let passed = 0;
let failed = 0;
for (const s of stages) {
  console.log(`${s.name}: ${s.passed} passed, ${s.failed} failed${s.status !== 0 ? ` (exit ${s.status})` : ''}`);
  passed += s.passed;
  failed += s.failed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && stages.every((s) => s.status === 0) ? 0 : 1);
