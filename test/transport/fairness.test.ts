import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import {
  GENESIS_HASH,
  loadPrivateKey,
  type PofrRecord,
  type SealedBatch,
  sealBatch,
} from '../../src/protocol/index.js';
import { listAuditEvents } from '../../src/query/index.js';
import { AuditTrail } from '../../src/roles/server/audit-trail.js';
import { createServerHandlers } from '../../src/roles/server/server-handlers.js';
import type { Store } from '../../src/store/index.js';
import {
  BatchUploader,
  encodeFrame,
  generateSshKeyPair,
  type SshKeyPair,
  type SshServerOptions,
  sshFingerprint,
  startSshServer,
} from '../../src/transport/index.js';
import { enrollDirectly } from '../helpers/approved-host.js';
import { createTestStore } from '../helpers/store-dialects.js';

const serverKey = generateSshKeyPair();
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Host {
  readonly id: string;
  readonly ssh: SshKeyPair;
  batches(n: number, recordsEach: number): SealedBatch[];
}

async function addHost(store: Store): Promise<Host> {
  const { hostId: id, ssh, signing } = await enrollDirectly(store);
  const key = loadPrivateKey(signing.privatePem);
  return {
    id,
    ssh,
    batches(n, recordsEach) {
      const out: SealedBatch[] = [];
      let prev = GENESIS_HASH;
      for (let seq = 1; seq <= n; seq++) {
        const records: PofrRecord[] = Array.from({ length: recordsEach }, (_, i) => ({
          type: 'endpoint_close',
          t: 1_790_000_000_000_000 + seq * 10_000 + i,
          key: `k-${seq}-${i}`,
        }));
        const b = sealBatch({ host_id: id, boot_id: 'b', seq, prev_hash: prev, records }, key);
        out.push(b);
        prev = b.hash;
      }
      return out;
    },
  };
}

/** A queue over batches in memory, as the uploader sees a spool. */
function memoryQueue(batches: SealedBatch[]) {
  const pending = new Map(batches.map((b) => [b.header.seq, b]));
  let acked = 0;
  return {
    get acked() {
      return acked;
    },
    add(b: SealedBatch) {
      pending.set(b.header.seq, b);
    },
    pending: () => [...pending.values()].map((b) => ({ seq: b.header.seq, read: () => b.bytes })),
    ack(seq: number) {
      if (pending.delete(seq)) acked++;
    },
    quarantine(seq: number) {
      pending.delete(seq);
    },
  };
}

async function server(store: Store, extra: Partial<SshServerOptions> = {}) {
  const audit = AuditTrail.inMemory(store, () => {});
  const srv = await startSshServer({
    hostKey: serverKey.privateKey,
    host: '127.0.0.1',
    port: 0,
    handlers: createServerHandlers({ store, audit, log: () => {} }),
    ...extra,
  });
  cleanups.push(async () => {
    await srv.close();
    await audit.close();
  });
  return { srv, audit };
}

function uploader(port: number, host: Host, queue: ReturnType<typeof memoryQueue>, localAddress?: string) {
  const up = new BatchUploader({
    host: '127.0.0.1',
    port,
    username: host.id,
    sshPrivateKey: host.ssh.privateKey,
    pinnedFingerprint: sshFingerprint(serverKey.publicKey),
    queue,
    backoff: { minMs: 50, maxMs: 300 },
    pollMs: 20,
    ...(localAddress ? { localAddress } : {}),
  });
  cleanups.push(() => up.stop());
  up.start();
  return up;
}

