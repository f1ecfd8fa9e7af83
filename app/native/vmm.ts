// Where berth-vmm, the per-VM worker executable, is: native/build/Release during
// development; when packaged it is unpacked next to the app, outside the asar archive
// (electron-builder.yml), since an executable inside an archive cannot be run.
import { join, sep } from 'node:path';

export function vmmPath(): string {
  const path = join(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'berth-vmm');
  return path.replace(`${sep}app.asar${sep}`, `${sep}app.asar.unpacked${sep}`);
}
