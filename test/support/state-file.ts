// Reading and tampering with a Berth saved-state file (native/machine/state_file.h) the way
// a damaged disk or a hostile user would, for the specs that check what a resume refuses.
//
// The header (little-endian): magic "BERTHVMS" (8), format version u32, records offset u64
// (4096), records size u64, records crc32 u32, memory offset u64, memory size u64, then the
// header's crc32 over those 48 bytes. The records (native/common/state_stream.h) follow at
// the records offset, one after the other: name (u32 length + bytes), version u32, body
// length u64, body. Both checksums are zlib's crc32 (IEEE 802.3), written here as Node 20
// has no zlib.crc32.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

// CRC-32 as zlib's crc32(0, bytes, length) computes it: reflected, polynomial 0xEDB88320,
// initial and final value 0xFFFFFFFF.
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const STATE_MAGIC = 'BERTHVMS';
export const STATE_HEADER_COVERED = 48; // the bytes the header's checksum covers
const VERSION_AT = 8;
const RECORDS_OFFSET_AT = 12;
const RECORDS_SIZE_AT = 20;
const RECORDS_CRC_AT = 28;
const MEMORY_OFFSET_AT = 32;
const MEMORY_SIZE_AT = 40;
const HEADER_CRC_AT = 48;

export interface StateHeader {
  version: number;
  recordsOffset: number;
  recordsSize: number;
  recordsCrc: number;
  memoryOffset: number;
  memorySize: number;
  headerCrc: number;
}

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    if (n !== length) throw new Error(`${file}: read ${n} of ${length} bytes at ${offset}`);
    return buf;
  } finally {
    closeSync(fd);
  }
}

function writeAt(file: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    const n = writeSync(fd, bytes, 0, bytes.length, offset);
    if (n !== bytes.length) throw new Error(`${file}: wrote ${n} of ${bytes.length} bytes at ${offset}`);
  } finally {
    closeSync(fd);
  }
}

export function parseStateHeader(header: Buffer): StateHeader {
  if (header.subarray(0, 8).toString('latin1') !== STATE_MAGIC) throw new Error('not a Berth saved-state file');
  return {
    version: header.readUInt32LE(VERSION_AT),
    recordsOffset: Number(header.readBigUInt64LE(RECORDS_OFFSET_AT)),
    recordsSize: Number(header.readBigUInt64LE(RECORDS_SIZE_AT)),
    recordsCrc: header.readUInt32LE(RECORDS_CRC_AT),
    memoryOffset: Number(header.readBigUInt64LE(MEMORY_OFFSET_AT)),
    memorySize: Number(header.readBigUInt64LE(MEMORY_SIZE_AT)),
    headerCrc: header.readUInt32LE(HEADER_CRC_AT),
  };
}

export function readStateHeader(file: string): StateHeader {
  const h = parseStateHeader(readAt(file, 0, HEADER_CRC_AT + 4));
  const covered = readAt(file, 0, STATE_HEADER_COVERED);
  if (crc32(covered) !== h.headerCrc) throw new Error(`${file}: the header's checksum does not match`);
  return h;
}

export function readStateRecords(file: string): { header: StateHeader; records: Buffer } {
  const header = readStateHeader(file);
  const records = readAt(file, header.recordsOffset, header.recordsSize);
  if (crc32(records) !== header.recordsCrc) throw new Error(`${file}: the records fail their checksum`);
  return { header, records };
}

// Rewrites the header's 48 covered bytes through `edit` and its checksum to match.
function rewriteHeader(file: string, edit: (covered: Buffer) => void): void {
  const covered = readAt(file, 0, STATE_HEADER_COVERED);
  edit(covered);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(covered));
  writeAt(file, 0, Buffer.concat([covered, crc]));
}

// Another format version, with a header checksum that matches it: a file from another Berth.
export function setStateFormatVersion(file: string, version: number): void {
  rewriteHeader(file, (h) => h.writeUInt32LE(version, VERSION_AT));
}

export interface StateRecord {
  name: string;
  version: number;
  bodyOffset: number; // within the records
  bodyLength: number;
}

