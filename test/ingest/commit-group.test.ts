import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { createBatchIngestor, type IngestResult, verifyStore } from '../../src/ingest/index.js';
import { generateSigningKeyPair, type PofrRecord, type SealedBatch } from '../../src/protocol/index.js';
import { openStore } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { TINY_DISK_SKIP, withTinyDisk } from '../helpers/tiny-disk.js';
import { addHost, countRows, file, proc, refusePath, T0, type TestHost } from './host-fixture.js';

let st = 0;
/** A batch of one process with a few files: enough rows that a lost savepoint would show. */
function batchOf(host: TestHost, files = 3): SealedBatch {
  st++;
  const pid = 2000 + st;
  const records: PofrRecord[] = [{ type: 'process_start', t: T0 + st * 10_000, proc: proc(pid, st) }];
  for (let fd = 3; fd < 3 + files; fd++) {
    records.push({
      type: 'file_open',
      t: T0 + st * 10_000 + fd,
      file: file(pid, st, fd, `/srv/${st}/${fd}`),
    });
  }
  return host.next(records);
}

async function settle(p: Promise<IngestResult>): Promise<IngestResult | Error> {
  return p.catch((e: unknown) => e as Error);
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] batches of many hosts handed in at once: each gets its own outcome, a refused one alone is left out`, (t) =>
    withStore(t, dialect, async (store) => {
      const hosts = await Promise.all([addHost(store), addHost(store), addHost(store), addHost(store)]);
      const ingestor = createBatchIngestor(store);
      const chains = hosts.map((h) => [batchOf(h), batchOf(h)]);
      // Signed by another key: refused for its signature, between the others.
      const forger = hosts[1]!;
      chains[1]!.push(
        forger.sealAt(
          forger.seq + 1,
          forger.prevHash,
          [{ type: 'process_start', t: T0, proc: proc(9999, 1) }],
          generateSigningKeyPair(),
        ),
      );
      // Each host's batches one after the other (as its channel sends them), the hosts at once.
      const results = await Promise.all(
        chains.map(async (chain) => {
          const out: IngestResult[] = [];
          for (const b of chain) out.push(await ingestor.ingest(b.bytes, { principal: b.header.host_id }));
          return out.map((r) => (r.status === 'refused' ? r.code : r.status));
        }),
      );
      assert.deepEqual(results, [
        ['accepted', 'accepted'],
        ['accepted', 'accepted', 'POFR_BATCH_SIGNATURE'],
        ['accepted', 'accepted'],
        ['accepted', 'accepted'],
      ]);
      assert.equal(await countRows(store, 'batches'), 8);
      assert.equal(await countRows(store, 'processes'), 8);
      assert.equal(await countRows(store, 'file_opens'), 24);
      assert.equal(await countRows(store, 'refused_batches'), 1);
      assert.equal(await countRows(store, 'gaps'), 0, 'every chain links: no batch was reordered');
      const stats = ingestor.stats();
      assert.equal(stats.batches, 9);
      if (dialect === 'sqlite')
        assert.ok(stats.groups < 9, `queued batches shared COMMITs: ${JSON.stringify(stats)}`);
      else assert.equal(stats.groups, 9, 'PostgreSQL: a transaction per batch, as each takes its host lock');
      // Refused for its signature before it wrote anything: the group needed no second run.
      assert.equal(stats.retried, 0);
      for (const report of await verifyStore(store))
        assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] a batch whose statements fail is rolled back alone, and its host's next batch waits for its resend`, (t) =>
    withStore(t, dialect, async (store) => {
      const [a, b] = [await addHost(store), await addHost(store)];
      const ingestor = createBatchIngestor(store);
      const a1 = batchOf(a);
      const a2 = batchOf(a);
      const b1 = batchOf(b);
      const b2 = batchOf(b);
      // Live detection's hook runs in the batch's transaction; a throw there fails that batch.
      const failing = async (_trx: unknown, applied: { seq: number }) => {
        if (applied.seq === 1) throw new Error('detection store write failed');
      };
      const send = (batch: SealedBatch, host: TestHost, onApplied?: typeof failing) =>
        settle(ingestor.ingest(batch.bytes, { principal: host.hostId, onApplied }));
      // SQLite: all four queued at once, so a1 and a2 share a group (as after a reconnect, when two
      // channels of one host overlap). PostgreSQL has no groups and would race a host's two
      // batches against each other: there each host sends in order, as its channel does.
      const [ra1, rb1, ra2, rb2] =
        dialect === 'sqlite'
          ? await Promise.all([send(a1, a, failing), send(b1, b), send(a2, a), send(b2, b)])
          : await (async () => {
              const [[x1, x2], [y1, y2]] = await Promise.all([
                (async () => [await send(a1, a, failing), await send(a2, a)])(),
                (async () => [await send(b1, b), await send(b2, b)])(),
              ]);
              return [x1, y1, x2, y2];
            })();
      assert.ok(ra1 instanceof Error && /detection store write failed/.test(ra1.message), String(ra1));
      assert.equal((rb1 as IngestResult).status, 'accepted');
      assert.equal((rb2 as IngestResult).status, 'accepted');
      if (dialect === 'sqlite') {
        // In the same group as a1: not applied, so no gap is recorded before a1 comes back.
        assert.ok(ra2 instanceof Error && /earlier batch of that host/.test(ra2.message), String(ra2));
      }
      const aRows = await store.db
        .selectFrom('processes')
        .select('pid')
        .where('host_id', '=', a.hostId)
        .execute();
      assert.equal(aRows.length, ra2 instanceof Error ? 0 : 1, 'nothing of the failed batch was kept');
      // The client resends from the failed batch on: everything goes in, chains intact.
      const again = [await ingestor.ingest(a1.bytes, { principal: a.hostId })];
      if (ra2 instanceof Error) again.push(await ingestor.ingest(a2.bytes, { principal: a.hostId }));
      assert.deepEqual(
        again.map((r) => r.status),
        again.map(() => 'accepted'),
      );
      assert.equal(await countRows(store, 'batches'), 4);
      assert.equal(await countRows(store, 'file_opens'), 12);
      const gaps = await store.db.selectFrom('gaps').select(['host_id', 'seq']).execute();
      assert.deepEqual(gaps, dialect === 'sqlite' ? [] : [{ host_id: a.hostId, seq: 2 }]);
      // SQLite: a1 failed after writing, in the fast path, so its group ran again isolated.
      assert.equal(ingestor.stats().retried > 0, dialect === 'sqlite', JSON.stringify(ingestor.stats()));
    }));

  test(`[${dialect}] a batch refused for its content after it wrote rows, amid a group: refused, none of its rows kept, the others stored`, (t) =>
    withStore(t, dialect, async (store) => {
      // A constraint the data breaks, raised by the store at the batch's file row, after its process row.
      await refusePath(store, '/boom');
      const hosts = await Promise.all([addHost(store), addHost(store), addHost(store)]);
      const ingestor = createBatchIngestor(store);
      const boom = hosts[1]!.next([
        { type: 'process_start', t: T0, proc: proc(7777, 1) },
        { type: 'file_open', t: T0 + 5, file: file(7777, 1, 3, '/boom') },
      ]);
      const batches = [batchOf(hosts[0]!), boom, batchOf(hosts[2]!), batchOf(hosts[0]!)];
      const results = await Promise.all(
        batches.map((b) => ingestor.ingest(b.bytes, { principal: b.header.host_id })),
      );
      assert.deepEqual(
        results.map((r) => (r.status === 'refused' ? r.code : r.status)),
        ['accepted', 'POFR_BATCH_MALFORMED', 'accepted', 'accepted'],
      );
      const boomRows = await store.db
        .selectFrom('processes')
        .select('pid')
        .where('host_id', '=', hosts[1]!.hostId)
        .execute();
      assert.deepEqual(boomRows, [], 'the process row written before the refusal is gone');
      assert.equal(await countRows(store, 'processes'), 3);
      assert.equal(await countRows(store, 'file_opens'), 9);
      assert.equal(await countRows(store, 'refused_batches'), 1);
      if (dialect === 'sqlite') assert.ok(ingestor.stats().retried > 0, JSON.stringify(ingestor.stats()));
    }));
}

