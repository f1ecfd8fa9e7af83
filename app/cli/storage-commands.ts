// `berth disk ...`, `berth checkpoint ...`, `berth export` and
// `berth import`.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { VIRTUAL_DISK_FORMATS, type CheckpointList, type VirtualDiskFormat } from '../api';
import { DiskService, exportCheckpoint } from '../services';
import { diskFormat, filePath, oneOf, parseBytes, str, UsageError } from './parse';
import { formatBytes, withProgress, type Command } from './command';

function inspectText(info: Awaited<ReturnType<DiskService['inspect']>>): string {
  return info.images
    .map((img, i) =>
      [
        `${i === 0 ? '' : 'parent: '}${img.path}`,
        `  format ${img.format} (${img.subformat}), virtual size ${formatBytes(img.virtualSize)} (${img.virtualSize} bytes),` +
          ` file ${formatBytes(img.fileSize)}, allocated ${formatBytes(img.allocatedBytes)}` +
          (img.dirty ? ', dirty' : '') +
          (img.corrupt ? ', CORRUPT' : ''),
      ].join('\n'),
    )
    .concat(
      info.ioPath
        ? [`I/O path in a VM: ${info.ioPath.backend}${info.ioPath.reason ? ` (${info.ioPath.reason})` : ''}`]
        : [],
    )
    .concat(info.chainError ? [`chain error: ${info.chainError.message}`] : [])
    .join('\n');
}

function extFormat(path: string): VirtualDiskFormat | undefined {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase();
  return ext === 'img'
    ? 'raw'
    : (VIRTUAL_DISK_FORMATS as readonly string[]).includes(ext ?? '')
      ? (ext as VirtualDiskFormat)
      : undefined;
}

export const diskCommands: Record<string, Command> = {
  new: {
    usage: 'berth disk new PATH --size SIZE [--format qcow2|vhdx|vhd|raw] [--fixed] [--parent PATH] [--json]',
    summary: 'create a virtual disk (qcow2 unless told; --parent makes a differencing disk)',
    positionals: ['PATH'],
    options: {
      size: { type: 'string' },
      format: { type: 'string' },
      fixed: { type: 'boolean' },
      parent: { type: 'string' },
    },
    run: async ({ disks, args, values, print }) => {
      const path = resolve(args[0] ?? '');
      const size = str(values, 'size');
      const parent = filePath(values, 'parent');
      if (size === undefined && parent === undefined) throw new UsageError('--size is required (or --parent)');
      const o: Parameters<DiskService['create']>[1] = {};
      if (size !== undefined) o.sizeBytes = parseBytes('--size', size);
      const format = diskFormat('format', str(values, 'format')) ?? extFormat(path);
      if (format !== undefined) o.format = format;
      if (values['fixed'] === true) o.fixed = true;
      if (parent !== undefined) o.parent = parent;
      const info = await disks.create(path, o);
      print(`created ${path}\n${inspectText(info)}`);
      return info;
    },
  },
  inspect: {
    usage: 'berth disk inspect PATH [--json]',
    summary: "show a disk's format, sizes and backing chain",
    positionals: ['PATH'],
    run: async ({ disks, args, print }) => {
      const info = await disks.inspect(args[0] ?? '');
      print(inspectText(info));
      return info;
    },
  },
  convert: {
    usage: 'berth disk convert SOURCE TARGET [--format qcow2|vhdx|vhd|raw] [--fixed] [--json]',
    summary: 'copy a disk (its whole chain) into a new standalone file of any format',
    positionals: ['SOURCE', 'TARGET'],
    options: { format: { type: 'string' }, fixed: { type: 'boolean' } },
    run: async (ctx) => {
      const [src = '', dst = ''] = ctx.args;
      const format = diskFormat('format', str(ctx.values, 'format')) ?? extFormat(dst);
      if (format === undefined) throw new UsageError('--format is required (the target name has no known extension)');
      const info = await withProgress(ctx, 'converting', (p) =>
        ctx.disks.convert(src, dst, { format, ...(ctx.values['fixed'] === true ? { fixed: true } : {}) }, p),
      );
      ctx.print(`converted to ${resolve(dst)}`);
      return info;
    },
  },
  resize: {
    usage: 'berth disk resize PATH --size SIZE [--json]',
    summary: 'expand or shrink a virtual disk',
    positionals: ['PATH'],
    options: { size: { type: 'string' } },
    run: async (ctx) => {
      const size = str(ctx.values, 'size');
      if (size === undefined) throw new UsageError('--size is required');
      const info = await withProgress(ctx, 'resizing', (p) =>
        ctx.disks.resize(ctx.args[0] ?? '', parseBytes('--size', size), p),
      );
      ctx.print(`resized to ${formatBytes(info.images[0]?.virtualSize ?? 0)}`);
      return info;
    },
  },
  compact: {
    usage: 'berth disk compact PATH [--json]',
    summary: 'reclaim zeroed and discarded space',
    positionals: ['PATH'],
    run: async (ctx) => {
      const info = await withProgress(ctx, 'compacting', (p) => ctx.disks.compact(ctx.args[0] ?? '', p));
      ctx.print(`compacted: file ${formatBytes(info.images[0]?.fileSize ?? 0)}`);
      return info;
    },
  },
  merge: {
    usage: 'berth disk merge CHILD [--to NEW-PATH [--format F]] [--json]',
    summary: 'merge a differencing disk into its parent, or its chain into a new file (--to)',
    positionals: ['CHILD'],
    options: { to: { type: 'string' }, format: { type: 'string' } },
    run: async (ctx) => {
      const to = filePath(ctx.values, 'to');
      const child = ctx.args[0] ?? '';
      let target: Parameters<DiskService['merge']>[1] = { into: 'parent' };
      if (to !== undefined) {
        const format = diskFormat('format', str(ctx.values, 'format')) ?? extFormat(to) ?? 'qcow2';
        target = { into: 'new', path: to, format };
      }
      const info = await withProgress(ctx, 'merging', (p) => ctx.disks.merge(child, target, p));
      ctx.print(`merged into ${info.images[0]?.path ?? ''}`);
      return info;
    },
  },
  reconnect: {
    usage: 'berth disk reconnect CHILD NEW-PARENT [--json]',
    summary: 'point a differencing disk at a new parent (same size and content)',
    positionals: ['CHILD', 'NEW-PARENT'],
    run: async ({ disks, args, print }) => {
      const info = await disks.reconnect(args[0] ?? '', args[1] ?? '');
      print(`${info.images[0]?.path ?? ''} now has parent ${info.images[1]?.path ?? ''}`);
      return info;
    },
  },
};

