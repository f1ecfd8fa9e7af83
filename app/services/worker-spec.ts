// Turns a VM's configuration into the worker's machine spec (run/machine.json) at start:
// disks in slot order with passthrough devices resolved by stable id to their /dev path,
// network adapters with their stable MACs. Anything the host cannot provide now fails the
// start here, with a message that says what to attach or remove.
import type { z } from 'zod';
import { BerthError, WORKER_SPEC_VERSION, WorkerSpec, type VmConfig, type WorkerKernelBoot } from '../api';
import { resolveStableId } from '../native/host-disks';

function disks(config: VmConfig): WorkerSpec['disks'] {
  return [...config.disks]
    .sort((a, b) => a.slot - b.slot)
    .map((d) => {
      // The guest reads the slot as the disk's serial.
      const serial = `berth-slot-${d.slot}`;
      if (d.kind === 'virtual') return { path: d.path, readOnly: d.readOnly, serial };
      const devicePath = resolveStableId(d.deviceId);
      if (devicePath === null) {
        throw new BerthError(
          'START_FAILED',
          `passthrough disk ${d.deviceId} (slot ${d.slot}) is not attached to this host; ` +
            "attach it or remove it from the VM ('berth host disks' lists the devices)",
        );
      }
      return { path: devicePath, readOnly: d.readOnly, serial, format: 'host-device' as const };
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

export function toWorkerSpec(config: VmConfig): WorkerSpec {
  if (config.boot.kind === 'firmware') {
    throw new BerthError('UNSUPPORTED', `'${config.name}' boots from firmware, which this VMM cannot do yet`);
  }
  const boot: z.infer<typeof WorkerKernelBoot> = { kernelPath: config.boot.kernelPath, cmdline: config.boot.cmdline };
  if (config.boot.initrdPath !== undefined) boot.initrdPath = config.boot.initrdPath;
  // Parsed here too, so a spec the worker would refuse fails in the services, naming the field.
  return WorkerSpec.parse({
    specVersion: WORKER_SPEC_VERSION,
    vmId: config.id,
    name: config.name,
    memoryMiB: config.memory.startupMiB,
    vcpus: config.processors.count,
    boot,
    testExitPort: config.testExitPort,
    com1: config.com1.enabled,
    disks: disks(config),
    nics: nics(config),
  });
}
