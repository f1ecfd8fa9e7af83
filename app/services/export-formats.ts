// A VM's configuration in other tools' words: libvirt domain XML (checked by
// virt-xml-validate in the export spec) and the OVF 2.0 envelope's hardware section. Both
// carry the generation (firmware: UEFI with its variable store and Secure Boot, or BIOS),
// the boot order, the DVD drives and SCSI disks (on a virtio-scsi controller), disks and adapters.
import { existsSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';

import { type BootDevice, type VmConfig } from '../api';
import { FIRMWARE_IMAGES, firmwareDirs, varsTemplate } from './firmware';
import { VmPaths } from './paths';

export function xmlEscape(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c,
  );
}

// Where this host has a firmware image (Debian's place when it has none).
function hostFirmware(file: string): string {
  for (const dir of firmwareDirs()) if (existsSync(join(dir, file))) return join(dir, file);
  return join('/usr/share/OVMF', file);
}

// The SCSI target of each SCSI disk and DVD drive (by slot), as the machine numbers them:
// the SCSI disks in slot order from target 0, then the DVD drives in slot order.
export function scsiTargets(c: VmConfig): { disks: Map<number, number>; dvds: Map<number, number>; count: number } {
  const disks = new Map<number, number>();
  const dvds = new Map<number, number>();
  let next = 0;
  for (const d of [...c.disks].sort((a, b) => a.slot - b.slot)) if (d.controller === 'scsi') disks.set(d.slot, next++);
  for (const d of [...c.dvdDrives].sort((a, b) => a.slot - b.slot)) dvds.set(d.slot, next++);
  return { disks, dvds, count: next };
}

const libvirtBootDev: Record<BootDevice, string> = { dvd: 'cdrom', disk: 'hd', network: 'network' };

function libvirtOs(c: VmConfig, folder: string): string[] {
  const b = c.boot;
  if (b.kind === 'pvh' || b.kind === 'linux') {
    const l = [`  <os>`, `    <type arch="x86_64" machine="microvm">hvm</type>`];
    l.push(`    <kernel>${xmlEscape(b.kernelPath)}</kernel>`);
    if (b.initrdPath) l.push(`    <initrd>${xmlEscape(b.initrdPath)}</initrd>`);
    if (b.cmdline) l.push(`    <cmdline>${xmlEscape(b.cmdline)}</cmdline>`);
    return [...l, `  </os>`];
  }
  const boots = b.bootOrder.map((d) => `    <boot dev="${libvirtBootDev[d]}"/>`);
  if (b.kind === 'bios') {
    // libvirt's default firmware for x86 is SeaBIOS, as Berth's Generation 1.
    return [`  <os>`, `    <type arch="x86_64" machine="q35">hvm</type>`, ...boots, `  </os>`];
  }
  const on = b.secureBoot ? 'yes' : 'no';
  const code = hostFirmware(FIRMWARE_IMAGES.uefiCode.file);
  const template = hostFirmware(varsTemplate(b.secureBoot).file);
  return [
    `  <os firmware="efi">`,
    `    <type arch="x86_64" machine="q35">hvm</type>`,
    `    <firmware>`,
    `      <feature enabled="${on}" name="enrolled-keys"/>`,
    `      <feature enabled="${on}" name="secure-boot"/>`,
    `    </firmware>`,
    `    <loader readonly="yes" type="pflash">${xmlEscape(code)}</loader>`,
    `    <nvram template="${xmlEscape(template)}">${xmlEscape(new VmPaths(resolve(folder)).uefiVars)}</nvram>`,
    ...boots,
    `  </os>`,
  ];
}

