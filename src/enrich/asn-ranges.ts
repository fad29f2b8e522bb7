import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';

/** The network an address belongs to: its autonomous system and the organisation holding it. */
export interface AsnAnswer {
  readonly asn: number;
  readonly org: string;
}

export interface AsnLookup {
  lookup(ip: string): AsnAnswer | null;
  /** Name and build date of the data, stored beside every value it gives. */
  readonly source: string;
}

/**
 * The bundled ASN data: ip-location-db's `asn` package (DB-IP's IP to ASN Lite with RouteViews and
 * NRO data, CC BY 4.0). The npm registry carries no ASN database in MaxMind format, only these
 * CSV range tables, so they are read here into sorted arrays and searched by bisection (a MaxMind
 * GeoLite2-ASN file given with --geoip-asn is read with `maxmind` instead).
 */
export const BUNDLED_ASN_PACKAGE = '@ip-location-db/asn';

/**
 * Loads the bundled range tables (~0.5 M ranges, ~81 k distinct networks) once per server: ranges
 * as typed arrays, each network's name kept once. Read straight from the file's bytes — splitting
 * the 30 MB of CSV into lines and keeping a string and BigInts per range made the server's peak RSS
 * 150 MB higher, and kept 60 MB on the heap that every full GC walked (docs/benchmarks.md, fleet).
 *
 * @example
 * openBundledAsn().lookup('193.0.6.139'); // { asn: 3333, org: 'Reseaux IP Europeens Network Coordination Centre (RIPE NCC)' }
 */
export function openBundledAsn(): AsnLookup {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve(`${BUNDLED_ASN_PACKAGE}/package.json`);
  const dir = pkgFile.slice(0, -'package.json'.length);
  const version = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string }).version;
  // The package's version carries its build date: 2.3.YYYYMMDDHH.
  const d = /\.(\d{4})(\d{2})(\d{2})\d{2}$/.exec(version);
  const built = d ? `${d[1]}-${d[2]}-${d[3]}` : version;
  const networks = new Networks();
  const v4 = loadRanges(`${dir}asn-ipv4-num.csv`, 1, v4Decimal, networks);
  const v6 = loadRanges(`${dir}asn-ipv6.csv`, 4, v6Text, networks);
  return {
    source: `DB-IP ASN Lite (ip-location-db ${version}, built ${built})`,
    lookup(ip: string): AsnAnswer | null {
      const family = isIP(ip);
      if (family === 4) return v4.find(v4Words(ip));
      if (family === 6) {
        const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
        if (mapped) return v4.find(v4Words(mapped[1]));
        const words = v6Words(ip);
        return words === null ? null : v6.find(words);
      }
      return null;
    },
  };
}

/** Each distinct (asn, organisation) once, with its answer object shared by every range of it. */
class Networks {
  /** By ASN: the data names each ASN's organisation the same way everywhere (checked, not assumed). */
  readonly #byAsn = new Map<number, number>();
  /** The rare (asn, org) whose ASN is already known under another name. */
  readonly #byPair = new Map<string, number>();
  /** Every organisation's bytes as the file spelled them, end to end, to compare without decoding. */
  #raw = Buffer.allocUnsafe(1 << 20);
  #rawLength = 0;
  #rawAt: number[] = [];
  readonly answers: (AsnAnswer | null)[] = [];

