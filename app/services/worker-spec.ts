// Turns a VM's configuration into the worker's machine spec (run/machine.json) at start:
// disks in slot order with passthrough devices resolved by stable id to their /dev path,
// network adapters with their stable MACs; a Generation 1 or 2 VM's firmware files (found by
// prepareFirmware, firmware.ts), boot order and DVD drives in slot order. Anything the host
// cannot provide now fails the start here, with a message that says what to attach or remove.
import { resolve } from 'node:path';
import type { z } from 'zod';
import {
  BerthError,
  WORKER_SPEC_VERSION,
  WorkerSpec,
  type VmConfig,
  type WorkerFirmwareBoot,
  type WorkerKernelBoot,
} from '../api';
import { resolveStableId } from '../native/host-disks';
import type { StartFirmware } from './firmware';

function disks(config: VmConfig): WorkerSpec['disks'] {
  return [...config.disks]
    .sort((a, b) => a.slot - b.slot)
    .map((d) => {
      // The guest reads the slot as the disk's serial.
      const serial = `berth-slot-${d.slot}`;
      const on = d.controller === 'scsi' ? { controller: 'scsi' as const } : {};
      if (d.kind === 'virtual') return { path: d.path, readOnly: d.readOnly, serial, ...on };
      const devicePath = resolveStableId(d.deviceId);
      if (devicePath === null) {
        throw new BerthError(
          'START_FAILED',
          `passthrough disk ${d.deviceId} (slot ${d.slot}) is not attached to this host; ` +
            "attach it or remove it from the VM ('berth host disks' lists the devices)",
        );
      }
      return { path: devicePath, readOnly: d.readOnly, serial, format: 'host-device' as const, ...on };
    });
}

// NAT through libslirp; a bridged adapter is a tap device the worker creates and joins to
// the named bridge.
function nics(config: VmConfig): WorkerSpec['nics'] {
  return config.network.map((n) =>
    n.kind === 'nat'
      ? {
          kind: 'nat',
          mac: n.mac,
          restricted: n.restricted ?? false,
          portForwards: (n.portForwards ?? []).map((f) => ({ ...f })),
        }
      : { kind: 'tap', mac: n.mac, restricted: false, portForwards: [], ...(n.bridge ? { bridge: n.bridge } : {}) },
  );
}

function boot(config: VmConfig, firmware: StartFirmware | undefined): WorkerSpec['boot'] {
  const b = config.boot;
  if (b.kind === 'pvh' || b.kind === 'linux') {
    const kernel: z.infer<typeof WorkerKernelBoot> = { kernelPath: b.kernelPath, cmdline: b.cmdline };
    if (b.initrdPath !== undefined) kernel.initrdPath = b.initrdPath;
    return kernel;
  }
  if (!firmware) throw new BerthError('INTERNAL', `'${config.name}' boots firmware, but none was found for it`);
  const bootOrder = [...b.bootOrder];
  // A Generation 1 or 2 VM has a display unless its settings turn it off.
  if (b.kind === 'bios') {
    const bios: z.infer<typeof WorkerFirmwareBoot> = {
      firmware: { kind: 'bios', codePath: firmware.codePath, bootOrder, display: b.display },
    };
    if (firmware.displayRomPath !== undefined && bios.firmware.kind === 'bios') {
      bios.firmware.displayRomPath = firmware.displayRomPath;
    }
    return bios;
  }
  if (firmware.varsPath === undefined) {
    throw new BerthError('INTERNAL', `'${config.name}' is a UEFI VM without a variable store`);
  }
  const fw: z.infer<typeof WorkerFirmwareBoot> = {
    firmware: { kind: 'uefi', codePath: firmware.codePath, varsPath: firmware.varsPath, bootOrder, display: b.display },
  };
  return fw;
}

// folder: the VM's folder (relative DVD image paths are resolved there, as the worker's
// working directory is).
export function toWorkerSpec(config: VmConfig, firmware?: StartFirmware, folder = '.'): WorkerSpec {
  const spec: z.input<typeof WorkerSpec> = {
    specVersion: WORKER_SPEC_VERSION,
    vmId: config.id,
    name: config.name,
    memoryMiB: config.memory.startupMiB,
    vcpus: config.processors.count,
    boot: boot(config, firmware),
    testExitPort: config.testExitPort,
    com1: config.com1.enabled,
    disks: disks(config),
    nics: nics(config),
  };
  if (config.boot.kind === 'uefi' || config.boot.kind === 'bios') {
    // In slot order: the media request names a drive by its index here.
    spec.dvds = [...config.dvdDrives]
      .sort((a, b) => a.slot - b.slot)
      .map((d) => ({ path: d.path === undefined ? '' : resolve(folder, d.path) }));
  }
  // Parsed here too, so a spec the worker would refuse fails in the services, naming the field.
  return WorkerSpec.parse(spec);
}
