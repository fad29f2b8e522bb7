import { readFileSync } from 'node:fs';
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
 * Loads the bundled range tables (about a second, ~40 MB of memory for ~0.5 M ranges); once per
 * server.
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
  const v4 = loadV4(readFileSync(`${dir}asn-ipv4-num.csv`, 'utf8'));
  const v6 = loadV6(readFileSync(`${dir}asn-ipv6.csv`, 'utf8'));
  return {
    source: `DB-IP ASN Lite (ip-location-db ${version}, built ${built})`,
    lookup(ip: string): AsnAnswer | null {
      const family = isIP(ip);
      if (family === 4) return v4.find(v4Number(ip));
      if (family === 6) {
        const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
        return mapped ? v4.find(v4Number(mapped[1])) : v6.find(v6Number(ip));
      }
      return null;
    },
  };
}

interface Ranges<T> {
  find(x: T): AsnAnswer | null;
}

/** Unquotes one CSV line of `start,end,asn,org` (the org may be quoted and hold commas). */
function fields(line: string): [string, string, string, string] | null {
  const a = line.indexOf(',');
  const b = line.indexOf(',', a + 1);
  const c = line.indexOf(',', b + 1);
  if (a < 0 || b < 0 || c < 0) return null;
  let org = line.slice(c + 1);
  if (org.startsWith('"') && org.endsWith('"')) org = org.slice(1, -1).replace(/""/g, '"');
  return [line.slice(0, a), line.slice(a + 1, b), line.slice(b + 1, c), org];
}

function loadV4(text: string): Ranges<number> {
  const lines = text.split('\n');
  const starts = new Float64Array(lines.length);
  const ends = new Float64Array(lines.length);
  const asns = new Uint32Array(lines.length);
  const orgs: string[] = new Array(lines.length);
  let n = 0;
  for (const line of lines) {
    const f = fields(line);
    if (f === null) continue;
    starts[n] = Number(f[0]);
    ends[n] = Number(f[1]);
    asns[n] = Number(f[2]);
    orgs[n] = f[3];
    n++;
  }
  return {
    find(x) {
      const i = bisect(n, (k) => starts[k] <= x);
      return i >= 0 && x <= ends[i] && asns[i] !== 0 ? { asn: asns[i], org: orgs[i] } : null;
    },
  };
}

function loadV6(text: string): Ranges<bigint> {
  const starts: bigint[] = [];
  const ends: bigint[] = [];
  const asns: number[] = [];
  const orgs: string[] = [];
  for (const line of text.split('\n')) {
    const f = fields(line);
    if (f === null || !f[0].includes(':')) continue;
    starts.push(v6Number(f[0]));
    ends.push(v6Number(f[1]));
    asns.push(Number(f[2]));
    orgs.push(f[3]);
  }
  return {
    find(x) {
      const i = bisect(starts.length, (k) => starts[k] <= x);
      return i >= 0 && x <= ends[i] && asns[i] !== 0 ? { asn: asns[i], org: orgs[i] } : null;
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

function v4Number(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0] * 256 + p[1]) * 256 + p[2]) * 256 + p[3];
}

function v6Number(ip: string): bigint {
  const [head, tail = ''] = ip.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return BigInt(`0x${groups.map((g) => g.padStart(4, '0')).join('')}`);
}