function treeText(l: CheckpointList): string {
  if (l.checkpoints.length === 0) return `'${l.vm}' has no checkpoints`;
  const lines: string[] = [];
  const walk = (parent: string | null, depth: number): void => {
    for (const c of l.checkpoints.filter((x) => x.parent === parent)) {
      const memory = c.holdsMemory ? `, memory ${formatBytes(c.stateBytes ?? 0)}` : '';
      lines.push(`${'  '.repeat(depth)}${c.name}  (${c.id.slice(0, 8)}, ${c.createdAt}, ${c.type}${memory})`);
      walk(c.id, depth + 1);
      if (c.isNowParent) lines.push(`${'  '.repeat(depth + 1)}Now`);
    }
  };
  walk(null, 0);
  if (l.now === null) lines.push('Now');
  return lines.join('\n');
}

export const checkpointCommands: Record<string, Command> = {
  create: {
    usage: 'berth checkpoint create VM [--name NAME] [--exclude-passthrough] [--json]',
    summary: 'take a checkpoint (of a running VM: a standard checkpoint holding its memory)',
    positionals: ['VM'],
    options: { name: { type: 'string' }, 'exclude-passthrough': { type: 'boolean' } },
    run: async ({ checkpoints, args, values, print }) => {
      const o: { name?: string; excludePassthrough?: boolean } = {};
      const name = str(values, 'name');
      if (name !== undefined) o.name = name;
      if (values['exclude-passthrough'] === true) o.excludePassthrough = true;
      const c = await checkpoints.create(args[0] ?? '', o);
      print(`created checkpoint '${c.name}' (${c.id})`);
      return c;
    },
  },
  list: {
    usage: 'berth checkpoint list VM [--json]',
    summary: "show a VM's checkpoint tree and where 'Now' is",
    positionals: ['VM'],
    run: async ({ checkpoints, args, print }) => {
      const l = await checkpoints.list(args[0] ?? '');
      print(treeText(l));
      return l;
    },
  },
  apply: {
    usage: 'berth checkpoint apply VM CHECKPOINT [--save-current [--save-name NAME]] [--json]',
    summary:
      'go back to a checkpoint (the current state is discarded unless --save-current; a running VM is turned ' +
      'off first; a checkpoint that holds memory resumes the VM at that moment)',
    positionals: ['VM', 'CHECKPOINT'],
    options: { 'save-current': { type: 'boolean' }, 'save-name': { type: 'string' } },
    run: async ({ checkpoints, args, values, print }) => {
      const saveName = str(values, 'save-name');
      const save = saveName ?? values['save-current'] === true;
      const l = await checkpoints.apply(args[0] ?? '', args[1] ?? '', { saveCurrent: save });
      const applied = l.checkpoints.find((c) => c.id === l.now);
      print(`applied; Now is under '${applied?.name ?? ''}'`);
      if (applied?.holdsMemory) print(`'${l.vm}' resumed from the checkpoint's memory`);
      return l;
    },
  },
  rename: {
    usage: 'berth checkpoint rename VM CHECKPOINT NEW-NAME [--json]',
    summary: 'rename a checkpoint',
    positionals: ['VM', 'CHECKPOINT', 'NEW-NAME'],
    run: async ({ checkpoints, args, print }) => {
      const c = await checkpoints.rename(args[0] ?? '', args[1] ?? '', args[2] ?? '');
      print(`renamed to '${c.name}'`);
      return c;
    },
  },
  remove: {
    usage: 'berth checkpoint remove VM CHECKPOINT [--subtree] [--json]',
    summary: 'delete a checkpoint (its disks merged so no other view changes), or its whole subtree',
    positionals: ['VM', 'CHECKPOINT'],
    options: { subtree: { type: 'boolean' } },
    run: async ({ checkpoints, args, values, print }) => {
      const l = await checkpoints.remove(args[0] ?? '', args[1] ?? '', { subtree: values['subtree'] === true });
      print(`removed; ${l.checkpoints.length} checkpoint(s) left`);
      return l;
    },
  },
};

