// Builds the native addon with node-gyp. Uses this machine's own Node headers when it has
// them (so nothing is downloaded); configure runs every time so new sources are picked up,
// and the build itself is incremental.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const common = ['--directory', join(root, 'native')];
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) {
  common.push('--nodedir=/usr');
}

function gypRun(...args) {
  const r = spawnSync(process.execPath, [gyp, ...args, ...common], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

gypRun('configure');
gypRun('build', `--jobs=${process.env.BERTH_JOBS ?? 'max'}`);
