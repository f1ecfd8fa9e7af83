// A running VMM's memory, read from /proc: its resident set, its peak so far, and how much of
// the guest's RAM is resident (the guest's cost, not the VMM's). Used by bench:vmm for every
// VMM alike.
import { readFileSync } from 'node:fs';

export interface ProcMemory {
  rssKiB: number; // VmRSS now
  hwmKiB: number; // VmHWM: peak resident set so far
  guestKiB: number; // Rss of the mapping that backs guest RAM (a lower bound if merged, see below)
  hugeKiB: number; // of which transparent huge pages
}

function statusField(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : NaN;
}

// The process's parent, from /proc/<pid>/status.
export function parentPid(pid: number): number {
  const m = /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export function residentKiB(pid: number): number {
  return statusField(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS');
}

// The guest RAM is the anonymous read-write mapping of (about) the guest's size. When the
// kernel merged it with an adjacent anonymous mapping (seen in Node processes), the excess
// size is assumed to be resident too and subtracted, so guest RAM is never overstated and
// the overhead (RSS minus guest RAM) never understated.
export function procMemory(pid: number, guestMiB: number): ProcMemory {
  const guestSize = guestMiB * 1024;
  let best: { size: number; rss: number; huge: number } | undefined;
  let cur: { size: number; rss: number; huge: number; anonRw: boolean } | undefined;
  const consider = (): void => {
    if (cur?.anonRw && cur.size >= guestSize && cur.size <= guestSize + 4096 && (!best || cur.size < best.size)) {
      best = cur;
    }
  };
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      consider();
      cur = { size: 0, rss: 0, huge: 0, anonRw: head[1] === 'rw-p' && head[2] === '' };
      continue;
    }
    const kv = /^(Size|Rss|AnonHugePages):\s+(\d+) kB/.exec(line);
    if (kv && cur) {
      const v = Number(kv[2]);
      if (kv[1] === 'Size') cur.size = v;
      else if (kv[1] === 'Rss') cur.rss = v;
      else cur.huge = v;
    }
  }
  consider();
  if (!best) throw new Error(`process ${pid}: no ${guestMiB} MiB guest RAM mapping in smaps`);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    rssKiB: statusField(status, 'VmRSS'),
    hwmKiB: statusField(status, 'VmHWM'),
    guestKiB: Math.max(0, best.rss - (best.size - guestSize)),
    hugeKiB: best.huge,
  };
}
