import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { isPofrError, PofrError } from '../../src/errors.js';
import {
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  readBatchFrame,
  sealBatch,
} from '../../src/protocol/index.js';
import { Spool } from '../../src/spool/index.js';
import {
  type AuthKey,
  type BatchAck,
  BatchUploader,
  type EnrollRequest,
  enrollOverSsh,
  generateSshKeyPair,
  type ServerHandlers,
  type SshServer,
  sshFingerprint,
  startSshServer,
  type TransportRefusal,
} from '../../src/transport/index.js';

const serverKey = generateSshKeyPair();
const serverFp = sshFingerprint(serverKey.publicKey);
const clientKey = generateSshKeyPair();
const clientFp = sshFingerprint(clientKey.publicKey);
const signingKeys = generateSigningKeyPair();
const signingKey = loadPrivateKey(signingKeys.privatePem);
const HOST_ID = 'h-test-1';
const FAST = { backoff: { minMs: 20, maxMs: 150 }, pollMs: 50 };

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/**
 * A server whose handlers keep batches in memory the way the real ingest does: seq above the last
 * stored → accepted, at or below → duplicate. Hooks let a test make the store slow or failing.
 */
class FakeStore {
  readonly seqs: number[] = [];
  readonly authorizeCalls: string[] = [];
  readonly enrolls: { req: EnrollRequest; key: AuthKey; clientVersion: string | null }[] = [];
  readonly ingestVersions: (string | null)[] = [];
  readonly refusals: TransportRefusal[] = [];
  ingestCalls = 0;
  concurrent = 0;
  maxConcurrent = 0;
  /** Runs before each batch is stored; may throw (transient failure) or wait. */
  beforeStore: ((seq: number) => Promise<void> | void) | null = null;
  refuse: ((seq: number) => BatchAck | null) | null = null;
  /** What each ingest saw in the client's spool when it ran (seq → was it still spooled). */
  spool: Spool | null = null;
  readonly stillSpooledAtIngest: boolean[] = [];

  handlers(): ServerHandlers {
    return {
      authorize: async (username, key) => {
        this.authorizeCalls.push(username);
        return username === HOST_ID && key.fingerprint === clientFp
          ? { ok: true, principal: HOST_ID }
          : { ok: false, reason: 'unknown host or key' };
      },
      enroll: async (req, ctx) => {
        this.enrolls.push({ req, key: ctx.key, clientVersion: ctx.clientVersion });
        if (req.token !== 'good-token') throw new PofrError('POFR_ENROLL_TOKEN', 'token unknown or expired');
        return { ok: true, host_id: HOST_ID, name: req.name, status: 'approved' };
      },
      refused: (r) => this.refusals.push(r),
      ingest: async (principal, batch, ctx) => {
        this.ingestCalls++;
        this.ingestVersions.push(ctx.clientVersion);
        this.concurrent++;
        this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
        try {
          assert.equal(principal, HOST_ID);
          const seq = readBatchFrame(batch).header.seq;
          if (this.spool) this.stillSpooledAtIngest.push(this.spool.pending().some((p) => p.seq === seq));
          await this.beforeStore?.(seq);
          const refusal = this.refuse?.(seq);
          if (refusal) return refusal;
          const last = this.seqs.at(-1) ?? 0;
          if (seq <= last) return { seq, status: 'duplicate' };
          this.seqs.push(seq);
          return { seq, status: 'accepted' };
        } finally {
          this.concurrent--;
        }
      },
    };
  }
}

async function startServer(store: FakeStore, port = 0): Promise<SshServer & { logs: string[] }> {
  const logs: string[] = [];
  const server = await startSshServer({
    hostKey: serverKey.privateKey,
    host: '127.0.0.1',
    port,
    handlers: store.handlers(),
    log: (msg, fields) => logs.push(`${msg} ${JSON.stringify(fields ?? {})}`),
  });
  cleanups.push(() => server.close());
  return Object.assign(server, { logs });
}

function tempSpool(): Spool {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-transport-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return Spool.open(join(dir, 'spool'));
}

function appendBatches(spool: Spool, n: number): void {
  for (let i = 0; i < n; i++) {
    const head = spool.chainHead();
    const seq = head.seq + 1;
    spool.append(
      sealBatch(
        {
          host_id: HOST_ID,
          boot_id: 'boot-1',
          seq,
          prev_hash: head.hash,
          records: [{ type: 'endpoint_close', t: 1_790_000_000_000_000 + seq, key: `k${seq}` }],
        },
        signingKey,
      ),
    );
  }
}