export const topCommands: Record<string, Command> = {
  export: {
    usage:
      'berth export VM DESTINATION [--checkpoint CHECKPOINT] [--json]\n' +
      '       berth export VM FILE --config-only [--format berth|libvirt]\n' +
      '       berth export VM FOLDER --config-only --format ovf',
    summary:
      'export a VM (config, disks, checkpoints) to DESTINATION/<name>/, one checkpoint as a new VM ' +
      '(its disks flattened at that point) to DESTINATION/<name>-<checkpoint>/, or the configuration alone',
    positionals: ['VM', 'DESTINATION'],
    options: { 'config-only': { type: 'boolean' }, format: { type: 'string' }, checkpoint: { type: 'string' } },
    run: async (ctx) => {
      const [vm = '', dest = ''] = ctx.args;
      const format = oneOf('format', str(ctx.values, 'format'), ['berth', 'libvirt', 'ovf'] as const);
      const checkpoint = str(ctx.values, 'checkpoint');
      if (checkpoint !== undefined) {
        if (ctx.values['config-only'] === true || format !== undefined) {
          throw new UsageError(
            '--checkpoint exports the checkpoint as a whole VM; it does not take --config-only or --format',
          );
        }
        const r = await withProgress(ctx, 'exporting', (p) =>
          exportCheckpoint(ctx.manager, vm, checkpoint, resolve(dest), p),
        );
        ctx.print(`exported checkpoint '${checkpoint}' of '${vm}' as a new VM to ${r.folder}`);
        return r;
      }
      if (ctx.values['config-only'] !== true) {
        if (format !== undefined) throw new UsageError('--format is for --config-only');
        const r = await withProgress(ctx, 'exporting', (p) => ctx.exports.exportVm(vm, resolve(dest), p));
        ctx.print(`exported to ${r.folder}`);
        return r;
      }
      if (format === 'ovf') {
        const r = await withProgress(ctx, 'exporting', (p) => ctx.exports.ovf(vm, resolve(dest), p));
        ctx.print(`wrote ${r.envelope}`);
        return r;
      }
      const text =
        format === 'libvirt'
          ? await ctx.exports.libvirtXml(vm)
          : `${JSON.stringify(await ctx.exports.configJson(vm), null, 2)}\n`;
      writeFileSync(resolve(dest), text, { mode: 0o600 });
      ctx.print(`wrote ${resolve(dest)}`);
      return { file: resolve(dest), format: format ?? 'berth' };
    },
  },
  import: {
    usage: 'berth import FOLDER [--register | --restore [--move-files] | --copy [--name NAME]] [--json]',
    summary: 'import an exported VM: register it in place (default), restore (copy, same id) or copy (new id)',
    positionals: ['FOLDER'],
    options: {
      register: { type: 'boolean' },
      restore: { type: 'boolean' },
      copy: { type: 'boolean' },
      name: { type: 'string' },
      'move-files': { type: 'boolean' },
    },
    run: async (ctx) => {
      const modes = (['register', 'restore', 'copy'] as const).filter((m) => ctx.values[m] === true);
      if (modes.length > 1) throw new UsageError('choose one of --register, --restore, --copy');
      const mode = modes[0] ?? 'register';
      const name = str(ctx.values, 'name');
      const moveFiles = ctx.values['move-files'] === true;
      if (moveFiles && mode !== 'restore') throw new UsageError('--move-files goes with --restore');
      const vm = await withProgress(ctx, 'importing', (p) =>
        ctx.exports.importVm(ctx.args[0] ?? '', mode, {
          ...p,
          ...(name === undefined ? {} : { name }),
          ...(moveFiles ? { moveFiles } : {}),
        }),
      );
      ctx.print(`imported '${vm.name}' (${vm.id}) by ${mode}`);
      return vm;
    },
  },
};
