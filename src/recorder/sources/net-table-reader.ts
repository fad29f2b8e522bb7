import { readlinkSync } from 'node:fs';
import { endianness } from 'node:os';
import { DEFAULT_PROC_ROOT, isReadFailure, ONE_READ, readProcFile } from './procfs-reader.js';

/** One socket line of /proc/net/{tcp,tcp6,udp,udp6}. */
export interface NetRow {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** Kernel state name: ESTABLISHED, LISTEN, … ; UDP: UNCONN or ESTABLISHED. */
  state: string;
  /** Socket inode, the join key to fd tables; 0 once no file holds the socket (TIME_WAIT, orphans). */
  inode: number;
  /** The network namespace whose table listed it (inode of its ns/net link), null when unknown. */
  netns: number | null;
}

/** include/net/tcp_states.h, in order from 1. */
const TCP_STATES = [
  '',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
];

export function tcpStateName(code: number): string {
  return TCP_STATES[code] || `UNKNOWN_${code.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** UDP reuses TCP_CLOSE (7) for an unconnected socket, which `ss` shows as UNCONN. */
export function udpStateName(code: number): string {
  return code === 7 ? 'UNCONN' : tcpStateName(code);
}

const LITTLE_ENDIAN = endianness() === 'LE';

// Addresses repeat across cycles (the same listeners, the same peers): convert each hex text once.
const addressCache = new Map<string, string>();
const ADDRESS_CACHE_MAX = 8192;

/**
 * The kernel prints each 32-bit word of an address with %08X in host byte order, so on a
 * little-endian host "0100007F" is 127.0.0.1. IPv6 is four such words.
 */
export function hexToIp(hex: string): string {
  const hit = addressCache.get(hex);
  if (hit !== undefined) return hit;
  const bytes = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    const word = Number.parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    for (let b = 0; b < 4; b++) {
      const shift = LITTLE_ENDIAN ? b * 8 : (3 - b) * 8;
      bytes[w * 4 + b] = (word >>> shift) & 0xff;
    }
  }
  const text = bytes.length === 4 ? bytes.join('.') : formatIpv6(bytes);
  if (addressCache.size >= ADDRESS_CACHE_MAX) addressCache.clear();
  addressCache.set(hex, text);
  return text;
}

/** RFC 5952 text: lowercase, longest run (≥ 2) of zero groups as '::', IPv4-mapped as ::ffff:a.b.c.d. */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Parses the text of one /proc/net table. Lines are
 * `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`.
 */
export function parseNetTable(
  text: string,
  proto: 'tcp' | 'udp',
  family: 4 | 6,
  out: NetRow[] = [],
  netns: number | null = null,
): NetRow[] {
  let pos = text.indexOf('\n');
  if (pos < 0) return out;
  pos++;
  const stateName = proto === 'tcp' ? tcpStateName : udpStateName;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const f = text.slice(pos, end).trim().split(/\s+/);
    pos = end + 1;
    if (f.length < 10) continue;
    const local = f[1];
    const remote = f[2];
    const lc = local.indexOf(':');
    const rc = remote.indexOf(':');
    if (lc < 0 || rc < 0) continue;
    out.push({
      proto,
      family,
      localIp: hexToIp(local.slice(0, lc)),
      localPort: Number.parseInt(local.slice(lc + 1), 16),
      remoteIp: hexToIp(remote.slice(0, rc)),
      remotePort: Number.parseInt(remote.slice(rc + 1), 16),
      state: stateName(Number.parseInt(f[3], 16)),
      inode: Number(f[9]),
      netns,
    });
  }
  return out;
}

/** A read shorter than a page minus the longest line (tcp6 lines are ~180 bytes) is the last one. */
const NET_TABLE_LAST_READ = 4096 - 512;

const TABLES = [
  ['tcp', 'tcp', 4],
  ['tcp6', 'tcp', 6],
  ['udp', 'udp', 4],
  ['udp6', 'udp', 6],
] as const;

/** Which socket tables to read: all four, or UDP's alone (when TCP comes from events). */
export type NetTables = 'all' | 'udp';

/**
 * Every TCP and UDP socket of one network namespace: the reader's own with `netDir` = /proc/net,
 * another's through a process inside it (/proc/PID/net). A table that is missing (IPv6 disabled)
 * is skipped; null when the directory cannot be read at all (the process is gone).
 */
export function readNetTables(
  netDir = `${DEFAULT_PROC_ROOT}/net`,
  netns: number | null = null,
  tables: NetTables = 'all',
): NetRow[] | null {
  const out: NetRow[] = [];
  let read = 0;
  for (const [file, proto, family] of TABLES) {
    if (tables === 'udp' && proto !== 'udp') continue;
    const buf = readProcFile(`${netDir}/${file}`, NET_TABLE_LAST_READ);
    if (isReadFailure(buf)) continue;
    read++;
    parseNetTable(buf.toString('latin1'), proto, family, out, netns);
  }
  return read === 0 ? null : out;
}

/** The network namespace of a process (the inode its ns/net link names), null when hidden or gone. */
export function readNetns(procRoot: string, pid: number | 'self'): number | null {
  try {
    const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`${procRoot}/${pid}/ns/net`));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const TCP_UDP_COUNTERS = Buffer.from('\nTcp:');
const UDP_COUNTERS = Buffer.from('\nUdp:');

/**
 * The TCP and UDP counters of /proc/net/snmp (segments in and out, opens, resets, datagrams), as
 * a copy: any TCP state change sends or receives a segment, so while these stand still the socket
 * tables need no re-read. Null when the file is missing.
 */
export function readNetCounters(
  netDir = `${DEFAULT_PROC_ROOT}/net`,
  tables: NetTables = 'all',
): Buffer | null {
  const buf = readProcFile(`${netDir}/snmp`, ONE_READ);
  if (isReadFailure(buf)) return null;
  const at = buf.indexOf(tables === 'udp' ? UDP_COUNTERS : TCP_UDP_COUNTERS);
  return Buffer.from(at < 0 ? buf : buf.subarray(at));
}
