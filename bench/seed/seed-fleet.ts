import { openGeoip } from '../../src/enrich/index.js';
import { ingestBatch } from '../../src/ingest/index.js';
import {
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  type SealedBatch,
  sealBatch,
} from '../../src/protocol/index.js';
import { createToken, enrollWithToken, setHostStatus } from '../../src/roles/server/enrollment.js';
import type { Store } from '../../src/store/index.js';
import { type HostRole, HostSimulation, type HostSpec } from './host-simulation.js';
import { Random } from './random.js';

export interface SeedOptions {
  /** Timeline events in all (process starts, execs, exits, file and endpoint events, gaps). */
  readonly events: number;
  readonly hosts: number;
  readonly days: number;
  /** The PRNG seed: the same options give the same store. */
  readonly seed?: number;
  /** The record ends here (µs UTC); default now, so the fleet looks alive when seeded. */
  readonly end?: number;
  /** Records per batch at most (a recorder seals at 5,000 or every few seconds). */
  readonly batchRecords?: number;
  /** Hosts ingesting at once (PostgreSQL takes several; SQLite writes one at a time). */
  readonly concurrency?: number;
  readonly progress?: (p: SeedProgress) => void;
}

export interface SeedProgress {
  readonly events: number;
  readonly batches: number;
  readonly elapsedMs: number;
}

export interface SeededHost {
  readonly host_id: string;
  readonly name: string;
  readonly role: HostRole;
  readonly events: number;
  readonly batches: number;
  /** Batches sealed but never sent (a lost batch: the store records a chain gap). */
  readonly lost: number;
  readonly incident: boolean;
  readonly status: 'recording' | 'silent' | 'late' | 'revoked';
}

export interface SeedResult {
  readonly hosts: readonly SeededHost[];
  readonly events: number;
  readonly batches: number;
  readonly elapsedMs: number;
}

const ROLES: readonly HostRole[] = [
  'web',
  'web',
  'app',
  'db',
  'web',
  'app',
  'bastion',
  'build',
  'web',
  'app',
  'db',
  'mail',
  'web',
  'app',
  'monitor',
  'web',
  'app',
  'db',
  'build',
  'web',
];
const ZONES = ['Europe/Berlin', 'UTC', 'America/New_York', 'Europe/London', 'Asia/Tokyo'];
const DAY = 86_400_000_000;

/**
 * Fills a store with a fleet's record through the real path: each host enrolls with a token, its
 * recorder side seals signed, hash-chained batches, and every batch goes through ingestBatch —
 * verify, dedupe, chain, apply — with the bundled country database, as `pofr server run` does.
 * A few hosts are made interesting on purpose: one suffers an intrusion, one lost a batch (a chain
 * gap), one went silent days ago, one is late, the last is revoked after its record.
 *
 * @example
 * const r = await seedFleet(store, { events: 10_000_000, hosts: 20, days: 30 });
 */
export async function seedFleet(store: Store, opts: SeedOptions): Promise<SeedResult> {
  const rng = new Random(opts.seed ?? 12);
  const end = opts.end ?? Math.floor(Date.now() / 1000) * 1_000_000;
  const from = end - Math.round(opts.days * DAY);
  const geo = openGeoip();
  const started = Date.now();
  let events = 0;
  let batches = 0;
  const specs: HostSpec[] = [];
  for (let i = 0; i < opts.hosts; i++) {
    const role = ROLES[i % ROLES.length];
    const nth =
      ROLES.slice(0, (i % ROLES.length) + 1).filter((r) => r === role).length +
      Math.floor(i / ROLES.length) * ROLES.filter((r) => r === role).length;
    const silent = opts.hosts > 7 && i === 7;
    const late = opts.hosts > 13 && i === 13;
    const share = Math.floor(opts.events / opts.hosts) + (i < opts.events % opts.hosts ? 1 : 0);
    specs.push({
      name: `${role}-${String(nth).padStart(2, '0')}`,
      role,
      ip: `10.0.${ROLES.indexOf(role) + 1}.${10 + i}`,
      timezone: ZONES[i % ZONES.length],
      from,
      to: silent ? end - 3 * DAY : late ? end - 40 * 60_000_000 : end,
      events: share,
      incident: i === 4 % Math.max(1, opts.hosts),
    });
  }

  const token = await createToken(store, { ttlMs: 3_600_000, uses: opts.hosts, approve: true });
  const enrolled: { spec: HostSpec; hostId: string; key: ReturnType<typeof loadPrivateKey> }[] = [];
  for (const spec of specs) {
    const keys = generateSigningKeyPair();
    const fp = `SHA256:seed-${spec.name}-${rng.int(0, 0xffffff).toString(16)}`;
    const outcome = await enrollWithToken(
      store,
      {
        name: spec.name,
        signingKey: keys.publicPem,
        sshKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${spec.name} seed`,
        sshFingerprint: fp,
        remote: `${spec.ip}:40022`,
        token,
      },
      from - DAY,
    );
    if (!outcome.ok) throw new Error(`seed: enrolling ${spec.name} failed: ${outcome.message}`);
    enrolled.push({ spec, hostId: outcome.host_id, key: loadPrivateKey(keys.privatePem) });
  }

  const results: SeededHost[] = [];
  const runHost = async (index: number) => {
    const { spec, hostId, key } = enrolled[index];
    const sim = new HostSimulation(spec, new Random((opts.seed ?? 12) * 1000 + index));
    const bootId = `seed-boot-${index}`;
    let seq = 0;
    let prev = GENESIS_HASH;
    let sent = 0;
    let lost = 0;
    // One host lost one batch on the way, past the middle of its record (its spool file was
    // deleted by hand): the store records a chain gap.
    let loseAfter = index === 2 ? spec.from + (spec.to - spec.from) * 0.55 : Number.POSITIVE_INFINITY;
    for (const records of sim.batches(opts.batchRecords ?? 5000)) {
      seq++;
      const sealed: SealedBatch = sealBatch(
        { host_id: hostId, boot_id: bootId, seq, prev_hash: prev, records },
        key,
      );
      prev = sealed.hash;
      if (sealed.header.t_from >= loseAfter) {
        loseAfter = Number.POSITIVE_INFINITY;
        lost++;
        continue;
      }
      const receivedAt = sealed.header.t_to + 2_000_000;
      const r = await ingestBatch(store, sealed.bytes, { principal: hostId, geo, receivedAt });
      if (r.status !== 'accepted')
        throw new Error(`seed: batch ${spec.name}#${seq} was ${r.status}: ${JSON.stringify(r)}`);
      sent++;
      batches++;
      events += records.filter((x) => x.type !== 'keyframe' && x.type !== 'inventory').length;
      if (batches % 200 === 0) opts.progress?.({ events, batches, elapsedMs: Date.now() - started });
    }
    const revoked = index === opts.hosts - 1 && opts.hosts > 2;
    if (revoked) await setHostStatus(store, hostId, 'revoked');
    const silent = spec.to < end - DAY;
    const late = !silent && spec.to < end - 10 * 60_000_000;
    results[index] = {
      host_id: hostId,
      name: spec.name,
      role: spec.role,
      events: sim.events,
      batches: sent,
      lost,
      incident: spec.incident,
      status: revoked ? 'revoked' : silent ? 'silent' : late ? 'late' : 'recording',
    };
  };

  const concurrency = Math.max(1, Math.min(opts.concurrency ?? 1, enrolled.length));
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < enrolled.length) await runHost(next++);
    }),
  );
  return { hosts: results, events, batches, elapsedMs: Date.now() - started };
}
