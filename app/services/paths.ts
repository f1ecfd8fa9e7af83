// Where Berth keeps its data: BERTH_HOME, else the platform's data folder.
import { homedir } from 'node:os';
import { join } from 'node:path';

import { FIRMWARE_FILES, RUN_FILES, VM_FILES } from '../api';

export function defaultDataRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env['BERTH_HOME']) return env['BERTH_HOME'];
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'Berth');
  const xdg = env['XDG_DATA_HOME'];
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.local', 'share'), 'berth');
}

export class VmPaths {
  constructor(readonly folder: string) {}
  get config(): string {
    return join(this.folder, VM_FILES.config);
  }
  get disks(): string {
    return join(this.folder, VM_FILES.disks);
  }
  get checkpoints(): string {
    return join(this.folder, VM_FILES.checkpoints);
  }
  get state(): string {
    return join(this.folder, VM_FILES.state);
  }
  get firmware(): string {
    return join(this.folder, VM_FILES.firmware);
  }
  // The VM's UEFI variable store (Generation 2).
  get uefiVars(): string {
    return join(this.folder, VM_FILES.firmware, FIRMWARE_FILES.uefiVars);
  }
  get run(): string {
    return join(this.folder, VM_FILES.run);
  }
  runFile(name: keyof typeof RUN_FILES): string {
    return join(this.folder, VM_FILES.run, RUN_FILES[name]);
  }
}
