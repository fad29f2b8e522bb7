import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import {
  type EndpointInfo,
  type FileInfo,
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  type PofrRecord,
  type ProcessImage,
  type SealedBatch,
  type SigningKeyPair,
  sealBatch,
} from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';

/** Wall-clock base of the test records: 2026-01-01T00:00:00Z in µs. */
export const T0 = 1_767_225_600_000_000;

/** A host enrolled directly in the store, and the recorder side that seals its chain of batches. */
export class TestHost {
  seq = 0;
  prevHash = GENESIS_HASH;

  constructor(
    readonly hostId: string,
    readonly keys: SigningKeyPair,
    public bootId: string,
  ) {}

  /** Seals the next batch of the chain. */
  next(records: PofrRecord[]): SealedBatch {
    const b = this.sealAt(this.seq + 1, this.prevHash, records);
    this.seq = b.header.seq;
    this.prevHash = b.hash;
    return b;
  }

  /** Seals a batch at any place, without moving the chain (for gaps, forks and replays). */
  sealAt(
    seq: number,
    prevHash: string,
    records: PofrRecord[],
    keys: SigningKeyPair = this.keys,
  ): SealedBatch {
    return sealBatch(
      { host_id: this.hostId, boot_id: this.bootId, seq, prev_hash: prevHash, records },
      loadPrivateKey(keys.privatePem),
    );
  }
}

export async function addHost(
  store: Store,
  opts: { status?: 'approved' | 'pending' | 'revoked'; name?: string } = {},
): Promise<TestHost> {
  const hostId = `h-${randomBytes(4).toString('hex')}`;
  const keys = generateSigningKeyPair();
  await store.db
    .insertInto('hosts')
    .values({
      host_id: hostId,
      name: opts.name ?? `${hostId}.example`,
      status: opts.status ?? 'approved',
      ssh_key: 'ssh-ed25519 AAAA test',
      ssh_fingerprint: `SHA256:${hostId}`,
      signing_key: keys.publicPem,
      enrolled_at: T0,
      approved_at: opts.status === 'approved' || opts.status === undefined ? T0 : null,
      revoked_at: null,
    })
    .execute();
  return new TestHost(hostId, keys, `boot-${randomBytes(4).toString('hex')}`);
}

export function proc(pid: number, startTicks: number, over: Partial<ProcessImage> = {}): ProcessImage {
  return {
    pid,
    start_ticks: startTicks,
    start: T0 + startTicks * 10_000,
    ppid: 1,
    parent_start_ticks: null,
    exe: '/usr/bin/true',
    comm: 'true',
    argv: ['true'],
    cwd: '/',
    ruid: 0,
    euid: 0,
    rgid: 0,
    egid: 0,
    source: 'trace',
    observer: false,
    ...over,
  };
}

export function file(
  pid: number,
  startTicks: number,
  fd: number,
  path: string,
  over: Partial<FileInfo> = {},
): FileInfo {
  return { pid, start_ticks: startTicks, fd, path, kind: 'file', ...over };
}

export function endpoint(key: string, over: Partial<EndpointInfo> = {}): EndpointInfo {
  return {
    key,
    pid: null,
    start_ticks: null,
    proto: 'tcp',
    family: 4,
    local_ip: '10.0.0.2',
    local_port: 40000,
    remote_ip: '192.0.2.7',
    remote_port: 443,
    state: 'ESTABLISHED',
    inode: 1234,
    ...over,
  };
}

export function inventory(
  t: number,
  over: Partial<Extract<PofrRecord, { type: 'inventory' }>['inventory']> = {},
) {
  return {
    type: 'inventory' as const,
    t,
    inventory: {
      hostname: 'web1',
      os: 'Debian GNU/Linux 12',
      kernel: '6.1.0-test',
      arch: 'x86_64',
      boot_time: T0 - 3_600_000_000,
      timezone: 'Europe/Paris',
      machine_id: 'abc123',
      users: [
        { uid: 0, gid: 0, name: 'root', home: '/root', shell: '/bin/bash' },
        { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/bash' },
      ],
      groups: [{ gid: 1000, name: 'alice', members: ['alice'] }],
      interfaces: [{ name: 'eth0', mac: '52:54:00:00:00:01', addresses: ['10.0.0.2/24'] }],
      routes: [
        { family: 4 as const, destination: '0.0.0.0/0', gateway: '10.0.0.1', dev: 'eth0', metric: 100 },
      ],
      devices: [{ bus: 'usb', id: '1-1', vendor_id: '1d6b', product_id: '0002', name: 'hub', serial: null }],
      ...over,
    },
  };
}

/** Counts rows of a table, in either dialect. */
export async function countRows(
  store: Store,
  table: 'batches' | 'batch_evidence' | 'refused_batches' | 'gaps' | 'processes' | 'file_opens' | 'endpoints',
): Promise<number> {
  const r = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Makes the store itself refuse any file row with this path, as a constraint the data breaks
 * (SQLITE_CONSTRAINT_TRIGGER, SQLSTATE 23514): a content error raised after a batch's earlier rows
 * were written. The path is a test constant, inlined into the trigger's text.
 */
export async function refusePath(store: Store, path: string): Promise<void> {
  const lit = sql.lit(path);
  const message = sql.lit(`path ${path} is refused`);
  if (store.caps.engine === 'sqlite') {
    await sql`CREATE TRIGGER refuse_path BEFORE INSERT ON file_opens WHEN NEW.path = ${lit}
      BEGIN SELECT RAISE(ABORT, ${message}); END`.execute(store.db);
    return;
  }
  await sql`CREATE FUNCTION refuse_path() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN IF NEW.path = ${lit} THEN RAISE EXCEPTION ${message} USING ERRCODE = '23514'; END IF;
    RETURN NEW; END $fn$`.execute(store.db);
  await sql`CREATE TRIGGER refuse_path BEFORE INSERT ON file_opens FOR EACH ROW EXECUTE FUNCTION refuse_path()`.execute(
    store.db,
  );
}