export function listStateRecords(records: Buffer): StateRecord[] {
  const out: StateRecord[] = [];
  for (let at = 0; at < records.length;) {
    const nameLength = records.readUInt32LE(at);
    const name = records.subarray(at + 4, at + 4 + nameLength).toString('latin1');
    at += 4 + nameLength;
    const version = records.readUInt32LE(at);
    const bodyLength = Number(records.readBigUInt64LE(at + 4));
    at += 12;
    out.push({ name, version, bodyOffset: at, bodyLength });
    at += bodyLength;
  }
  return out;
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
export type CpuidRegister = 'eax' | 'ebx' | 'ecx' | 'edx';
const CPUID_FIELDS = ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const;
const CPUID_SIGNIFICANT_INDEX = 1; // KVM_CPUID_FLAG_SIGNIFICANT_INDEX

function cpuidRecord(records: Buffer): StateRecord {
  const rec = listStateRecords(records).find((r) => r.name === 'cpuid');
  if (!rec) throw new Error('the saved state has no cpuid record');
  return rec;
}

// The "cpuid" record: the host's supported CPUID list when the VM was saved.
export function readCpuidRecord(records: Buffer): CpuidEntry[] {
  const rec = cpuidRecord(records);
  const count = records.readUInt32LE(rec.bodyOffset);
  const entries: CpuidEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = rec.bodyOffset + 4 + i * 28;
    const e = {} as CpuidEntry;
    CPUID_FIELDS.forEach((f, k) => (e[f] = records.readUInt32LE(at + 4 * k)));
    entries.push(e);
  }
  return entries;
}

// The entry the VMM's feature check finds for (function, index) (cpu_state_records.cc's find).
function findCpuid(entries: CpuidEntry[], fn: number, index: number): number {
  return entries.findIndex(
    (e) => e.function === fn && (e.index === index || (e.flags & CPUID_SIGNIFICANT_INDEX) === 0),
  );
}

export function cpuidBit(entries: CpuidEntry[], fn: number, index: number, reg: CpuidRegister, bit: number): boolean {
  const e = entries[findCpuid(entries, fn, index)];
  if (!e) throw new Error(`no CPUID leaf 0x${fn.toString(16)} subleaf ${index} in the saved state`);
  return ((e[reg] >>> bit) & 1) === 1;
}

// Sets one bit of the saved CPUID list in the file, and both checksums to match: a state
// file claiming a feature its host never had.
export function setCpuidBit(file: string, fn: number, index: number, reg: CpuidRegister, bit: number): void {
  const { header, records } = readStateRecords(file);
  const entries = readCpuidRecord(records);
  const i = findCpuid(entries, fn, index);
  if (i < 0) throw new Error(`no CPUID leaf 0x${fn.toString(16)} subleaf ${index} in the saved state`);
  const at = cpuidRecord(records).bodyOffset + 4 + i * 28 + 4 * CPUID_FIELDS.indexOf(reg);
  records.writeUInt32LE((records.readUInt32LE(at) | (1 << bit)) >>> 0, at);
  writeAt(file, header.recordsOffset, records);
  rewriteHeader(file, (h) => h.writeUInt32LE(crc32(records), RECORDS_CRC_AT));
}

// Flips one byte of the records (in the cpuid record's body) and leaves the checksums.
export function flipRecordByte(file: string): void {
  const { header, records } = readStateRecords(file);
  const at = cpuidRecord(records).bodyOffset + 4 + 3 * 4; // the first entry's eax
  writeAt(file, header.recordsOffset + at, Buffer.from([(records[at] ?? 0) ^ 0x40]));
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

// Named feature bits from the VMM's table (native/machine/cpu_state_records.cc,
// kFeatureWords), the ones a test may claim the saved list had: rarely on a KVM host (or
// in the KVM lab's emulated CPU), each reported by its name when the host lacks it.
export const RARE_CPU_FEATURES: readonly {
  name: string;
  fn: number;
  index: number;
  reg: CpuidRegister;
  bit: number;
}[] = [
  { name: 'avx512f', fn: 0x7, index: 0, reg: 'ebx', bit: 16 },
  { name: 'avx512ifma', fn: 0x7, index: 0, reg: 'ebx', bit: 21 },
  { name: 'avx512_vp2intersect', fn: 0x7, index: 0, reg: 'edx', bit: 8 },
  { name: 'amx_tile', fn: 0x7, index: 0, reg: 'edx', bit: 24 },
  { name: 'avx512_fp16', fn: 0x7, index: 0, reg: 'edx', bit: 23 },
  { name: 'cldemote', fn: 0x7, index: 0, reg: 'ecx', bit: 25 },
  { name: 'xop', fn: 0x80000001, index: 0, reg: 'ecx', bit: 11 },
  { name: 'fma4', fn: 0x80000001, index: 0, reg: 'ecx', bit: 16 },
  { name: 'tbm', fn: 0x80000001, index: 0, reg: 'ecx', bit: 21 },
];
