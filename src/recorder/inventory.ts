import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname, machine, networkInterfaces, release } from 'node:os';
import type { Inventory, InventoryGroup, InventoryUser, PofrRecord } from '../protocol/index.js';
import { formatIpv6, hexToIp } from './sources/net-table-reader.js';
import { DEFAULT_PROC_ROOT, readBootTimeMicros } from './sources/procfs-reader.js';

type Interface = Inventory['interfaces'][number];
type Route = Inventory['routes'][number];
type Device = Inventory['devices'][number];

export interface InventoryOptions {
  procRoot?: string;
  etcRoot?: string;
  sysRoot?: string;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function readTrimmed(path: string): string | null {
  const s = readText(path);
  return s === null ? null : s.trim();
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path).sort();
  } catch {
    return [];
  }
}

/** PRETTY_NAME of os-release(5); /etc first, then /usr/lib as the spec says. */
export function readOsName(etcRoot: string): string {
  const candidates = [`${etcRoot}/os-release`];
  if (etcRoot === '/etc') candidates.push('/usr/lib/os-release');
  for (const path of candidates) {
    const text = readText(path);
    if (text === null) continue;
    const m = /^PRETTY_NAME=(.*)$/m.exec(text);
    if (m) return m[1].trim().replace(/^(["'])(.*)\1$/, '$2');
  }
  return 'Linux';
}

/** TZ, else /etc/timezone, else the zone /etc/localtime links to, else UTC. */
export function readTimezone(etcRoot: string): string {
  const tz = process.env.TZ?.replace(/^:/, '');
  if (tz) return tz;
  const file = readTrimmed(`${etcRoot}/timezone`);
  if (file) return file;
  try {
    const link = readlinkSync(`${etcRoot}/localtime`);
    const at = link.indexOf('zoneinfo/');
    if (at >= 0) return link.slice(at + 'zoneinfo/'.length);
  } catch {
    // Not a link (a copied zone file) or absent: the zone name is unknown.
  }
  return 'UTC';
}

export function parsePasswd(text: string): InventoryUser[] {
  const out: InventoryUser[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0) continue;
    out.push({ uid, gid, name: f[0], home: f[5], shell: f[6] });
  }
  return out;
}

export function parseGroup(text: string): InventoryGroup[] {
  const out: InventoryGroup[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid) || gid < 0) continue;
    out.push({ gid, name: f[0], members: f[3] === '' ? [] : f[3].split(',') });
  }
  return out;
}

function prefixOfMask(maskLe: string): number {
  // /proc/net/route prints the mask in host byte order like the addresses.
  let bits = 0;
  for (const part of hexToIp(maskLe).split('.')) {
    let n = Number(part);
    while (n) {
      bits += n & 1;
      n >>= 1;
    }
  }
  return bits;
}

/** /proc/net/route (IPv4) and /proc/net/ipv6_route. */
export function readRoutes(procRoot: string): Route[] {
  const out: Route[] = [];
  const v4 = readText(`${procRoot}/net/route`);
  if (v4 !== null) {
    for (const line of v4.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) continue;
      out.push({
        family: 4,
        destination: `${hexToIp(f[1])}/${prefixOfMask(f[7])}`,
        gateway: hexToIp(f[2]),
        dev: f[0],
        metric: Number(f[6]) >>> 0,
      });
    }
  }
  const v6 = readText(`${procRoot}/net/ipv6_route`);
  if (v6 !== null) {
    for (const line of v6.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      out.push({
        family: 6,
        destination: `${ipv6OfHex(f[0])}/${Number.parseInt(f[1], 16)}`,
        gateway: ipv6OfHex(f[4]),
        dev: f[9],
        metric: Number.parseInt(f[5], 16) >>> 0,
      });
    }
  }
  return out;
}

/** ipv6_route prints addresses as 32 hex digits in network order (unlike net/tcp6). */
function ipv6OfHex(hex: string): string {
  return formatIpv6(Buffer.from(hex, 'hex'));
}

/** Interfaces with their addresses (os.networkInterfaces lists only up ones) plus down links from sysfs. */
export function readInterfaces(sysRoot: string): Interface[] {
  const byName = new Map<string, Interface>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const list = addrs ?? [];
    const mac = list.find((a) => a.mac)?.mac ?? null;
    byName.set(name, { name, mac, addresses: list.map((a) => a.cidr ?? a.address).sort() });
  }
  for (const name of listDir(`${sysRoot}/class/net`)) {
    const mac = readTrimmed(`${sysRoot}/class/net/${name}/address`);
    const known = byName.get(name);
    if (known) {
      if (mac) known.mac = mac;
    } else {
      byName.set(name, { name, mac: mac || null, addresses: [] });
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** USB devices (not their interfaces: those lack idVendor) from sysfs. */
export function readUsbDevices(sysRoot: string): Device[] {
  const dir = `${sysRoot}/bus/usb/devices`;
  const out: Device[] = [];
  for (const id of listDir(dir)) {
    const vendor = readTrimmed(`${dir}/${id}/idVendor`);
    if (vendor === null) continue;
    out.push({
      bus: 'usb',
      id,
      vendor_id: vendor,
      product_id: readTrimmed(`${dir}/${id}/idProduct`),
      name: readTrimmed(`${dir}/${id}/product`),
      serial: readTrimmed(`${dir}/${id}/serial`),
    });
  }
  return out;
}

/**
 * The host's facts: who and what it is, its users, network and devices.
 *
 * @example readInventory().hostname // => 'web-1'
 */
export function readInventory(opts: InventoryOptions = {}): Inventory {
  const procRoot = opts.procRoot ?? DEFAULT_PROC_ROOT;
  const etcRoot = opts.etcRoot ?? '/etc';
  const sysRoot = opts.sysRoot ?? '/sys';
  return {
    hostname: hostname(),
    os: readOsName(etcRoot),
    kernel: release(),
    arch: machine(),
    boot_time: readBootTimeMicros(procRoot),
    timezone: readTimezone(etcRoot),
    machine_id: readTrimmed(`${etcRoot}/machine-id`) ?? '',
    users: parsePasswd(readText(`${etcRoot}/passwd`) ?? ''),
    groups: parseGroup(readText(`${etcRoot}/group`) ?? ''),
    interfaces: readInterfaces(sysRoot),
    routes: readRoutes(procRoot),
    devices: readUsbDevices(sysRoot),
  };
}

/**
 * Emits an `inventory` record at the first poll, then only when something changed, looking at
 * most every `checkEveryMs` (default 30 s).
 */
export class InventoryWatcher {
  readonly #opts: InventoryOptions;
  readonly #checkEveryUs: number;
  #lastCheck: number | null = null;
  #last = '';

  constructor(opts: InventoryOptions & { checkEveryMs?: number } = {}) {
    this.#opts = opts;
    this.#checkEveryUs = (opts.checkEveryMs ?? 30_000) * 1000;
  }

  poll(now: number): PofrRecord[] {
    if (this.#lastCheck !== null && now - this.#lastCheck < this.#checkEveryUs) return [];
    this.#lastCheck = now;
    const inventory = readInventory(this.#opts);
    const text = JSON.stringify(inventory);
    if (text === this.#last) return [];
    this.#last = text;
    return [{ type: 'inventory', t: now, inventory }];
  }
}