  /** The id of the network of ASN `asn` whose organisation is bytes [from, to) of `buf`. */
  id(asn: number, buf: Buffer, from: number, to: number): number {
    const known = this.#byAsn.get(asn);
    if (known !== undefined) {
      const at = this.#rawAt[known];
      const end = known + 1 < this.#rawAt.length ? this.#rawAt[known + 1] : this.#rawLength;
      if (buf.compare(this.#raw, at, end, from, to) === 0) return known;
      const other = this.#byPair.get(`${asn},${buf.toString('latin1', from, to)}`);
      if (other !== undefined) return other;
    }
    const id = this.answers.length;
    let org = buf.toString('utf8', from, to);
    if (org.startsWith('"') && org.endsWith('"')) org = org.slice(1, -1).replace(/""/g, '"');
    this.answers.push(asn !== 0 ? Object.freeze({ asn, org }) : null);
    if (this.#rawLength + (to - from) > this.#raw.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * this.#raw.length, this.#rawLength + (to - from)));
      this.#raw.copy(bigger, 0, 0, this.#rawLength);
      this.#raw = bigger;
    }
    this.#rawAt.push(this.#rawLength);
    this.#rawLength += buf.copy(this.#raw, this.#rawLength, from, to);
    if (known === undefined) this.#byAsn.set(asn, id);
    else this.#byPair.set(`${asn},${buf.toString('latin1', from, to)}`, id);
    return id;
  }
}

interface Ranges {
  find(x: Uint32Array): AsnAnswer | null;
}

/** Parses an address field of bytes [from, to) into `out` (big-endian 32-bit words); false if it is not one. */
type AddressParser = (buf: Buffer, from: number, to: number, out: Uint32Array) => boolean;

/** Bytes of a file read at a time: the 30 MB of CSV are never in memory whole. */
const READ_CHUNK = 1 << 20;

/** Calls `line` with the bounds of each line of `file` (without its newline) in a reused buffer. */
function eachLine(file: string, line: (buf: Buffer, from: number, to: number) => void): void {
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  const fd = openSync(file, 'r');
  try {
    // `held` bytes at the chunk's start are a line the previous read did not finish.
    let held = 0;
    for (;;) {
      const got = readSync(fd, chunk, held, chunk.length - held, null);
      const filled = held + got;
      let pos = 0;
      for (let i = held; i < filled; i++) {
        if (chunk[i] !== 10) continue;
        line(chunk, pos, i);
        pos = i + 1;
      }
      if (got === 0) {
        if (pos < filled) line(chunk, pos, filled);
        return;
      }
      if (pos === 0 && filled === chunk.length) throw new Error(`${file}: a line over ${READ_CHUNK} bytes`);
      held = chunk.copy(chunk, 0, pos, filled);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Range tables of `start,end,asn,org` lines, sorted by start, addresses as `words` 32-bit words:
 * starts and ends in Uint32Arrays, a network id per range. Read twice: once to count the lines, so
 * that each array is allocated once at its size.
 */
function loadRanges(file: string, words: number, parse: AddressParser, networks: Networks): Ranges {
  let lines = 0;
  eachLine(file, () => {
    lines++;
  });
  const starts = new Uint32Array(lines * words);
  const ends = new Uint32Array(lines * words);
  const ids = new Uint32Array(lines);
  const a = new Uint32Array(words);
  const b = new Uint32Array(words);
  let n = 0;
  eachLine(file, (buf, from, to) => {
    let c1 = -1;
    let c2 = -1;
    let c3 = -1;
    for (let i = from; i < to && c3 < 0; i++) {
      if (buf[i] !== 44) continue;
      if (c1 < 0) c1 = i;
      else if (c2 < 0) c2 = i;
      else c3 = i;
    }
    if (n === lines || c3 < 0 || !parse(buf, from, c1, a) || !parse(buf, c1 + 1, c2, b)) return;
    const asn = decimal(buf, c2 + 1, c3);
    if (asn < 0) return;
    starts.set(a, n * words);
    ends.set(b, n * words);
    ids[n] = networks.id(asn, buf, c3 + 1, to > from && buf[to - 1] === 13 ? to - 1 : to);
    n++;
  });
  const compare = (table: Uint32Array, k: number, x: Uint32Array): number => {
    for (let w = 0; w < words; w++) {
      const v = table[k * words + w];
      if (v !== x[w]) return v < x[w] ? -1 : 1;
    }
    return 0;
  };
  // Only the answers are kept: the interning tables go once every table is loaded.
  const answers = networks.answers;
  return {
    find(x) {
      if (x.length !== words) return null;
      const i = bisect(n, (k) => compare(starts, k, x) <= 0);
      return i >= 0 && compare(ends, i, x) >= 0 ? answers[ids[i]] : null;
    },
  };
}

/** The last index k in [0, n) with below(k) true (the table is sorted by start), or -1. */
function bisect(n: number, below: (k: number) => boolean): number {
  let lo = 0;
  let hi = n - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (below(mid)) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

/** The decimal number on bytes [from, to) (at most 10 digits), or -1. */
function decimal(buf: Buffer, from: number, to: number): number {
  if (to <= from || to - from > 10) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i] - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/** An IPv4 address as a decimal number (asn-ipv4-num.csv). */
function v4Decimal(buf: Buffer, from: number, to: number, out: Uint32Array): boolean {
  const v = decimal(buf, from, to);
  if (v < 0 || v > 0xffffffff) return false;
  out[0] = v;
  return true;
}

/** An IPv6 address in text (asn-ipv6.csv): hex groups and `::` read from the bytes, anything else by v6Words. */
function v6Text(buf: Buffer, from: number, to: number, out: Uint32Array): boolean {
  const groups: number[] = [];
  let gap = -1;
  let digits = 0;
  let g = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i];
    const h = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (h >= 0 && digits < 4) {
      g = g * 16 + h;
      digits++;
    } else if (c === 58) {
      if (digits > 0) groups.push(g);
      else if (i === from && i + 1 < to && buf[i + 1] === 58) {
        // A leading "::".
        gap = 0;
        i++;
      } else if (i === from || gap >= 0) return false;
      // A ':' right after a ':' (the group before it was pushed): this is the "::".
      else gap = groups.length;
      g = 0;
      digits = 0;
    } else {
      const w = v6Words(buf.toString('latin1', from, to));
      if (w === null) return false;
      out.set(w);
      return true;
    }
  }
  if (digits > 0) groups.push(g);
  else if (gap !== groups.length || to - from < 2 || buf[to - 1] !== 58) return false;
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return false;
  if (gap >= 0) groups.splice(gap, 0, ...new Array<number>(8 - groups.length).fill(0));
  for (let i = 0; i < 4; i++) out[i] = groups[2 * i] * 65536 + groups[2 * i + 1];
  return true;
}

function v4Words(ip: string): Uint32Array {
  const p = ip.split('.').map(Number);
  return Uint32Array.of(((p[0] * 256 + p[1]) * 256 + p[2]) * 256 + p[3]);
}

/** An IPv6 address (`::` and a trailing dotted quad allowed) as four big-endian 32-bit words, or null. */
function v6Words(ip: string): Uint32Array | null {
  let text = ip;
  const colon = text.lastIndexOf(':');
  if (text.indexOf('.', colon) >= 0) {
    const q = text
      .slice(colon + 1)
      .split('.')
      .map(Number);
    if (q.length !== 4 || q.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
    text = `${text.slice(0, colon + 1)}${(q[0] * 256 + q[1]).toString(16)}:${(q[2] * 256 + q[3]).toString(16)}`;
  }
  const parts = text.split('::');
  if (parts.length > 2) return null;
  const group = (s: string) => (s === '' ? [] : s.split(':'));
  const head = group(parts[0]);
  const rest = parts.length === 2 ? group(parts[1]) : [];
  const missing = 8 - head.length - rest.length;
  if (parts.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups: number[] = [];
  for (const g of [...head, ...new Array<string>(parts.length === 2 ? missing : 0).fill('0'), ...rest]) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return null;
    groups.push(Number.parseInt(g, 16));
  }
  const out = new Uint32Array(4);
  for (let i = 0; i < 4; i++) out[i] = groups[2 * i] * 65536 + groups[2 * i + 1];
  return out;
}