test('[sqlite] a grouped batch is answered only once its COMMIT is on disk: another connection sees it', (t) =>
  withStore(t, 'sqlite', async (store) => {
    const hosts = await Promise.all([addHost(store), addHost(store), addHost(store)]);
    const ingestor = createBatchIngestor(store);
    const seen: number[] = [];
    await Promise.all(
      hosts.map(async (h) => {
        const b = batchOf(h);
        const r = await ingestor.ingest(b.bytes, { principal: h.hostId });
        assert.equal(r.status, 'accepted');
        // readOnlyQuery opens a connection of its own: it sees committed rows only.
        const [row] = await store.readOnlyQuery('SELECT count(*) AS n FROM batches WHERE host_id = ?', [
          h.hostId,
        ]);
        seen.push(Number(row!.n));
      }),
    );
    assert.deepEqual(seen, [1, 1, 1]);
    assert.ok(ingestor.stats().groups < 3, JSON.stringify(ingestor.stats()));
  }));

test('[sqlite] a full disk in the middle of a commit group: no batch of the group is answered as stored, all go in once there is room', {
  skip: TINY_DISK_SKIP,
}, async () => {
  await withTinyDisk('2m', async (mnt) => {
    const store = await openStore({ kind: 'sqlite', path: join(mnt, 'pofr.db') });
    try {
      const hosts = await Promise.all([addHost(store), addHost(store), addHost(store), addHost(store)]);
      const ingestor = createBatchIngestor(store);
      const wide = (h: TestHost): SealedBatch => {
        st++;
        const pid = 5000 + st;
        const records: PofrRecord[] = [{ type: 'process_start', t: T0 + st * 10_000, proc: proc(pid, st) }];
        for (let fd = 3; fd < 40; fd++) {
          const path = `/srv/${randomBytes(90).toString('base64url')}`;
          records.push({ type: 'file_open', t: T0 + st * 10_000 + fd, file: file(pid, st, fd, path) });
        }
        return h.next(records);
      };
      let stored = 0;
      const unstored: SealedBatch[] = [];
      for (let round = 0; round < 200 && unstored.length === 0; round++) {
        const group = hosts.map(wide);
        const results = await Promise.all(
          group.map((b) => settle(ingestor.ingest(b.bytes, { principal: b.header.host_id }))),
        );
        results.forEach((r, i) => {
          if (r instanceof Error) unstored.push(group[i]!);
          else {
            assert.equal(r.status, 'accepted');
            stored++;
          }
        });
        const errors = results.filter((r) => r instanceof Error);
        if (errors.length > 0) {
          assert.ok(
            errors.some((e) => (e as { code?: string }).code === 'SQLITE_FULL'),
            errors.map(String).join('; '),
          );
        }
      }
      assert.ok(unstored.length > 0, 'the disk filled up');
      // Whether SQLite ended the transaction (all of the group failed) or only a statement did:
      // what was answered as stored is exactly what is stored.
      assert.equal(await countRows(store, 'batches'), stored, 'what was answered as stored is all there is');
      assert.equal(await countRows(store, 'refused_batches'), 0);

      execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
      const again = await Promise.all(
        unstored.map((b) => ingestor.ingest(b.bytes, { principal: b.header.host_id })),
      );
      assert.deepEqual(
        again.map((r) => r.status === 'accepted' && r.chain),
        unstored.map((b) => (b.header.seq === 1 ? 'genesis' : 'ok')),
      );
      assert.ok(stored > 0, 'some groups were stored before the disk filled');
      const reports = await verifyStore(store);
      assert.equal(
        reports.reduce((n, r) => n + r.batches, 0),
        stored + unstored.length,
      );
      for (const r of reports) assert.equal(r.ok, true, JSON.stringify(r.failures.slice(0, 3)));
    } finally {
      await store.close();
    }
  });
});
