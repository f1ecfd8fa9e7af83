// Builds the freestanding PVH test guest (test/guest) once per process and returns its
// path. The build is incremental, so calling this from every spec file is cheap.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const repoRoot = join(__dirname, '..', '..', '..');
const guestDir = join(repoRoot, 'test', 'guest');
const outDir = join(repoRoot, 'build', 'guest');
let built: string | undefined;

export function testGuestPath(): string {
  if (built) return built;
  execFileSync('make', ['-s', '-C', guestDir, `OUT=${outDir}`], { stdio: 'inherit' });
  const path = join(outDir, 'berth-test-guest.elf');
  if (!existsSync(path)) throw new Error(`the test guest build did not produce ${path}`);
  built = path;
  return path;
}