function uploader(
  port: number,
  spool: Spool,
  extra: Partial<ConstructorParameters<typeof BatchUploader>[0]> = {},
): BatchUploader & { logs: string[] } {
  const logs: string[] = [];
  const up = new BatchUploader({
    host: '127.0.0.1',
    port,
    username: HOST_ID,
    sshPrivateKey: clientKey.privateKey,
    pinnedFingerprint: serverFp,
    queue: spool,
    log: (msg, fields) => logs.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    ...FAST,
    ...extra,
  });
  cleanups.push(() => up.stop());
  return Object.assign(up, { logs });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const enrollRequest = (token: string): EnrollRequest => ({
  method: 'token',
  token,
  name: 'web-1',
  signing_key: signingKeys.publicPem,
  facts: { hostname: 'web-1', machine_id: 'm-1', os: 'Debian 12', kernel: '6.1.0' },
});

/** Opens a raw ssh2 connection as `username`, for probing what the server refuses. */
async function rawClient(
  port: number,
  username: string,
  privateKey = clientKey.privateKey,
): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  cleanups.push(() => {
    client.end();
  });
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey, hostVerifier: () => true });
  });
  return client;
}

/** Resolves with the error of a channel request, or null (closing the channel) if it was granted. */
function grantError(
  open: (cb: (err: Error | undefined, ch: { end(): unknown }) => void) => void,
): Promise<Error | null> {
  return new Promise((resolve) =>
    open((err, ch) => {
      if (err) return resolve(err);
      ch.end();
      resolve(null);
    }),
  );
}

describe('enrollment over SSH', () => {
  test('round trip with a pinned fingerprint: the server sees the request and the client key', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const { reply, serverFingerprint } = await enrollOverSsh({
      host: '127.0.0.1',
      port: server.port,
      sshPrivateKey: clientKey.privateKey,
      pinnedFingerprint: serverFp,
      request: enrollRequest('good-token'),
    });
    assert.deepEqual(reply, { ok: true, host_id: HOST_ID, name: 'web-1', status: 'approved' });
    assert.equal(serverFingerprint, serverFp);
    assert.equal(store.enrolls.length, 1);
    assert.equal(store.enrolls[0].key.fingerprint, clientFp);
    assert.equal(store.enrolls[0].key.openssh, clientKey.publicKey.replace(/ pofr$/, ''));
    assert.equal(store.enrolls[0].req.signing_key, signingKeys.publicPem);
    // Enrollment never consults authorize(): any key that proves itself may ask.
    assert.deepEqual(store.authorizeCalls, []);
  });

  test('a refusal thrown by the server arrives as an error reply with its code', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const { reply } = await enrollOverSsh({
      host: '127.0.0.1',
      port: server.port,
      sshPrivateKey: clientKey.privateKey,
      pinnedFingerprint: serverFp,
      request: enrollRequest('bad-token'),
    });
    assert.deepEqual(reply, { ok: false, code: 'POFR_ENROLL_TOKEN', message: 'token unknown or expired' });
  });

  test('without a pin, the fingerprint is confirmed first, and a no sends nothing', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const asked: string[] = [];
    await assert.rejects(
      enrollOverSsh({
        host: '127.0.0.1',
        port: server.port,
        sshPrivateKey: clientKey.privateKey,
        confirmFingerprint: async (fp) => {
          asked.push(fp);
          return false;
        },
        request: enrollRequest('good-token'),
      }),
      (e) => isPofrError(e) && e.code === 'POFR_ENROLL_FAILED' && e.message.includes(serverFp),
    );
    assert.deepEqual(asked, [serverFp]);
    assert.equal(store.enrolls.length, 0);

    const { reply, serverFingerprint } = await enrollOverSsh({
      host: '127.0.0.1',
      port: server.port,
      sshPrivateKey: clientKey.privateKey,
      confirmFingerprint: async () => true,
      request: enrollRequest('good-token'),
    });
    assert.equal(reply.ok, true);
    assert.equal(serverFingerprint, serverFp);
  });

  test('a wrong pinned fingerprint aborts with POFR_HOSTKEY_CHANGED before anything is sent', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const other = sshFingerprint(generateSshKeyPair().publicKey);
    await assert.rejects(
      enrollOverSsh({
        host: '127.0.0.1',
        port: server.port,
        sshPrivateKey: clientKey.privateKey,
        pinnedFingerprint: other,
        request: enrollRequest('good-token'),
      }),
      (e) =>
        isPofrError(e) &&
        e.code === 'POFR_HOSTKEY_CHANGED' &&
        e.message.includes(`from ${other} to ${serverFp}`) &&
        e.message.includes('pofr client enroll --fingerprint'),
    );
    assert.equal(store.enrolls.length, 0);
    assert.ok(!server.logs.some((l) => l.startsWith('ssh client authenticated')));
  });
});

