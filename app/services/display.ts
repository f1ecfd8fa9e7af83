// The graphical console of Generation 1 and 2 VMs: their display, which the worker serves
// over VNC on the run folder's display socket, screenshots of it (`berth vm screenshot`) and
// the Details pane's thumbnails.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';

import { BerthError, type Thumbnail, type VmDetails } from '../api';
import type { VmManager } from './manager';

// The thumbnail's width in pixels: the Details pane shows it 120 wide, twice that on a
// high-density screen, and the picture stays a few kilobytes.
export const THUMBNAIL_WIDTH = 320;

export class DisplayService {
  constructor(private readonly manager: VmManager) {}

  // Writes what the VM's display shows now to `file` as PNG; returns the absolute path.
  async screenshot(ref: string, file: string): Promise<string> {
    const path = resolve(file);
    if (!path.toLowerCase().endsWith('.png')) {
      throw new BerthError('INVALID_ARGUMENT', `a screenshot is a PNG file: name it .png (not ${path})`);
    }
    const vm = await this.withDisplay(ref, 'take a screenshot of');
    await this.capture(vm, 'take a screenshot of', path);
    return path;
  }

  // What the VM's display shows now, THUMBNAIL_WIDTH pixels wide at most, as PNG.
  async thumbnail(ref: string): Promise<Thumbnail> {
    const vm = await this.withDisplay(ref, 'show the screen of');
    // A file of its own in the run folder (0700): windows may ask at the same time.
    const path = join(vm.folder, 'run', `thumbnail-${randomUUID()}.png`);
    try {
      await this.capture(vm, 'show the screen of', path, THUMBNAIL_WIDTH);
      return { png: (await fs.readFile(path)).toString('base64') };
    } finally {
      await fs.rm(path, { force: true });
    }
  }

  // The VM, when it has a display that shows something now; refusals say why not.
  private async withDisplay(ref: string, action: string): Promise<VmDetails> {
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
      throw new BerthError('INVALID_STATE', `cannot ${action} '${vm.name}': it is ${vm.state}; start it first`);
    }
    return vm;
  }

  private async capture(vm: VmDetails, action: string, path: string, maxWidth?: number): Promise<void> {
    const { client } = await this.manager.running(vm.id, 'save');
    try {
      await client.request(maxWidth === undefined ? { op: 'screenshot', path } : { op: 'screenshot', path, maxWidth });
    } catch (err) {
      const body = err instanceof BerthError ? err : new BerthError('INTERNAL', String(err));
      throw new BerthError(body.code, `cannot ${action} '${vm.name}': ${body.message}`);
    } finally {
      client.close();
    }
  }
}