describe('caps and fairness (real SSH, real SQLite store)', async () => {
  const ts = (await createTestStore('sqlite'))!;
  cleanups.push(() => ts.cleanup());
  const store = ts.store;

  test('a host flooding batches does not hold up another: ACKs interleave, one batch each at the store', async () => {
    const { srv } = await server(store);
    const flooder = await addHost(store);
    const other = await addHost(store);
    // The other host is connected first and idle: what is measured is its batch's wait, not a handshake.
    const single = memoryQueue([]);
    const up = uploader(srv.port, other, single);
    await until('the other host connected', () => up.status().connected);
    const flood = memoryQueue(flooder.batches(120, 1500));
    uploader(srv.port, flooder, flood);
    await until('the flood under way', () => flood.acked >= 3);
    const floodAckedAtSend = flood.acked;
    single.add(other.batches(1, 10)[0]);
    up.notify();
    await until("the other host's ACK", () => single.acked === 1, 60_000);
    const waitedFor = flood.acked - floodAckedAtSend;
    await until('the flood delivered', () => flood.acked === 120, 180_000);
    // About one of the flooder's batches at the store, a few more on a loaded machine: never its backlog.
    assert.ok(
      waitedFor <= 20,
      `the single batch waited for ${waitedFor} of the flooder's batches (its backlog was ${120 - floodAckedAtSend}); it should wait for about one`,
    );
  });

  test('half-open sockets from one address hit its cap; another address still gets in; silent ones are dropped', async () => {
    const { srv } = await server(store, {
      authTimeoutMs: 1500,
      limits: { maxUnauthenticatedPerSource: 4 },
    });
    const sockets: Socket[] = [];
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    for (let i = 0; i < 4; i++) {
      const s = connect({ port: srv.port, host: '127.0.0.1', localAddress: '127.0.0.1' });
      s.on('error', () => {});
      s.resume();
      sockets.push(s);
      await once(s, 'connect');
    }
    const fifth = connect({ port: srv.port, host: '127.0.0.1', localAddress: '127.0.0.1' });
    fifth.on('error', () => {});
    fifth.resume();
    await once(fifth, 'close');
    // The same moment, from another address of the machine: a host delivers.
    const host = await addHost(store);
    const q = memoryQueue(host.batches(2, 5));
    uploader(srv.port, host, q, '127.0.0.2');
    await until('the other address delivered', () => q.acked === 2);
    await until('the silent sockets dropped', () => sockets.every((s) => s.destroyed || s.readableEnded));
    const rows = await listAuditEvents(store, { source: '127.0.0.1' });
    assert.ok(
      rows.some(
        (r) => r.kind === 'rate_limit' && /from 127\.0\.0\.1 are still authenticating/.test(r.reason),
      ),
    );
    assert.ok(rows.filter((r) => r.kind === 'auth_timeout').length >= 4, 'each silent socket is a row');
  });

  test("a slow client's half-sent frame is dropped once it stalls, while others are served", async () => {
    const { srv } = await server(store, { ingestLimits: { stallMs: 600 } });
    const slow = await addHost(store);
    const client = new ssh2.Client();
    cleanups.push(() => {
      client.end();
    });
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: srv.port,
        username: slow.id,
        privateKey: slow.ssh.privateKey,
        hostVerifier: () => true,
      });
    });
    const frame = encodeFrame(slow.batches(1, 200)[0].bytes);
    const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      client.exec('pofr-ingest', (e, c) => (e ? reject(e) : resolve(c))),
    );
    let stderr = '';
    ch.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // Read, or the channel's end is never noticed.
    ch.resume();
    const closed = once(ch, 'close');
    // Half of the frame, then nothing: the server holds its buffer only so long.
    ch.write(frame.subarray(0, frame.length >> 1));
    const other = await addHost(store);
    const q = memoryQueue(other.batches(3, 5));
    uploader(srv.port, other, q);
    await until('the other host delivered meanwhile', () => q.acked === 3);
    await closed;
    assert.match(stderr, /a frame stalled: \d+ bytes of it arrived, then nothing for 600 ms/);
    const rows = await listAuditEvents(store, { kinds: ['frame_stalled'] });
    assert.equal(rows.at(-1)?.host_id, slow.id);
  });

  test('idle connections of one host are capped: a new one closes the oldest, other hosts keep theirs', async () => {
    const { srv } = await server(store, { limits: { maxPerHost: 2 } });
    const host = await addHost(store);
    const bystander = await addHost(store);
    const open = async (h: Host) => {
      const c = new ssh2.Client();
      cleanups.push(() => {
        c.end();
      });
      await new Promise<void>((resolve, reject) => {
        c.once('ready', () => resolve()).once('error', reject);
        c.connect({
          host: '127.0.0.1',
          port: srv.port,
          username: h.id,
          privateKey: h.ssh.privateKey,
          hostVerifier: () => true,
        });
      });
      let closed = false;
      c.on('close', () => {
        closed = true;
      });
      return { closed: () => closed };
    };
    const b = await open(bystander);
    const first = await open(host);
    const second = await open(host);
    const third = await open(host);
    await until('the oldest closed', () => first.closed());
    assert.equal(second.closed() || third.closed() || b.closed(), false);
    const rows = await listAuditEvents(store, { kinds: ['rate_limit'], hosts: [host.id] });
    assert.match(rows.at(-1)?.reason ?? '', /more than 2 connections open; closing its oldest/);
  });
});