describe('protocol and version announcement', () => {
  /** Enrolls with a good token and a pinned key, announcing what the test says. */
  const enrollAnnouncing = (port: number, announce: { clientVersion: string; protocol?: number }) =>
    enrollOverSsh({
      host: '127.0.0.1',
      port,
      sshPrivateKey: clientKey.privateKey,
      pinnedFingerprint: serverFp,
      request: enrollRequest('good-token'),
      ...announce,
    });

  test('the server hears the client version at enrollment and on every ingest channel', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const { reply } = await enrollAnnouncing(server.port, { clientVersion: '9.8.7' });
    assert.equal(reply.ok, true);
    assert.equal(store.enrolls[0].clientVersion, '9.8.7');
    const spool = tempSpool();
    appendBatches(spool, 2);
    const up = uploader(server.port, spool, { clientVersion: '9.8.7' });
    up.start();
    await waitFor('both batches', () => spool.depth() === 0);
    assert.deepEqual(store.ingestVersions, ['9.8.7', '9.8.7']);
    await up.stop();
  });

  test('a client speaking another protocol is refused with both versions named, and keeps its batches', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    await assert.rejects(
      enrollAnnouncing(server.port, { clientVersion: '9.0.0', protocol: 9 }),
      /POFR_PROTOCOL_VERSION: pofr 9\.0\.0 speaks protocol 9; this server speaks protocols 1, 2, 3, 4\. Install a client built by this server/,
    );
    assert.equal(store.enrolls.length, 0, 'the request never reached enroll()');

    const spool = tempSpool();
    appendBatches(spool, 1);
    const up = uploader(server.port, spool, { clientVersion: '9.0.0', protocol: 9 });
    up.start();
    await waitFor('a refused attempt', () => /POFR_PROTOCOL_VERSION/.test(up.status().lastError ?? ''));
    assert.match(up.status().lastError ?? '', /speaks protocol 9; this server speaks protocols 1, 2, 3/);
    assert.equal(store.ingestCalls, 0);
    assert.equal(spool.depth(), 1, 'nothing is quarantined or lost');
    assert.ok(
      server.logs.some((l) => l.startsWith('refused client protocol') && l.includes('"protocol":"9"')),
    );
    assert.ok(
      store.refusals.some((r) => r.kind === 'exec_refused' && r.code === 'POFR_PROTOCOL_VERSION'),
      'the refused protocol is told to the audit trail',
    );
    await up.stop();
  });
});

