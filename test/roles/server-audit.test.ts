import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { generateSigningKeyPair } from '../../src/protocol/index.js';
import { listAuditEvents } from '../../src/query/index.js';
import { AuditTrail } from '../../src/roles/server/audit-trail.js';
import { createServerHandlers } from '../../src/roles/server/server-handlers.js';
import type { Store } from '../../src/store/index.js';
import {
  encodeFrame,
  generateSshKeyPair,
  type SshKeyPair,
  sshFingerprint,
  startSshServer,
} from '../../src/transport/index.js';
import { enrollDirectly } from '../helpers/approved-host.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { T0, TestHost } from '../ingest/host-fixture.js';

const serverKey = generateSshKeyPair();

/** A host enrolled with a real SSH key, with the recorder side that seals its batches. */
async function enrolledHost(store: Store, status = 'approved'): Promise<{ host: TestHost; ssh: SshKeyPair }> {
  const h = await enrollDirectly(store, { status });
  return { host: new TestHost(h.hostId, h.signing, 'boot-1'), ssh: h.ssh };
}

async function connectAs(port: number, username: string, privateKey: string): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey, hostVerifier: () => true });
  });
  return client;
}

/** Sends `bytes` on a fresh ingest channel and resolves with what came back, until the channel closes. */
function ingestChannel(
  client: ssh2.Client,
  bytes: Buffer,
): Promise<{ out: Buffer; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    client.exec('pofr-ingest', (err, ch) => {
      if (err) return reject(err);
      const out: Buffer[] = [];
      let stderr = '';
      let code: number | null = null;
      ch.on('data', (d: Buffer) => out.push(d));
      ch.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      ch.on('exit', (c: number) => {
        code = c;
      });
      ch.on('close', () => resolve({ out: Buffer.concat(out), stderr, code }));
      ch.end(bytes);
    });
  });
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const dialect of DIALECTS) {
  describe(`[${dialect}] refusals reach the audit table`, () => {
    test("a stranger's key, random bytes on the ingest channel, a forged batch and a revoked key are rows", (t) =>
      withStore(t, dialect, async (store) => {
        const audit = AuditTrail.inMemory(store, () => {});
        const server = await startSshServer({
          hostKey: serverKey.privateKey,
          host: '127.0.0.1',
          port: 0,
          handlers: createServerHandlers({ store, audit, log: () => {} }),
        });
        try {
          const { host, ssh } = await enrolledHost(store);
          const revoked = await enrolledHost(store, 'revoked');
          const stranger = generateSshKeyPair();

          await assert.rejects(connectAs(server.port, host.hostId, stranger.privateKey));
          await assert.rejects(connectAs(server.port, revoked.host.hostId, revoked.ssh.privateKey));
          await assert.rejects(connectAs(server.port, revoked.host.hostId, ssh.privateKey), 'wrong user');

          const client = await connectAs(server.port, host.hostId, ssh.privateKey);
          try {
            // A small length and garbage: a frame the store is asked about and refuses as malformed.
            const garbage = await ingestChannel(client, encodeFrame(randomBytes(300)));
            assert.match(garbage.out.toString(), /"status":"refused","code":"POFR_BATCH_MALFORMED"/);
            // Random bytes that announce an absurd length: refused before anything is buffered.
            const huge = await ingestChannel(client, Buffer.from([0xfe, 0xed, 0xfa, 0xce, 1, 2, 3]));
            assert.equal(huge.code, 1);
            // A batch signed with another key.
            const forged = host.sealAt(
              1,
              '0'.repeat(64),
              [{ type: 'endpoint_close', t: T0, key: 'k' }],
              generateSigningKeyPair(),
            );
            const sig = await ingestChannel(client, encodeFrame(forged.bytes));
            assert.match(sig.out.toString(), /POFR_BATCH_SIGNATURE/);
          } finally {
            client.end();
          }
          await until('the rows', async () => (await listAuditEvents(store)).length >= 6);
          const rows = await listAuditEvents(store);
          const byKind = new Map(rows.map((r) => [r.kind, r]));
          assert.deepEqual([...byKind.keys()].sort(), [
            'batch_malformed',
            'batch_signature',
            'frame_too_large',
            'revoked_key',
            'unknown_key',
            'wrong_user',
          ]);
          assert.equal(byKind.get('unknown_key')?.fingerprint, sshFingerprint(stranger.publicKey));
          assert.equal(byKind.get('unknown_key')?.ssh_user, host.hostId);
          assert.equal(byKind.get('revoked_key')?.host_id, null, 'authentication failed: no host is proven');
          assert.match(byKind.get('revoked_key')?.reason ?? '', /is revoked/);
          assert.match(byKind.get('wrong_user')?.reason ?? '', new RegExp(`key of host ${host.hostId}`));
          for (const k of ['batch_malformed', 'batch_signature', 'frame_too_large']) {
            const r = byKind.get(k)!;
            assert.equal(r.host_id, host.hostId, `${k} names the host`);
            assert.equal(r.fingerprint, sshFingerprint(ssh.publicKey), `${k} names the key`);
            assert.match(r.remote ?? '', /^127\.0\.0\.1:\d+$/);
            assert.ok(r.time > T0);
          }
          assert.equal(byKind.get('batch_signature')?.code, 'POFR_BATCH_SIGNATURE');
        } finally {
          await server.close();
          await audit.close();
        }
      }));
  });
}
