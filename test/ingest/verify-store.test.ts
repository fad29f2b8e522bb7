import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, verifyStore } from '../../src/ingest/index.js';
import { generateSigningKeyPair, type PofrRecord } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, file, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000;

/** Stores batches 1, 2, 4 and 5 of a host (3 is lost: a recorded gap), plus a second clean host. */
async function storeHistory(store: Store): Promise<{ host: TestHost; other: TestHost }> {
  const host = await addHost(store, { name: 'web1' });
  const batches = [1, 2, 3, 4, 5].map((i) =>
    host.next([
      { type: 'process_start', t: T0 + i * S, proc: proc(100 + i, i) },
      { type: 'file_open', t: T0 + i * S, file: file(100 + i, i, 3, `/f${i}`) },
    ] satisfies PofrRecord[]),
  );
  for (const b of batches.filter((b) => b.header.seq !== 3)) {
    const r = await ingestBatch(store, b.bytes, { principal: host.hostId });
    assert.equal(r.status, 'accepted');
  }
  const other = await addHost(store, { name: 'db1' });
  await ingestBatch(store, other.next([{ type: 'process_start', t: T0, proc: proc(1, 1) }]).bytes, {
    principal: other.hostId,
  });
  return { host, other };
}

async function reportOf(store: Store, hostId: string) {
  const [r] = await verifyStore(store, { hostId });
  return r;
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] verifyStore passes clean evidence and counts the recorded gap`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host, other } = await storeHistory(store);
      const reports = await verifyStore(store);
      const byHost = new Map(reports.map((r) => [r.host_id, r]));
      assert.deepEqual(byHost.get(host.hostId), {
        host_id: host.hostId,
        host: 'web1',
        batches: 4,
        ok: true,
        sealed: false,
        pruned: null,
        gaps: 1,
        complete: false,
        known_gaps: [
          {
            kind: 'missing_batches',
            seq_from: 3,
            seq_to: 3,
            t_from: null,
            t_to: null,
            detail: 'batch 3 never arrived',
          },
        ],
        failures: [],
      });
      assert.deepEqual(byHost.get(other.hostId), {
        host_id: other.hostId,
        host: 'db1',
        batches: 1,
        ok: true,
        sealed: false,
        pruned: null,
        gaps: 0,
        complete: true,
        known_gaps: [],
        failures: [],
      });
      await assert.rejects(verifyStore(store, { hostId: 'nope' }), { code: 'POFR_HOST_UNKNOWN' });
    }));

  test(`[${dialect}] verifyStore fails the batch whose evidence has one flipped byte, wherever it is`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host, other } = await storeHistory(store);
      const ev = await store.db
        .selectFrom('batch_evidence')
        .select('raw')
        .where('host_id', '=', host.hostId)
        .where('seq', '=', 2)
        .executeTakeFirstOrThrow();
      const original = Buffer.from(ev.raw);
      // Magic, header length, header, payload, signature, last byte.
      for (const pos of [0, 9, 40, 200, original.length - 70, original.length - 1]) {
        const bad = Buffer.from(original);
        bad[pos] ^= 0x20;
        await store.db
          .updateTable('batch_evidence')
          .set({ raw: bad })
          .where('host_id', '=', host.hostId)
          .where('seq', '=', 2)
          .execute();
        const r = await reportOf(store, host.hostId);
        assert.equal(r.ok, false, `byte ${pos} flipped went unnoticed`);
        assert.ok(
          r.failures.length > 0 && r.failures.every((f) => f.seq === 2 || f.seq === 4),
          JSON.stringify(r.failures),
        );
        assert.ok(r.failures.some((f) => f.seq === 2 && f.reason.length > 10));
      }
      await store.db
        .updateTable('batch_evidence')
        .set({ raw: original })
        .where('host_id', '=', host.hostId)
        .where('seq', '=', 2)
        .execute();
      assert.equal((await reportOf(store, host.hostId)).ok, true, 'restoring the byte restores the proof');
      assert.equal((await reportOf(store, other.hostId)).ok, true, 'other hosts are unaffected');
    }));

  test(`[${dialect}] verifyStore fails when a batches row no longer matches its signed evidence`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await storeHistory(store);
      const edits = [
        { t_to: T0 + 999 * S },
        { record_count: 3 },
        { boot_id: 'other-boot' },
        { hash: 'a'.repeat(64) },
        { chain: 'ok' }, // hides the gap before seq 4
      ] as const;
      for (const edit of edits) {
        const seq = 'chain' in edit ? 4 : 2;
        const before = await store.db
          .selectFrom('batches')
          .selectAll()
          .where('host_id', '=', host.hostId)
          .where('seq', '=', seq)
          .executeTakeFirstOrThrow();
        await store.db
          .updateTable('batches')
          .set(edit)
          .where('host_id', '=', host.hostId)
          .where('seq', '=', seq)
          .execute();
        const r = await reportOf(store, host.hostId);
        const column = Object.keys(edit)[0];
        assert.equal(r.ok, false, `edited ${column} went unnoticed`);
        assert.ok(
          r.failures.some((f) => f.seq === seq && f.reason.includes(column)),
          `${column}: ${JSON.stringify(r.failures)}`,
        );
        await store.db
          .updateTable('batches')
          .set(before)
          .where('host_id', '=', host.hostId)
          .where('seq', '=', seq)
          .execute();
      }
      assert.equal((await reportOf(store, host.hostId)).ok, true);
    }));

  test(`[${dialect}] verifyStore fails on missing evidence and on a chain break that was never recorded`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await storeHistory(store);
      await store.db.deleteFrom('gaps').where('host_id', '=', host.hostId).execute();
      await store.db
        .deleteFrom('batch_evidence')
        .where('host_id', '=', host.hostId)
        .where('seq', '=', 5)
        .execute();
      const r = await reportOf(store, host.hostId);
      assert.equal(r.ok, false);
      assert.equal(r.complete, false);
      assert.deepEqual(
        r.failures.map((f) => [f.seq, f.code]),
        [
          [4, 'POFR_BATCH_CHAIN'],
          [5, 'POFR_VERIFY_FAILED'],
        ],
      );
      assert.match(r.failures[1].reason, /no batch_evidence/);
    }));
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] known gaps name their cause: a refused batch, batches that never arrived, a fork, recorder losses`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store, { name: 'web1' });
      const rec = (i: number): PofrRecord[] => [
        { type: 'process_start', t: T0 + i * S, proc: proc(100 + i, i) },
      ];
      const chain = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => host.next(rec(i)));
      const send = (b: (typeof chain)[number]) => ingestBatch(store, b.bytes, { principal: host.hostId });
      for (const b of chain.slice(0, 2)) assert.equal((await send(b)).status, 'accepted');
      // 3 arrives with a flipped payload byte: refused; 4 and 5 never come; 6.. arrive.
      const bad = Buffer.from(chain[2].bytes);
      bad[bad.length - 80] ^= 1;
      assert.equal((await ingestBatch(store, bad, { principal: host.hostId })).status, 'refused');
      for (const b of chain.slice(5, 8)) assert.equal((await send(b)).status, 'accepted');
      // The recorder's own gap record, in a batch 9 that links to another batch 8 (a fork).
      const gapRec: PofrRecord = {
        type: 'gap',
        t: T0 + 10 * S,
        from: T0 + 9 * S,
        to: T0 + 10 * S,
        reason: 'spool full',
        dropped: 12,
      };
      host.prevHash = 'f'.repeat(64);
      assert.equal((await send(host.next([gapRec]))).status, 'accepted');
      // 10 refused at the end of the chain: a gap after the last stored batch.
      const b10 = host.sealAt(10, host.prevHash, rec(10), generateSigningKeyPair());
      assert.equal((await ingestBatch(store, b10.bytes, { principal: host.hostId })).status, 'refused');

      const r = await reportOf(store, host.hostId);
      assert.equal(r.ok, true, JSON.stringify(r.failures));
      assert.equal(r.complete, false);
      assert.deepEqual(
        r.known_gaps.map((g) => [g.kind, g.seq_from, g.seq_to]),
        [
          ['refused_batch', 3, 3],
          ['missing_batches', 4, 5],
          ['refused_batch', 10, 10],
          ['fork', 9, 9],
          ['recorder_loss', 9, 9],
        ],
      );
      assert.match(r.known_gaps[0].detail, /^batch 3 was refused at \d{4}-.*Z: POFR_BATCH_SIGNATURE: /);
      assert.equal(r.known_gaps[0].t_from, T0 + 3 * S, 'the time the refused batch claims');
      assert.match(r.known_gaps[1].detail, /^batches 4–5 never arrived \(2 batches\)$/);
      assert.match(r.known_gaps[2].detail, /POFR_BATCH_SIGNATURE/);
      assert.match(r.known_gaps[4].detail, /spool full, 12 events dropped/);
      assert.equal(r.gaps, 5);
    }));
}
