import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadPrivateKey, type SealedBatch, sealBatch } from '../../src/protocol/index.js';
import { listAuditEvents } from '../../src/query/index.js';
import { AuditTrail } from '../../src/roles/server/audit-trail.js';
import { setHostStatus } from '../../src/roles/server/enrollment.js';
import { watchRevocations } from '../../src/roles/server/revocation-watch.js';
import { createServerHandlers } from '../../src/roles/server/server-handlers.js';
import { Spool } from '../../src/spool/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import {
  BatchUploader,
  generateSshKeyPair,
  sshFingerprint,
  startSshServer,
} from '../../src/transport/index.js';
import { enrollDirectly } from '../helpers/approved-host.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

const serverKey = generateSshKeyPair();

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One server node on its own connection to the shared store, as `pofr server run` composes it. */
async function startNode(store: Store) {
  const audit = AuditTrail.inMemory(store, () => {});
  const server = await startSshServer({
    hostKey: serverKey.privateKey,
    host: '127.0.0.1',
    port: 0,
    handlers: createServerHandlers({ store, audit, log: () => {} }),
  });
  const watch = watchRevocations(store, server, audit, () => {}, 200);
  return {
    server,
    async close() {
      watch.stop();
      await server.close();
      await audit.close();
    },
  };
}

for (const dialect of DIALECTS) {
  describe(`[${dialect}] revocation`, () => {
    test('a revocation done elsewhere cuts the open connections of the host on every node, mid-stream', (t) =>
      withStore(t, dialect, async (storeA) => {
        const storeB = await openStore(storeA.config);
        const dir = mkdtempSync(join(tmpdir(), 'pofr-revoke-'));
        const nodeA = await startNode(storeA);
        const nodeB = await startNode(storeB);
        const uploaders: BatchUploader[] = [];
        let producing: NodeJS.Timeout | undefined;
        try {
          const { hostId, ssh, signing } = await enrollDirectly(storeA, { name: 'streamer' });
          const key = loadPrivateKey(signing.privatePem);
          // The host streams a batch every 20 ms to node A, and keeps a second connection on node B.
          const spool = Spool.open(join(dir, 'spool'));
          const produce = () => {
            const head = spool.chainHead();
            const b: SealedBatch = sealBatch(
              {
                host_id: hostId,
                boot_id: 'boot',
                seq: head.seq + 1,
                prev_hash: head.hash,
                records: [{ type: 'endpoint_close', t: Date.now() * 1000, key: `k${head.seq}` }],
              },
              key,
            );
            spool.append(b);
            for (const u of uploaders) u.notify();
          };
          producing = setInterval(produce, 20);
          const logs: string[] = [];
          for (const node of [nodeA, nodeB]) {
            const up = new BatchUploader({
              host: '127.0.0.1',
              port: node.server.port,
              username: hostId,
              sshPrivateKey: ssh.privateKey,
              pinnedFingerprint: sshFingerprint(serverKey.publicKey),
              queue: node === nodeA ? spool : { pending: () => [], ack: () => {}, quarantine: () => {} },
              backoff: { minMs: 50, maxMs: 200 },
              pollMs: 20,
              log: (m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`),
            });
            uploaders.push(up);
            up.start();
          }
          await until(
            'both nodes serve the host',
            () =>
              nodeA.server.connectedHosts().includes(hostId) &&
              nodeB.server.connectedHosts().includes(hostId),
          );
          const stored = async () =>
            Number(
              (
                await storeA.db
                  .selectFrom('batches')
                  .select((eb) => eb.fn.countAll<number>().as('n'))
                  .where('host_id', '=', hostId)
                  .executeTakeFirstOrThrow()
              ).n,
            );
          await until('batches flowing', async () => (await stored()) >= 5);

          // Revoked through a third connection, as `pofr server revoke` on another machine would.
          const revoker = await openStore(storeA.config);
          const revokedAt = Date.now();
          await setHostStatus(revoker, hostId, 'revoked');
          await revoker.close();
          await until(
            'the host cut on both nodes',
            () =>
              !nodeA.server.connectedHosts().includes(hostId) &&
              !nodeB.server.connectedHosts().includes(hostId),
          );
          const cutAfterMs = Date.now() - revokedAt;
          t.diagnostic(
            `cut on both nodes ${cutAfterMs} ms after the revocation (poll every 200 ms here, 500 ms in pofr server run)`,
          );

          // Mid-stream: the host keeps producing, nothing more is stored, its reconnects are refused.
          const atCut = await stored();
          await until('a reconnect refused', () =>
            logs.some((l) => /revoked/.test(l) && /refused this client/.test(l)),
          );
          await new Promise((r) => setTimeout(r, 300));
          assert.ok((await stored()) <= atCut + 1, 'at most the batch in flight committed after the cut');
          assert.ok(spool.depth() > 0, 'the client keeps what it could not deliver');
          assert.ok(
            logs.some((l) => /was revoked: connection cut/.test(l)),
            logs.join('\n'),
          );

          await until('the audit rows', async () => {
            const rows = await listAuditEvents(storeA, { kinds: ['revoked_cut'] });
            return rows.length >= 2;
          });
          const cuts = await listAuditEvents(storeA, { kinds: ['revoked_cut'] });
          assert.ok(cuts.every((r) => r.host_id === hostId && /^127\.0\.0\.1:\d+$/.test(r.remote ?? '')));
          assert.equal(
            new Set(cuts.map((r) => r.remote)).size,
            2,
            'one row per connection cut, one per node',
          );
          const refused = await listAuditEvents(storeA, { kinds: ['revoked_key'] });
          assert.ok(refused.length > 0, 'the reconnects are refused rows');
        } finally {
          clearInterval(producing);
          for (const u of uploaders) await u.stop();
          await nodeA.close();
          await nodeB.close();
          await storeB.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }));
  });
}
