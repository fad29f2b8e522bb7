import { isIP } from 'node:net';

export interface RdnsOptions {
  /** Resolves an address to its PTR names (node's dns.promises.reverse by default). */
  readonly resolve: (ip: string) => Promise<string[]>;
  /** Names kept in memory at most (least recently used go first). */
  readonly maxEntries?: number;
  /** How long an answer (or the lack of one) is believed, ms. */
  readonly ttlMs?: number;
  /** One lookup gives up after this long, ms: a slow resolver must not hold the queue. */
  readonly timeoutMs?: number;
  /** Lookups in flight at once. */
  readonly concurrency?: number;
}

/**
 * Reverse DNS of remote addresses, cached and bounded: at most `concurrency` lookups at once, each
 * given up after `timeoutMs`, answers and failures both cached for `ttlMs`. Loopback, private,
 * link-local and other non-public addresses are never asked about: their names say nothing the
 * host's own records do not, and asking leaks what the fleet talks to.
 *
 * @example
 * const rdns = new ReverseDnsCache({ resolve: (ip) => dns.promises.reverse(ip) });
 * await rdns.name('193.0.6.139'); // 'www.ripe.net' or null
 */
export class ReverseDnsCache {
  private readonly cache = new Map<string, { name: string | null; until: number }>();
  private readonly waiting: (() => void)[] = [];
  private running = 0;

  constructor(private readonly opts: RdnsOptions) {}

  async name(ip: string, now = Date.now()): Promise<string | null> {
    if (!isPublicAddress(ip)) return null;
    const hit = this.cache.get(ip);
    if (hit && hit.until > now) {
      // Refreshes its place: Map order is insertion order, so the oldest entry is evicted first.
      this.cache.delete(ip);
      this.cache.set(ip, hit);
      return hit.name;
    }
    await this.slot();
    let name: string | null = null;
    try {
      const names = await withTimeout(this.opts.resolve(ip), this.opts.timeoutMs ?? 2000);
      name = names[0]?.toLowerCase().replace(/\.$/, '') ?? null;
    } catch {
      name = null;
    } finally {
      this.release();
    }
    this.cache.set(ip, { name, until: now + (this.opts.ttlMs ?? 3_600_000) });
    while (this.cache.size > (this.opts.maxEntries ?? 50_000))
      this.cache.delete(this.cache.keys().next().value!);
    return name;
  }

  get size(): number {
    return this.cache.size;
  }

  private async slot(): Promise<void> {
    if (this.running < (this.opts.concurrency ?? 4)) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
  }

  private release(): void {
    this.running--;
    this.waiting.shift()?.();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** Globally routed unicast: not loopback, private, shared, link-local, multicast or reserved. */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) {
    const [a, b] = ip.split('.').map(Number);
    if (a === 0 || a === 10 || a === 127 || a >= 224) return false;
    if (a === 100 && b >= 64 && b < 128) return false;
    if (a === 169 && b === 254) return false;
    if (a === 172 && b >= 16 && b < 32) return false;
    if (a === 192 && b === 168) return false;
    return true;
  }
  if (family === 6) {
    const low = ip.toLowerCase();
    if (low === '::' || low === '::1') return false;
    if (low.startsWith('::ffff:')) return isPublicAddress(low.slice(7));
    return /^[23]/.test(low);
  }
  return false;
}
