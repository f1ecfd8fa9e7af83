#!/usr/bin/env node
// Part of `npm run lint`: what is defined once in app/api must agree with native/.
// - Every error code native/ throws (the worker executable, native/worker, may also use the
//   services' codes: its errors travel over the control protocol) (berth::Error, SystemError, a helper taking the code
//   first, to_js_error) and every code app/native raises itself is in NATIVE_ERROR_CODES
//   (app/api/errors.ts); otherwise it would reach JavaScript as INTERNAL. A listed code
//   that nothing throws any more is reported too, so the list stays the truth.
// - MAX_VIRTIO_DEVICES (app/api/config.ts) is the number of virtio interrupts the machine
//   has (kVirtioIrqs in native/machine/machine.h).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
// Test code, fuzzers and the benchmark tool have their own codes; build output is not source.
const skip = new Set(['tests', 'fuzz', 'tools', 'build']);

function files(dir, exts) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (!skip.has(e.name)) out.push(...files(join(dir, e.name), exts));
    } else if (exts.some((x) => e.name.endsWith(x))) out.push(join(dir, e.name));
  }
  return out;
}

function listIn(file, name) {
  const text = readFileSync(join(root, file), 'utf8');
  const m = new RegExp(`(?:export )?const ${name} = \\[([^\\]]*)\\] as const`).exec(text);
  if (!m) throw new Error(`${file}: no ${name} list found`);
  return [...m[1].matchAll(/'([A-Z0-9_]+)'/g)].map((x) => x[1]);
}

const problems = [];
const listed = new Set(listIn('app/api/errors.ts', 'NATIVE_ERROR_CODES'));
// The worker executable answers over the control protocol, whose errors carry any code.
const service = new Set(listIn('app/api/errors.ts', 'SERVICE_ERROR_CODES'));
// So does the VNC server, which runs only inside it.
const speaksProtocol = (file) => file.startsWith('native/worker/') || file.startsWith('native/vnc/');

// A call whose first argument (after an N-API env) is an upper-case code literal.
const nativeCall = /\b(?:Error|SystemError|fail|to_js_error)\(\s*(?:env,\s*)?"([A-Z][A-Z0-9_]*)"/g;
const tsCall = /new NativeError\(\s*'([A-Z][A-Z0-9_]*)'/g;
const thrown = new Map();
const note = (code, where) => thrown.set(code, [...(thrown.get(code) ?? []), where]);
for (const f of files(join(root, 'native'), ['.cc', '.h'])) {
  for (const m of readFileSync(f, 'utf8').matchAll(nativeCall)) note(m[1], relative(root, f));
}
for (const f of files(join(root, 'app', 'native'), ['.ts'])) {
  for (const m of readFileSync(f, 'utf8').matchAll(tsCall)) note(m[1], relative(root, f));
}
for (const [code, where] of thrown) {
  if (!listed.has(code) && !(service.has(code) && where.every(speaksProtocol))) {
    problems.push(`${code} (thrown in ${[...new Set(where)].join(', ')}) is missing from NATIVE_ERROR_CODES`);
  }
}
for (const code of listed) {
  // INTERNAL is also what an unknown code becomes, so it is listed even if never thrown.
  if (!thrown.has(code) && code !== 'INTERNAL') {
    problems.push(`${code} is in NATIVE_ERROR_CODES but nothing in native/ or app/native throws it; remove it`);
  }
}

const machineH = readFileSync(join(root, 'native', 'machine', 'machine.h'), 'utf8');
const irqs = /kVirtioIrqs\[\]\s*=\s*\{([^}]*)\}/.exec(machineH);
const configTs = readFileSync(join(root, 'app', 'api', 'config.ts'), 'utf8');
const max = /export const MAX_VIRTIO_DEVICES = (\d+);/.exec(configTs);
if (!irqs || !max)
  problems.push('cannot find kVirtioIrqs (native/machine/machine.h) or MAX_VIRTIO_DEVICES (app/api/config.ts)');
else {
  const n = irqs[1].split(',').filter((x) => x.trim() !== '').length;
  if (n !== Number(max[1])) {
    problems.push(`MAX_VIRTIO_DEVICES is ${max[1]} but native/machine/machine.h has ${n} virtio interrupts`);
  }
}

if (problems.length > 0) {
  for (const p of problems) process.stderr.write(`check-error-codes: ${p}\n`);
  process.exit(1);
}
process.stdout.write(`check-error-codes: ${listed.size} native codes, MAX_VIRTIO_DEVICES agree with native/\n`);
