import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ingestBatch, verifyStore } from '../../src/ingest/index.js';
import {
  frontierFromSeed,
  loadPrivateKey,
  newSealSeed,
  type PofrRecord,
  type SealedBatch,
  type SealFrontier,
  sealBatch,
  sealKeyAt,
} from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000;
const rec = (i: number): PofrRecord[] => [{ type: 'process_start', t: T0 + i * S, proc: proc(100 + i, i) }];

/** A host whose recorder seals: it keeps only its frontier, the server the seed. */
class SealingHost {
  frontier: SealFrontier;
  constructor(
    readonly host: TestHost,
    readonly seed: Buffer,
    from = 1,
  ) {
    this.frontier = frontierFromSeed(seed, from);
  }

  next(records: PofrRecord[]): SealedBatch {
    const seq = this.host.seq + 1;
    const { key, rest } = sealKeyAt(this.frontier, seq);
    const b = sealBatch(
      { host_id: this.host.hostId, boot_id: this.host.bootId, seq, prev_hash: this.host.prevHash, records },
      loadPrivateKey(this.host.keys.privatePem),
      key,
    );
    this.frontier = rest;
    this.host.seq = seq;
    this.host.prevHash = b.hash;
    return b;
  }
}

async function sealingHost(store: Store, from = 1): Promise<SealingHost> {
  const host = await addHost(store, { name: 'web1' });
  const seed = newSealSeed();
  await store.db
    .updateTable('hosts')
    .set({ seal_seed: seed.toString('hex'), seal_from: from })
    .where('host_id', '=', host.hostId)
    .execute();
  return new SealingHost(host, seed, from);
}

for (const dialect of DIALECTS) {
  describe(`[${dialect}] forward-secure seals at ingest and in verify`, () => {
    test('sealed batches are accepted; a batch re-signed and sealed with a later key is refused for its seal', (t) =>
      withStore(t, dialect, async (store) => {
        const h = await sealingHost(store);
        const ingest = (b: SealedBatch) => ingestBatch(store, b.bytes, { principal: h.host.hostId });
        assert.equal((await ingest(h.next(rec(1)))).status, 'accepted');
        assert.equal((await ingest(h.next(rec(2)))).status, 'accepted');
        // The intruder copies the state after batch 3 was sealed; batch 3 waits in the spool.
        const original3 = h.next(rec(3));
        const forged3 = sealBatch(
          {
            host_id: h.host.hostId,
            boot_id: h.host.bootId,
            seq: 3,
            prev_hash: original3.header.prev_hash,
            records: [{ type: 'process_start', t: T0 + 3 * S, proc: proc(666, 3, { argv: ['innocent'] }) }],
          },
          loadPrivateKey(h.host.keys.privatePem),
          sealKeyAt(h.frontier, 4).key,
        );
        const r = await ingest(forged3);
        assert.equal(r.status, 'refused');
        assert.equal(r.status === 'refused' && r.code, 'POFR_BATCH_SEAL');
        const refused = await store.db.selectFrom('refused_batches').selectAll().execute();
        assert.deepEqual(
          refused.map((x) => [Number(x.seq), x.code]),
          [[3, 'POFR_BATCH_SEAL']],
        );
        // An unsealed version of it is refused the same way: a host that seals cannot fall back.
        const unsealed = sealBatch(
          {
            host_id: h.host.hostId,
            boot_id: h.host.bootId,
            seq: 3,
            prev_hash: original3.header.prev_hash,
            records: rec(3),
          },
          loadPrivateKey(h.host.keys.privatePem),
        );
        const r2 = await ingest(unsealed);
        assert.equal(r2.status === 'refused' && r2.code, 'POFR_BATCH_SEAL');
        // The next batches arrive: batch 3's place is a known gap caused by the seal refusal.
        assert.equal((await ingest(h.next(rec(4)))).status, 'accepted');
        const [report] = await verifyStore(store, { hostId: h.host.hostId });
        assert.equal(report.ok, true, JSON.stringify(report.failures));
        assert.equal(report.sealed, true);
        assert.equal(report.complete, false);
        assert.equal(report.known_gaps[0].kind, 'refused_batch');
        assert.match(report.known_gaps[0].detail, /^batch 3 was refused .*POFR_BATCH_SEAL/);
      }));

    test('verify re-checks every stored seal: a seal changed in the evidence fails the host', (t) =>
      withStore(t, dialect, async (store) => {
        const h = await sealingHost(store);
        for (let i = 1; i <= 3; i++) {
          assert.equal(
            (await ingestBatch(store, h.next(rec(i)).bytes, { principal: h.host.hostId })).status,
            'accepted',
          );
        }
        assert.equal((await verifyStore(store))[0].complete, true);
        const ev = await store.db
          .selectFrom('batch_evidence')
          .select('raw')
          .where('host_id', '=', h.host.hostId)
          .where('seq', '=', 2)
          .executeTakeFirstOrThrow();
        const bad = Buffer.from(ev.raw);
        bad[bad.length - 5] ^= 0x40;
        await store.db
          .updateTable('batch_evidence')
          .set({ raw: bad })
          .where('host_id', '=', h.host.hostId)
          .where('seq', '=', 2)
          .execute();
        const [r] = await verifyStore(store, { rederive: false });
        assert.equal(r.ok, false);
        assert.deepEqual(
          r.failures.map((f) => [f.seq, f.code]),
          [[2, 'POFR_BATCH_SEAL']],
        );
      }));

    test('a client from before sealing: unsealed batches before its seal_from, sealed from it on', (t) =>
      withStore(t, dialect, async (store) => {
        const h = await sealingHost(store, 3);
        const key = loadPrivateKey(h.host.keys.privatePem);
        for (let i = 1; i <= 2; i++) {
          const b = h.host.next(rec(i));
          assert.equal((await ingestBatch(store, b.bytes, { principal: h.host.hostId })).status, 'accepted');
        }
        const unsealed3 = sealBatch(
          {
            host_id: h.host.hostId,
            boot_id: h.host.bootId,
            seq: 3,
            prev_hash: h.host.prevHash,
            records: rec(3),
          },
          key,
        );
        const refused = await ingestBatch(store, unsealed3.bytes, { principal: h.host.hostId });
        assert.equal(refused.status === 'refused' && refused.code, 'POFR_BATCH_SEAL');
        assert.equal(
          (await ingestBatch(store, h.next(rec(3)).bytes, { principal: h.host.hostId })).status,
          'accepted',
        );
        const [r] = await verifyStore(store);
        assert.equal(r.ok, true, JSON.stringify(r.failures));
        assert.equal(r.sealed, true);
        assert.equal(r.complete, true, 'the refused unsealed 3 was replaced by the sealed one');
      }));

    test('a host enrolled without a seed: its batches are accepted sealed or not, and verify says it is unsealed', (t) =>
      withStore(t, dialect, async (store) => {
        const host = await addHost(store);
        const sealer = new SealingHost(host, newSealSeed());
        assert.equal(
          (await ingestBatch(store, host.next(rec(1)).bytes, { principal: host.hostId })).status,
          'accepted',
        );
        assert.equal(
          (await ingestBatch(store, sealer.next(rec(2)).bytes, { principal: host.hostId })).status,
          'accepted',
        );
        const [r] = await verifyStore(store);
        assert.equal(r.ok, true, JSON.stringify(r.failures));
        assert.equal(r.sealed, false);
      }));
  });
}
