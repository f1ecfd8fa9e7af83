// Checks the native layering of docs/ARCHITECTURE.md: every #include "folder/..." in a
// native module must name a folder that module may depend on.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const native = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native');

// module -> modules it may include (itself is always allowed).
const allowed = {
  common: [],
  hv: ['common'],
  'hv/kvm': ['hv', 'common'],
  // picks the host's backend
  'hv/host': ['hv', 'hv/kvm', 'common'],
  vmm: ['hv', 'common', 'disk'],
  devices: ['vmm', 'hv', 'common', 'disk'],
  boot: ['vmm', 'hv', 'common'],
  disk: ['common'],
  machine: ['vmm', 'devices', 'boot', 'hv', 'common', 'disk'],
  // the graphical console's VNC server: reads a display, feeds input (part of berth-vmm)
  vnc: ['devices', 'common'],
  // the per-VM worker: control socket, protocol, machine spec (part of berth-vmm)
  worker: ['vnc', 'machine', 'devices', 'common'],
  runner: ['worker', 'vnc', 'machine', 'vmm', 'devices', 'boot', 'hv', 'common', 'disk'],
  binding: ['machine', 'vmm', 'devices', 'boot', 'hv', 'common', 'disk'],
  // tests and fuzz harnesses may include anything
};

function moduleOf(file) {
  const rel = relative(native, dirname(file)).split('\\').join('/');
  if (rel.startsWith('hv/')) return rel.split('/').slice(0, 2).join('/');
  return rel.split('/')[0];
}

function* sources(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name === 'build' || name === 'node_modules') continue;
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (/\.(cc|h)$/.test(name)) yield path;
  }
}

const problems = [];
for (const file of sources(native)) {
  const mod = moduleOf(file);
  if (!(mod in allowed)) continue;
  const text = readFileSync(file, 'utf8');
  for (const [, target] of text.matchAll(/^#include "([^"]+)"/gm)) {
    const parts = target.split('/');
    const targetMod = parts[0] === 'hv' && parts.length > 2 ? `hv/${parts[1]}` : parts[0];
    if (targetMod === mod) continue;
    if (!allowed[mod].includes(targetMod)) {
      problems.push(
        `${relative(native, file)}: includes "${target}", but native/${mod} may not depend on native/${targetMod}`,
      );
    }
  }
  if (mod !== 'binding' && /#include <napi\.h>|#include "napi\.h"/.test(text)) {
    problems.push(`${relative(native, file)}: only native/binding may include napi.h`);
  }
}
if (problems.length) {
  console.error(`native layering violations:\n${problems.join('\n')}`);
  process.exit(1);
}
console.log('native layering ok');
