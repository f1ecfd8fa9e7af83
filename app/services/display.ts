// The graphical console of Generation 1 and 2 VMs: their display, which the worker serves
// over VNC on the run folder's display socket, and screenshots of it (`berth vm screenshot`).
import { resolve } from 'node:path';

import { BerthError } from '../api';
import type { VmManager } from './manager';

export class DisplayService {
  constructor(private readonly manager: VmManager) {}

  // Writes what the VM's display shows now to `file` as PNG; returns the absolute path.
  async screenshot(ref: string, file: string): Promise<string> {
    const path = resolve(file);
    if (!path.toLowerCase().endsWith('.png')) {
      throw new BerthError('INVALID_ARGUMENT', `a screenshot is a PNG file: name it .png (not ${path})`);
    }
    const vm = await this.manager.show(ref);
    const boot = vm.config.boot;
    if (boot.kind !== 'bios' && boot.kind !== 'uefi') {
      throw new BerthError(
        'INVALID_STATE',
        `'${vm.name}' has no display: it boots a Linux kernel directly and has only its serial console ` +
          '(Generation 1 and 2 VMs have a display)',
      );
    }
    if (!boot.display) {
      throw new BerthError(
        'INVALID_STATE',
        `'${vm.name}' has no display: it is off in its settings (serial console only); turn it on with ` +
          `berth vm set ${vm.name} --display on while the VM is off`,
      );
    }
    if (vm.state !== 'Running' && vm.state !== 'Paused') {
      throw new BerthError(
        'INVALID_STATE',
        `cannot take a screenshot of '${vm.name}': it is ${vm.state}; start it first`,
      );
    }
    const { client } = await this.manager.running(vm.id, 'save');
    try {
      await client.request({ op: 'screenshot', path });
    } catch (err) {
      const body = err instanceof BerthError ? err : new BerthError('INTERNAL', String(err));
      throw new BerthError(body.code, `cannot take a screenshot of '${vm.name}': ${body.message}`);
    } finally {
      client.close();
    }
    return path;
  }
}