export function toLibvirt(c: VmConfig, folder: string): string {
  const l: string[] = [];
  l.push(`<domain type="kvm">`);
  l.push(`  <name>${xmlEscape(c.name)}</name>`);
  l.push(`  <uuid>${c.id}</uuid>`);
  if (c.notes) l.push(`  <description>${xmlEscape(c.notes)}</description>`);
  l.push(`  <memory unit="MiB">${c.memory.startupMiB}</memory>`);
  l.push(`  <currentMemory unit="MiB">${c.memory.startupMiB}</currentMemory>`);
  l.push(`  <vcpu placement="static">${c.processors.count}</vcpu>`);
  l.push(...libvirtOs(c, folder));
  if (c.boot.kind === 'uefi' || c.boot.kind === 'bios') {
    l.push(`  <features>`, `    <acpi/>`, `  </features>`);
  }
  l.push(`  <on_poweroff>destroy</on_poweroff>`);
  l.push(`  <on_reboot>restart</on_reboot>`);
  l.push(`  <on_crash>destroy</on_crash>`);
  l.push(`  <devices>`);
  // Berth's SCSI controller has one target per device, LUN 0: the SCSI disks first, then
  // the DVD drives, each in slot order (native/machine/machine.h).
  const scsi = scsiTargets(c);
  for (const d of c.disks) {
    const target = scsi.disks.get(d.slot);
    const dev =
      target === undefined ? `vd${String.fromCharCode(97 + (d.slot % 26))}` : `sd${String.fromCharCode(97 + target)}`;
    if (d.kind === 'virtual') {
      const ext = extname(d.path).slice(1);
      l.push(`    <disk type="file" device="disk">`);
      if (ext === 'vhdx') {
        // libvirt's schema has no name for VHDX (QEMU reads it); convert for libvirt.
        l.push(`      <!-- VHDX: convert with 'berth disk convert' to qcow2 for libvirt -->`);
        l.push(`      <driver name="qemu"/>`);
      } else {
        l.push(`      <driver name="qemu" type="${ext === 'qcow2' ? 'qcow2' : ext === 'vhd' ? 'vpc' : 'raw'}"/>`);
      }
      l.push(`      <source file="${xmlEscape(resolve(folder, d.path))}"/>`);
    } else {
      l.push(`    <disk type="block" device="disk">`);
      l.push(`      <driver name="qemu" type="raw"/>`);
      l.push(`      <source dev="${xmlEscape(`/dev/disk/by-id/${d.deviceId}`)}"/>`);
    }
    l.push(`      <target dev="${dev}" bus="${target === undefined ? 'virtio' : 'scsi'}"/>`);
    if (d.readOnly) l.push(`      <readonly/>`);
    l.push(`      <serial>berth-slot-${d.slot}</serial>`);
    if (target !== undefined)
      l.push(`      <address type="drive" controller="0" bus="0" target="${target}" unit="0"/>`);
    l.push(`    </disk>`);
  }
  if (scsi.count > 0) l.push(`    <controller type="scsi" index="0" model="virtio-scsi"/>`);
  for (const d of [...c.dvdDrives].sort((a, b) => a.slot - b.slot)) {
    const target = scsi.dvds.get(d.slot) ?? 0;
    l.push(`    <disk type="file" device="cdrom">`);
    l.push(`      <driver name="qemu" type="raw"/>`);
    if (d.path !== undefined) l.push(`      <source file="${xmlEscape(resolve(folder, d.path))}"/>`);
    l.push(`      <target dev="sd${String.fromCharCode(97 + target)}" bus="scsi"/>`);
    l.push(`      <readonly/>`);
    l.push(`      <address type="drive" controller="0" bus="0" target="${target}" unit="0"/>`);
    l.push(`    </disk>`);
  }
  for (const n of c.network) {
    if (n.kind === 'bridge') {
      l.push(`    <interface type="bridge">`);
      l.push(`      <mac address="${n.mac}"/>`);
      l.push(`      <source bridge="${xmlEscape(n.bridge ?? '')}"/>`);
    } else {
      l.push(`    <interface type="user">`);
      l.push(`      <mac address="${n.mac}"/>`);
    }
    l.push(`      <model type="virtio"/>`);
    l.push(`    </interface>`);
  }
  if (c.com1.enabled) {
    l.push(`    <serial type="pty">`);
    l.push(`      <target port="0"/>`);
    l.push(`    </serial>`);
    l.push(`    <console type="pty">`);
    l.push(`      <target type="serial" port="0"/>`);
    l.push(`    </console>`);
  }
  // The display: QEMU's bochs-display is the same device, served over VNC as Berth serves it.
  if ((c.boot.kind === 'uefi' || c.boot.kind === 'bios') && c.boot.display) {
    l.push(`    <graphics type="vnc" autoport="yes" listen="127.0.0.1"/>`);
    l.push(`    <video>`);
    l.push(`      <model type="bochs" vram="16384"/>`);
    l.push(`    </video>`);
  }
  l.push(`  </devices>`);
  l.push(`</domain>`);
  return `${l.join('\n')}\n`;
}