describe('SSH server refusals', () => {
  test('an unknown key is refused at authentication', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const stranger = generateSshKeyPair();
    await assert.rejects(
      rawClient(server.port, HOST_ID, stranger.privateKey),
      (e: Error & { level?: string }) => {
        return e.level === 'client-authentication';
      },
    );
    await assert.rejects(rawClient(server.port, 'h-unknown'), (e: Error & { level?: string }) => {
      return e.level === 'client-authentication';
    });
    assert.ok(store.authorizeCalls.includes(HOST_ID) && store.authorizeCalls.includes('h-unknown'));
    assert.ok(server.logs.some((l) => l.startsWith('ssh auth refused') && l.includes('unknown host or key')));
    const keyRefusals = store.refusals.filter((r) => r.kind === 'unknown_key');
    assert.deepEqual(
      keyRefusals.map((r) => [r.user, r.fingerprint, r.source]),
      [
        [HOST_ID, sshFingerprint(stranger.publicKey), '127.0.0.1'],
        ['h-unknown', clientFp, '127.0.0.1'],
      ],
      'one refusal per key and user, with the key and the address',
    );
    assert.match(keyRefusals[0].remote ?? '', /^127\.0\.0\.1:\d+$/);
  });

  test('password attempts, non-ed25519 keys and silent sockets are refused and told', async () => {
    const store = new FakeStore();
    const logs: string[] = [];
    const server = await startSshServer({
      hostKey: serverKey.privateKey,
      host: '127.0.0.1',
      port: 0,
      handlers: store.handlers(),
      authTimeoutMs: 300,
      log: (msg) => logs.push(msg),
    });
    cleanups.push(() => server.close());
    const pw = new ssh2.Client();
    cleanups.push(() => {
      pw.end();
    });
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        pw.once('ready', () => resolve()).once('error', reject);
        pw.connect({
          host: '127.0.0.1',
          port: server.port,
          username: HOST_ID,
          password: 'hunter2',
          hostVerifier: () => true,
        });
      }),
    );
    const ecdsa = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 });
    await assert.rejects(rawClient(server.port, HOST_ID, ecdsa.private));
    const silent = connect(server.port, '127.0.0.1');
    silent.on('error', () => {});
    // Read, or the server's FIN is never noticed and 'close' never comes.
    silent.resume();
    cleanups.push(() => {
      silent.destroy();
    });
    await once(silent, 'close');
    const kinds = store.refusals.map((r) => r.kind);
    assert.ok(kinds.includes('auth_method'), `a password attempt is refused and told: ${kinds}`);
    assert.ok(kinds.includes('key_type'), `an ecdsa key is refused and told: ${kinds}`);
    assert.ok(kinds.includes('auth_timeout'), `a socket that says nothing is dropped and told: ${kinds}`);
    assert.equal(
      store.refusals.find((r) => r.kind === 'auth_method')?.user,
      HOST_ID,
      'the refusal names the user it tried',
    );
  });

  test('shells, ptys, sftp, forwarding and other commands are refused', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const client = await rawClient(server.port, HOST_ID);
    const execErr = (cmd: string, c = client) => grantError((cb) => c.exec(cmd, cb));
    assert.ok(await execErr('id'));
    assert.ok(await execErr('pofr-ingest; id'));
    assert.ok(await execErr('pofr-enroll'), 'a host may not enroll');
    assert.match(
      String(await grantError((cb) => client.exec('pofr-ingest', { pty: true }, cb))),
      /pseudo-terminal/,
    );
    assert.ok(await grantError((cb) => client.shell(false, cb)), 'shell without a pty');
    assert.ok(await grantError((cb) => client.shell(cb)), 'shell with a pty');
    // ssh2 keeps a session open after a refused request, and a connection has four: go on with another.
    const second = await rawClient(server.port, HOST_ID);
    const sftpErr = await new Promise<Error | null>((resolve) => second.sftp((err) => resolve(err ?? null)));
    assert.ok(sftpErr);
    const fwdErr = await new Promise<Error | null>((resolve) =>
      second.forwardOut('127.0.0.1', 1, '127.0.0.1', server.port, (err) => resolve(err ?? null)),
    );
    assert.ok(fwdErr);
    const listenErr = await new Promise<Error | null>((resolve) =>
      second.forwardIn('127.0.0.1', 0, (err) => resolve(err ?? null)),
    );
    assert.ok(listenErr);

    const enroller = await rawClient(server.port, 'enroll');
    assert.ok(await execErr('pofr-ingest', enroller), 'an enrollment connection may not ingest');
    assert.equal(store.ingestCalls, 0);
    assert.ok(server.logs.some((l) => l.startsWith('ssh exec refused') && l.includes('"command":"id"')));
    const told = new Set(store.refusals.map((r) => `${r.kind}: ${r.reason}`));
    for (const expected of [
      'exec_refused: exec "id" is not offered to user h-test-1',
      'exec_refused: exec "pofr-enroll" is not offered to user h-test-1',
      'exec_refused: exec "pofr-ingest" is not offered to user enroll',
      'channel_refused: a pseudo-terminal is not offered',
      'channel_refused: a shell is not offered',
      'channel_refused: sftp is not offered',
      `forward_refused: TCP forwarding to 127.0.0.1:${server.port} is not offered`,
      'forward_refused: global request tcpip-forward (remote forwarding) is not offered',
    ]) {
      assert.ok(told.has(expected), `told: ${expected}\n(got ${[...told].join('\n')})`);
    }
    assert.ok(store.refusals.every((r) => r.remote?.startsWith('127.0.0.1:')));
  });

  test('an oversize frame on the ingest channel closes it with a protocol error, storing nothing', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const client = await rawClient(server.port, HOST_ID);
    const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      client.exec('pofr-ingest', (err, ch) => (err ? reject(err) : resolve(ch))),
    );
    let stderr = '';
    channel.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exitCode = new Promise<number>((resolve) => channel.on('exit', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => channel.on('close', () => resolve()));
    channel.on('data', () => {});
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(0xffff_fff0);
    channel.write(huge);
    assert.equal(await exitCode, 1);
    await closed;
    assert.match(stderr, /protocol error: peer announced a frame of 4294967280 bytes/);
    assert.equal(store.ingestCalls, 0);
    assert.deepEqual(
      store.refusals.map((r) => [r.kind, r.hostId, r.fingerprint, r.code]),
      [['frame_too_large', HOST_ID, clientFp, 'POFR_BATCH_TOO_LARGE']],
    );
  });

  test('sockets beyond maxConnections are closed at once, and the server keeps serving', async () => {
    const store = new FakeStore();
    const logs: string[] = [];
    const server = await startSshServer({
      hostKey: serverKey.privateKey,
      host: '127.0.0.1',
      port: 0,
      handlers: store.handlers(),
      maxConnections: 2,
      log: (msg) => logs.push(msg),
    });
    cleanups.push(() => server.close());
    const idle = [connect(server.port, '127.0.0.1'), connect(server.port, '127.0.0.1')];
    for (const s of idle) {
      s.on('error', () => {});
      cleanups.push(() => {
        s.destroy();
      });
      await once(s, 'connect');
    }
    const third = connect(server.port, '127.0.0.1');
    third.on('error', () => {});
    await once(third, 'close');
    assert.ok(logs.some((l) => l.includes("connections are open, the server's cap")));
    assert.deepEqual(
      store.refusals.map((r) => r.kind),
      ['connection_limit'],
      'the refused socket is told to the audit trail',
    );
    for (const s of idle) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const client = await rawClient(server.port, HOST_ID);
    assert.ok(client, 'a client connects again once sockets are free');
  });

  test('close() ends client connections and frees the port', async () => {
    const store = new FakeStore();
    const server = await startServer(store);
    const client = await rawClient(server.port, HOST_ID);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await server.close();
    await closed;
    const again = await startSshServer({
      hostKey: serverKey.privateKey,
      host: '127.0.0.1',
      port: server.port,
      handlers: store.handlers(),
    });
    assert.equal(again.port, server.port);
    await again.close();
  });
});

