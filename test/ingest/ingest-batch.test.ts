import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { ingestBatch } from '../../src/ingest/index.js';
import { GENESIS_HASH, generateSigningKeyPair, type PofrRecord } from '../../src/protocol/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, countRows, file, proc, refusePath, T0 } from './host-fixture.js';

const start = (pid: number, st: number, over = {}): PofrRecord => ({
  type: 'process_start',
  t: T0 + st * 10_000,
  proc: proc(pid, st, over),
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] accepts a genesis batch and stores argv losslessly, raw bytes beside the display`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const big = 'x'.repeat(100 * 1024);
      const invalid = Buffer.from([0x66, 0x6f, 0xff, 0xfe, 0x6f]); // "fo\xff\xfeo"
      const argv = [
        '/bin/sh',
        '-c',
        'echo "quoted" \'single\'',
        'line1\nline2',
        '100%s %n',
        { b64: invalid.toString('base64') },
        big,
      ];
      const batch = host.next([
        start(100, 5, { argv: ['sh'] }),
        start(200, 7, {
          argv,
          ppid: 100,
          parent_start_ticks: 5,
          exe: { b64: Buffer.from([0x2f, 0x78, 0xff]).toString('base64') },
        }),
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, receivedAt: T0 + 1 });
      assert.deepEqual(r, {
        status: 'accepted',
        host_id: host.hostId,
        seq: 1,
        chain: 'genesis',
        records: 2,
        warnings: [],
      });

      const rows = await store.db.selectFrom('processes').selectAll().orderBy('pid').execute();
      assert.equal(rows.length, 2);
      const [parent, child] = rows;
      assert.equal(child.parent_id, parent.id);
      assert.equal(parent.argv_raw, null, 'UTF-8 argv keeps no raw copy');
      const display = JSON.parse(child.argv) as string[];
      assert.deepEqual(display, [
        '/bin/sh',
        '-c',
        'echo "quoted" \'single\'',
        'line1\nline2',
        '100%s %n',
        'fo\\xff\\xfeo',
        big,
      ]);
      assert.equal(child.cmdline, display.join(' '));
      const expectedRaw = Buffer.concat(
        [...(argv.slice(0, 5) as string[]).map((a) => Buffer.from(a)), invalid, Buffer.from(big)].map((a) =>
          Buffer.concat([a, Buffer.from([0])]),
        ),
      );
      assert.ok(child.argv_raw !== null);
      assert.ok(
        Buffer.from(child.argv_raw).equals(expectedRaw),
        'argv_raw is every argument, NUL-terminated, byte for byte',
      );
      assert.equal(child.exe, '/x\\xff');
      assert.deepEqual([...Buffer.from(child.exe_raw ?? [])], [0x2f, 0x78, 0xff]);
      assert.equal(child.open_ord, 1_000_001);

      const b = await store.db.selectFrom('batches').selectAll().executeTakeFirstOrThrow();
      assert.equal(b.hash, batch.hash);
      assert.equal(b.chain, 'genesis');
      const ev = await store.db.selectFrom('batch_evidence').select('raw').executeTakeFirstOrThrow();
      assert.ok(Buffer.from(ev.raw).equals(batch.bytes), 'evidence is the bytes exactly as received');
      const h = await store.db
        .selectFrom('hosts')
        .selectAll()
        .where('host_id', '=', host.hostId)
        .executeTakeFirstOrThrow();
      assert.equal(h.last_seq, 1);
      assert.equal(h.last_hash, batch.hash);
      assert.equal(h.boot_id, host.bootId);
      assert.equal(h.last_batch_at, T0 + 1);
      assert.equal(h.first_seen, T0 + 50_000);
      assert.equal(h.last_seen, T0 + 70_000);
    }));

  test(`[${dialect}] a batch sent twice is stored once and acknowledged as a duplicate`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const batch = host.next([start(100, 5)]);
      assert.equal((await ingestBatch(store, batch.bytes, { principal: host.hostId })).status, 'accepted');
      const again = await ingestBatch(store, batch.bytes, { principal: host.hostId });
      assert.deepEqual(again, { status: 'duplicate', host_id: host.hostId, seq: 1 });
      assert.equal(await countRows(store, 'batches'), 1);
      assert.equal(await countRows(store, 'processes'), 1);
      assert.equal(await countRows(store, 'refused_batches'), 0);
    }));

  test(`[${dialect}] refuses other content under an already stored seq (POFR_BATCH_REPLAY) and keeps it`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const first = host.next([start(100, 5)]);
      await ingestBatch(store, first.bytes, { principal: host.hostId });
      const other = host.sealAt(1, GENESIS_HASH, [start(101, 6)]);
      const r = await ingestBatch(store, other.bytes, { principal: host.hostId });
      assert.equal(r.status, 'refused');
      assert.equal(r.status === 'refused' && r.code, 'POFR_BATCH_REPLAY');
      assert.match(r.status === 'refused' ? r.reason : '', /already stored/);
      const refused = await store.db.selectFrom('refused_batches').selectAll().execute();
      assert.equal(refused.length, 1);
      assert.equal(refused[0].code, 'POFR_BATCH_REPLAY');
      assert.equal(refused[0].host_id, host.hostId);
      assert.equal(refused[0].seq, 1);
      assert.ok(Buffer.from(refused[0].raw ?? []).equals(other.bytes));
      assert.equal(await countRows(store, 'processes'), 1, 'the replayed records were not applied');
    }));

  test(`[${dialect}] refuses a batch signed by another key (POFR_BATCH_SIGNATURE)`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const forged = host.sealAt(1, GENESIS_HASH, [start(100, 5)], generateSigningKeyPair());
      const r = await ingestBatch(store, forged.bytes, { principal: host.hostId });
      assert.equal(r.status === 'refused' && r.code, 'POFR_BATCH_SIGNATURE');
      assert.equal(await countRows(store, 'batches'), 0);
      assert.equal(await countRows(store, 'processes'), 0);
      assert.equal(await countRows(store, 'refused_batches'), 1);
    }));

  test(`[${dialect}] refuses a batch naming a host other than the sender (POFR_BATCH_HOST)`, (t) =>
    withStore(t, dialect, async (store) => {
      const victim = await addHost(store);
      const sender = await addHost(store);
      const batch = victim.next([start(100, 5)]);
      const r = await ingestBatch(store, batch.bytes, { principal: sender.hostId });
      assert.equal(r.status === 'refused' && r.code, 'POFR_BATCH_HOST');
      assert.match(r.status === 'refused' ? r.reason : '', new RegExp(victim.hostId));
      assert.equal(await countRows(store, 'batches'), 0);
      const refused = await store.db
        .selectFrom('refused_batches')
        .select('host_id')
        .executeTakeFirstOrThrow();
      assert.equal(refused.host_id, sender.hostId, 'the refusal is filed under the authenticated sender');
    }));

  test(`[${dialect}] refuses batches of pending and unknown hosts`, (t) =>
    withStore(t, dialect, async (store) => {
      const pending = await addHost(store, { status: 'pending' });
      const r1 = await ingestBatch(store, pending.next([start(100, 5)]).bytes, { principal: pending.hostId });
      assert.equal(r1.status === 'refused' && r1.code, 'POFR_HOST_PENDING');
      const revoked = await addHost(store, { status: 'revoked' });
      const r2 = await ingestBatch(store, revoked.next([start(100, 5)]).bytes, { principal: revoked.hostId });
      assert.equal(r2.status === 'refused' && r2.code, 'POFR_HOST_REVOKED');
      const ghost = await addHost(store);
      await store.db.deleteFrom('hosts').where('host_id', '=', ghost.hostId).execute();
      const r3 = await ingestBatch(store, ghost.next([start(100, 5)]).bytes, { principal: ghost.hostId });
      assert.equal(r3.status === 'refused' && r3.code, 'POFR_HOST_UNKNOWN');
      assert.equal(await countRows(store, 'batches'), 0);
    }));

  test(`[${dialect}] one flipped byte anywhere in a batch gets it refused, and nothing of it is stored`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const batch = host.next([
        start(100, 5),
        { type: 'file_open', t: T0 + 60_000, file: file(100, 5, 3, '/etc/passwd') },
      ]);
      const codes = new Set<string>();
      for (let i = 0; i < batch.bytes.length; i++) {
        const bad = Buffer.from(batch.bytes);
        bad[i] ^= 0x01;
        const r = await ingestBatch(store, bad, { principal: host.hostId });
        assert.equal(r.status, 'refused', `byte ${i} flipped was not refused`);
        if (r.status === 'refused') codes.add(r.code);
      }
      assert.equal(await countRows(store, 'batches'), 0);
      assert.equal(await countRows(store, 'processes'), 0);
      assert.equal(await countRows(store, 'file_opens'), 0);
      assert.equal(await countRows(store, 'refused_batches'), batch.bytes.length);
      assert.ok(codes.has('POFR_BATCH_SIGNATURE') && codes.has('POFR_BATCH_MALFORMED'), [...codes].join(','));
      // The intact batch still goes in afterwards.
      assert.equal((await ingestBatch(store, batch.bytes, { principal: host.hostId })).status, 'accepted');
    }));

  test(`[${dialect}] refuses garbage, empty and truncated input with a reason`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const good = host.next([start(100, 5)]);
      for (const bytes of [
        Buffer.from('GET / HTTP/1.1\r\n\r\n'),
        Buffer.alloc(0),
        good.bytes.subarray(0, good.bytes.length - 10),
      ]) {
        const r = await ingestBatch(store, bytes, { principal: host.hostId });
        assert.equal(r.status, 'refused');
        if (r.status !== 'refused') continue;
        assert.equal(r.code, 'POFR_BATCH_MALFORMED');
        assert.match(r.reason, /malformed batch: .+/);
        assert.equal(r.seq, null);
      }
      assert.equal(await countRows(store, 'refused_batches'), 3);
      assert.equal(await countRows(store, 'batches'), 0);
    }));

  test(`[${dialect}] accepts a batch after a missing seq as a gap and records the missing range`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const b1 = host.next([start(100, 5)]);
      const b2 = host.next([start(101, 6)]);
      const b3 = host.next([start(102, 7)]);
      assert.equal((await ingestBatch(store, b1.bytes, { principal: host.hostId })).status, 'accepted');
      const r3 = await ingestBatch(store, b3.bytes, { principal: host.hostId });
      assert.equal(r3.status === 'accepted' && r3.chain, 'gap');
      const gaps = await store.db.selectFrom('gaps').selectAll().execute();
      assert.equal(gaps.length, 1);
      assert.equal(gaps[0].kind, 'seq_gap');
      assert.equal(gaps[0].seq, 3);
      assert.match(gaps[0].detail, /missing seq 2/);
      // The late batch fills the hole and links; the chain head stays at 3.
      const r2 = await ingestBatch(store, b2.bytes, { principal: host.hostId });
      assert.equal(r2.status === 'accepted' && r2.chain, 'ok');
      const h = await store.db
        .selectFrom('hosts')
        .selectAll()
        .where('host_id', '=', host.hostId)
        .executeTakeFirstOrThrow();
      assert.equal(h.last_seq, 3);
      assert.equal(h.last_hash, b3.hash);
      assert.equal(await countRows(store, 'processes'), 3);
    }));

  test(`[${dialect}] detects a fork: a batch whose prev_hash is not the stored predecessor's hash`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await ingestBatch(store, host.next([start(100, 5)]).bytes, { principal: host.hostId });
      const forked = host.sealAt(2, 'f'.repeat(64), [start(101, 6)]);
      const r = await ingestBatch(store, forked.bytes, { principal: host.hostId });
      assert.equal(r.status === 'accepted' && r.chain, 'fork');
      const gap = await store.db.selectFrom('gaps').selectAll().executeTakeFirstOrThrow();
      assert.equal(gap.kind, 'fork');
      assert.equal(gap.seq, 2);
      assert.match(gap.detail, /f{64}/);
      const b = await store.db
        .selectFrom('batches')
        .select('chain')
        .where('seq', '=', 2)
        .executeTakeFirstOrThrow();
      assert.equal(b.chain, 'fork');
    }));

  test(`[${dialect}] a store error while applying rolls the whole batch back: refused when the data is at fault`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await refusePath(store, '/boom');
      const batch = host.next([
        start(100, 5),
        { type: 'file_open', t: T0 + 60_000, file: file(100, 5, 3, '/boom') },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId });
      assert.equal(r.status === 'refused' && r.code, 'POFR_BATCH_MALFORMED');
      assert.match(r.status === 'refused' ? r.reason : '', /\/boom is refused/);
      assert.equal(await countRows(store, 'batches'), 0);
      assert.equal(await countRows(store, 'batch_evidence'), 0);
      assert.equal(
        await countRows(store, 'processes'),
        0,
        'the process applied before the failure was rolled back',
      );
      assert.equal(await countRows(store, 'refused_batches'), 1);
    }));

  test(`[${dialect}] a store failure not caused by the batch is thrown, so nothing is acknowledged or stored`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      if (store.caps.engine === 'sqlite') {
        // A failing SQL function stands in for an I/O error: it is not a data or constraint error.
        await sql`CREATE TRIGGER outage BEFORE INSERT ON file_opens WHEN NEW.path = '/outage'
          BEGIN SELECT regexp('(', NEW.path); END`.execute(store.db);
      } else {
        await sql`CREATE FUNCTION outage() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.path = '/outage' THEN RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END IF;
          RETURN NEW; END $$`.execute(store.db);
        await sql`CREATE TRIGGER outage BEFORE INSERT ON file_opens FOR EACH ROW EXECUTE FUNCTION outage()`.execute(
          store.db,
        );
      }
      const batch = host.next([
        start(100, 5),
        { type: 'file_open', t: T0 + 60_000, file: file(100, 5, 3, '/outage') },
      ]);
      await assert.rejects(ingestBatch(store, batch.bytes, { principal: host.hostId }));
      assert.equal(await countRows(store, 'batches'), 0);
      assert.equal(await countRows(store, 'processes'), 0);
      assert.equal(
        await countRows(store, 'refused_batches'),
        0,
        'a server failure is not the batch being refused',
      );
    }));
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] one host's batches arriving at once (two connections or server nodes) apply in chain order`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const b1 = host.next([start(100, 5)]);
      const b2 = host.next([{ type: 'file_open', t: T0 + 60_000, file: file(100, 5, 3, '/slow') }]);
      const b3 = host.next([{ type: 'file_close', t: T0 + 70_000, pid: 100, start_ticks: 5, fd: 3 }]);
      const ingest = (b: { bytes: Buffer }) => ingestBatch(store, b.bytes, { principal: host.hostId });
      assert.equal((await ingest(b1)).status, 'accepted');

      let results: Awaited<ReturnType<typeof ingest>>[];
      if (store.caps.engine === 'postgres') {
        // Batch 2 stalls inside its transaction (its file row waits on an advisory lock this test
        // holds) while batch 3 arrives on another pooled connection, as from another node.
        await sql`CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.path = '/slow' THEN PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NEW; END $$`.execute(
          store.db,
        );
        await sql`CREATE TRIGGER stall BEFORE INSERT ON file_opens FOR EACH ROW EXECUTE FUNCTION stall()`.execute(
          store.db,
        );
        const count = async (db: typeof store.db, q: ReturnType<typeof sql<{ n: number }>>) =>
          Number((await q.execute(db)).rows[0].n);
        results = await store.db.connection().execute(async (conn) => {
          await sql`SELECT pg_advisory_lock(4242)`.execute(conn);
          const second = ingest(b2);
          const waiting = (what: string, q: ReturnType<typeof sql<{ n: number }>>) =>
            waitUntil(what, async () => (await count(conn, q)) > 0);
          await waiting(
            'batch 2 to stall in its transaction',
            sql<{
              n: number;
            }>`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`,
          );
          const third = ingest(b3);
          await waiting(
            "batch 3 to wait for the host's lock",
            sql<{ n: number }>`SELECT count(*) AS n FROM pg_stat_activity
              WHERE wait_event_type = 'Lock' AND query ILIKE '%for update%'`,
          );
          await sql`SELECT pg_advisory_unlock(4242)`.execute(conn);
          return Promise.all([second, third]);
        });
      } else {
        results = await Promise.all([ingest(b2), ingest(b3)]);
      }
      const [r2, r3] = results;
      assert.deepEqual(
        [r2, r3].map((r) => r.status === 'accepted' && [r.seq, r.chain, r.warnings]),
        [
          [2, 'ok', []],
          [3, 'ok', []],
        ],
      );
      assert.equal(await countRows(store, 'gaps'), 0, 'no chain break was seen');
      const [row] = await store.db.selectFrom('file_opens').select(['is_open', 'last_seen']).execute();
      assert.deepEqual([Number(row.is_open), Number(row.last_seen)], [0, T0 + 70_000]);
    }));
}

async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