export interface OvfDiskFile {
  id: string;
  href: string;
  size: number;
  capacity: number;
  slot: number;
}

// The envelope naming the flattened disks `files` (written beside it by ExportService.ovf).
export function ovfEnvelope(c: VmConfig, files: OvfDiskFile[]): string {
  const items: string[] = [];
  let instance = 1;
  const item = (body: string[]): void => {
    items.push(`      <Item>`, ...body.map((b) => `        ${b}`), `      </Item>`);
  };
  item([
    `<rasd:Description>Number of virtual CPUs</rasd:Description>`,
    `<rasd:ElementName>${c.processors.count} virtual CPU(s)</rasd:ElementName>`,
    `<rasd:InstanceID>${instance++}</rasd:InstanceID>`,
    `<rasd:ResourceType>3</rasd:ResourceType>`,
    `<rasd:VirtualQuantity>${c.processors.count}</rasd:VirtualQuantity>`,
  ]);
  item([
    `<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>`,
    `<rasd:Description>Memory Size</rasd:Description>`,
    `<rasd:ElementName>${c.memory.startupMiB} MiB of memory</rasd:ElementName>`,
    `<rasd:InstanceID>${instance++}</rasd:InstanceID>`,
    `<rasd:ResourceType>4</rasd:ResourceType>`,
    `<rasd:VirtualQuantity>${c.memory.startupMiB}</rasd:VirtualQuantity>`,
  ]);
  // A SCSI controller (ResourceType 6) when the VM has SCSI disks or DVD drives; each sits
  // on it at its target number (SCSI disks, then DVD drives; see scsiTargets).
  const scsi = scsiTargets(c);
  const controller = scsi.count > 0 ? instance++ : 0;
  if (scsi.count > 0) {
    item([
      `<rasd:Address>0</rasd:Address>`,
      `<rasd:ElementName>SCSI controller</rasd:ElementName>`,
      `<rasd:InstanceID>${controller}</rasd:InstanceID>`,
      `<rasd:ResourceSubType>virtio-scsi</rasd:ResourceSubType>`,
      `<rasd:ResourceType>6</rasd:ResourceType>`,
    ]);
  }
  for (const f of files) {
    const target = scsi.disks.get(f.slot);
    item([
      `<rasd:AddressOnParent>${target ?? f.slot}</rasd:AddressOnParent>`,
      `<rasd:ElementName>disk${f.slot}</rasd:ElementName>`,
      `<rasd:HostResource>ovf:/disk/vmdisk${f.slot}</rasd:HostResource>`,
      `<rasd:InstanceID>${instance++}</rasd:InstanceID>`,
      ...(target === undefined ? [] : [`<rasd:Parent>${controller}</rasd:Parent>`]),
      `<rasd:ResourceType>17</rasd:ResourceType>`,
    ]);
  }
  // DVD drives (16): images are not part of the package; an inserted one is named by its
  // host path.
  for (const d of [...c.dvdDrives].sort((a, b) => a.slot - b.slot)) {
    item([
      `<rasd:AddressOnParent>${scsi.dvds.get(d.slot) ?? 0}</rasd:AddressOnParent>`,
      `<rasd:AutomaticAllocation>${d.path !== undefined}</rasd:AutomaticAllocation>`,
      `<rasd:ElementName>DVD drive ${d.slot}</rasd:ElementName>`,
      ...(d.path !== undefined ? [`<rasd:HostResource>file://${xmlEscape(d.path)}</rasd:HostResource>`] : []),
      `<rasd:InstanceID>${instance++}</rasd:InstanceID>`,
      `<rasd:Parent>${controller}</rasd:Parent>`,
      `<rasd:ResourceType>16</rasd:ResourceType>`,
    ]);
  }
  for (const n of c.network) {
    item([
      `<rasd:Address>${n.mac}</rasd:Address>`,
      `<rasd:Connection>${n.kind === 'bridge' ? xmlEscape(n.bridge ?? '') : 'nat'}</rasd:Connection>`,
      `<rasd:ElementName>virtio-net</rasd:ElementName>`,
      `<rasd:InstanceID>${instance++}</rasd:InstanceID>`,
      `<rasd:ResourceType>10</rasd:ResourceType>`,
    ]);
  }
  // The firmware: VMware's and VirtualBox's readers take vmw:Config firmware=efi|bios; Berth
  // records Secure Boot and the boot order in its own optional element.
  const firmware: string[] = [];
  const b = c.boot;
  if (b.kind === 'uefi' || b.kind === 'bios') {
    firmware.push(
      `      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="${b.kind === 'uefi' ? 'efi' : 'bios'}"/>`,
    );
    if (b.kind === 'uefi') {
      firmware.push(
        `      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="${b.secureBoot}"/>`,
      );
    }
    firmware.push(
      `      <berth:Firmware ovf:required="false" berth:type="${b.kind}"` +
        (b.kind === 'uefi' ? ` berth:secureBoot="${b.secureBoot}"` : '') +
        ` berth:bootOrder="${b.bootOrder.join(',')}" berth:display="${b.display}"/>`,
    );
  }
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/2"`,
    `    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"`,
    `    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"`,
    `    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"`,
    `    xmlns:vmw="http://www.vmware.com/schema/ovf"`,
    `    xmlns:berth="urn:berth:ovf:1">`,
    `  <References>`,
    ...files.map((f) => `    <File ovf:id="${f.id}" ovf:href="${f.href}" ovf:size="${f.size}"/>`),
    `  </References>`,
    `  <DiskSection>`,
    `    <Info>Virtual disks (qcow2, standalone)</Info>`,
    ...files.map(
      (f) =>
        `    <Disk ovf:diskId="vmdisk${f.slot}" ovf:fileRef="${f.id}" ovf:capacity="${f.capacity}" ` +
        `ovf:format="https://www.qemu.org/docs/master/interop/qcow2.html"/>`,
    ),
    `  </DiskSection>`,
    `  <NetworkSection>`,
    `    <Info>Networks</Info>`,
    ...[...new Set(c.network.map((n) => (n.kind === 'bridge' ? (n.bridge ?? '') : 'nat')))].map(
      (n) => `    <Network ovf:name="${xmlEscape(n)}"><Description>${xmlEscape(n)}</Description></Network>`,
    ),
    `  </NetworkSection>`,
    `  <VirtualSystem ovf:id="${xmlEscape(c.name)}">`,
    `    <Info>${xmlEscape(c.notes || c.name)}</Info>`,
    `    <Name>${xmlEscape(c.name)}</Name>`,
    `    <VirtualHardwareSection>`,
    `      <Info>Virtual hardware requirements</Info>`,
    `      <System>`,
    `        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>`,
    `        <vssd:InstanceID>0</vssd:InstanceID>`,
    `        <vssd:VirtualSystemIdentifier>${c.id}</vssd:VirtualSystemIdentifier>`,
    `        <vssd:VirtualSystemType>berth-1</vssd:VirtualSystemType>`,
    `      </System>`,
    ...items,
    ...firmware,
    `    </VirtualHardwareSection>`,
    `  </VirtualSystem>`,
    `</Envelope>`,
    '',
  ].join('\n');
}