describe('BatchUploader', () => {
  test('delivers spooled batches in order, one at a time, deleting each only after its ACK', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    store.spool = spool;
    store.beforeStore = () => new Promise((r) => setTimeout(r, 5));
    const server = await startServer(store);
    appendBatches(spool, 12);
    const up = uploader(server.port, spool, { window: 4 });
    up.start();
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(store.maxConcurrent, 1);
    assert.ok(
      store.stillSpooledAtIngest.every(Boolean),
      'every batch was still spooled while the server stored it',
    );
    assert.equal(spool.depth(), 0);
    assert.equal(up.status().acked, 12);
    assert.equal(up.status().connected, true);
    assert.notEqual(up.status().lastAckAt, null);

    // More batches later: notify() sends them over the same connection.
    appendBatches(spool, 3);
    up.notify();
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs.slice(-3), [13, 14, 15]);
  });

  test('a failing store loses nothing: the channel closes unacknowledged and the uploader retries', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    let failures = 0;
    store.beforeStore = (seq) => {
      if (seq === 3 && failures < 2) {
        failures++;
        throw new Error('database is locked');
      }
    };
    const server = await startServer(store);
    appendBatches(spool, 5);
    const up = uploader(server.port, spool, { window: 3 });
    up.start();
    assert.equal(await up.flush(15_000), true);
    assert.equal(failures, 2);
    assert.deepEqual(store.seqs, [1, 2, 3, 4, 5]);
    assert.equal(spool.depth(), 0);
    assert.ok(
      up.logs.some((l) => l.startsWith('upload connection failed') && l.includes('transient server error')),
    );
    assert.ok(server.logs.some((l) => l.startsWith('ssh ingest failed') && l.includes('database is locked')));
  });

  test('a slow store only delays: flush times out, batches stay queued, and arrive once it recovers', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    store.beforeStore = () => gate;
    const server = await startServer(store);
    appendBatches(spool, 3);
    const up = uploader(server.port, spool);
    up.start();
    assert.equal(await up.flush(200), false);
    assert.equal(spool.depth(), 3);
    release();
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs, [1, 2, 3]);
  });

  test('server stopped and restarted on the same port: the uploader reconnects and delivers everything', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    const first = await startServer(store);
    const port = first.port;
    appendBatches(spool, 2);
    const up = uploader(port, spool);
    up.start();
    assert.equal(await up.flush(15_000), true);
    await first.close();
    await waitFor(
      'uploader notices the outage',
      () => !up.status().connected && up.status().lastError !== null,
    );
    appendBatches(spool, 3);
    up.notify();
    assert.equal(spool.depth(), 3);
    await startServer(store, port);
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs, [1, 2, 3, 4, 5]);
  });

  test('duplicate ACKs remove the batch like accepted ones', async () => {
    const store = new FakeStore();
    store.seqs.push(1, 2);
    const spool = tempSpool();
    const server = await startServer(store);
    appendBatches(spool, 3);
    const up = uploader(server.port, spool);
    up.start();
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs, [1, 2, 3]);
    assert.equal(up.status().acked, 3);
    assert.equal(spool.depth(), 0);
  });

  test('a refused batch is quarantined with its code and reason, and the queue moves on', async () => {
    const store = new FakeStore();
    store.refuse = (seq) =>
      seq === 2 ? { seq, status: 'refused', code: 'POFR_BATCH_SIGNATURE', reason: 'bad signature' } : null;
    const spool = tempSpool();
    const server = await startServer(store);
    appendBatches(spool, 3);
    const up = uploader(server.port, spool);
    up.start();
    assert.equal(await up.flush(15_000), true);
    assert.deepEqual(store.seqs, [1, 3]);
    const reason = join(spool.dir, 'rejected', '00000000000000000002.pofrb.reason.txt');
    assert.match(readFileSync(reason, 'utf8'), /POFR_BATCH_SIGNATURE: bad signature/);
    assert.ok(up.logs.some((l) => l.startsWith('BATCH REFUSED') && l.includes('"seq":2')));
  });

  test('a changed server key is never sent to: POFR_HOSTKEY_CHANGED is logged and retried', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    const server = await startServer(store);
    appendBatches(spool, 2);
    const pinned = sshFingerprint(generateSshKeyPair().publicKey);
    const up = uploader(server.port, spool, { pinnedFingerprint: pinned });
    up.start();
    await waitFor(
      'two failed attempts',
      () => up.logs.filter((l) => l.includes('POFR_HOSTKEY_CHANGED')).length >= 2,
    );
    assert.ok(up.status().lastError?.includes(`server key changed from ${pinned} to ${serverFp}`));
    assert.equal(store.ingestCalls, 0);
    assert.deepEqual(store.authorizeCalls, []);
    assert.equal(spool.depth(), 2);
    await up.stop();
  });

  test('a key the server refuses is reported clearly, retried, and keeps its batches', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    const server = await startServer(store);
    appendBatches(spool, 1);
    const up = uploader(server.port, spool, { username: 'h-revoked' });
    up.start();
    await waitFor(
      'two refused attempts',
      () => up.logs.filter((l) => l.includes('refused this client')).length >= 2,
    );
    assert.match(
      up.status().lastError ?? '',
      /host id h-revoked is unknown to the server, waiting for approval, or its key was revoked/,
    );
    assert.equal(up.status().connected, false);
    assert.equal(spool.depth(), 1);
    await up.stop();
  });

  test('stop() keeps unacknowledged batches for the next start', async () => {
    const store = new FakeStore();
    const spool = tempSpool();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    store.beforeStore = () => gate;
    const server = await startServer(store);
    appendBatches(spool, 2);
    const up = uploader(server.port, spool);
    up.start();
    await waitFor('the server is storing batch 1', () => store.ingestCalls === 1);
    await up.stop();
    assert.equal(up.status().connected, false);
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [1, 2],
    );
    assert.ok(existsSync(join(spool.dir, '00000000000000000001.pofrb')));
    assert.equal(spool.chainHead().seq, 2);
    assert.notEqual(spool.chainHead().hash, GENESIS_HASH);
    // close() waits for handler calls still running, so let the store finish first.
    release();
    await server.close();
    assert.equal(spool.depth(), 2, 'an ACK that could no longer be sent removes nothing');
  });
});
