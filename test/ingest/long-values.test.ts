import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'kysely';
import { ingestBatch } from '../../src/ingest/index.js';
import { search } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, file, proc, T0 } from './host-fixture.js';

/** Printable characters no compressor can shrink: what a Java classpath or a packed payload looks like to PostgreSQL. */
function incompressible(chars: number): string {
  return randomBytes(chars)
    .toString('base64')
    .slice(0, chars)
    .replace(/[+/]/g, (c) => (c === '+' ? '_' : '-'));
}

// A B-tree entry in PostgreSQL holds at most ~2.7 kB (8 kB when compressed): a command line or a path
// longer than that in a B-tree index made the whole batch fail, and with it every later batch of the
// host (CI saw it: the test runner's own 12 kB command line stopped a recording host's delivery).
for (const dialect of DIALECTS) {
  test(`[${dialect}] command lines, executables and paths of any length are stored and found again`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const middle = incompressible(40);
      const cmdline = `${incompressible(100_000)}${middle}${incompressible(100_000)}`;
      // 4,000 bytes that are not UTF-8: stored as display text with \xNN escapes, four times longer.
      const exeRaw = Buffer.concat([Buffer.from('/opt/'), Buffer.alloc(3_995, 0xff)]);
      const path = `/tmp/${incompressible(4_090)}`;
      const rawPath = Buffer.concat([
        Buffer.from('/tmp/x'),
        randomBytes(4_000).map((b) => (b === 0 || b === 0x2f ? 0xfe : b)),
      ]);
      const batch = host.next([
        {
          type: 'process_start',
          t: T0 + 10_000,
          proc: proc(300, 9, {
            comm: 'java',
            argv: ['/bin/java', cmdline],
            exe: { b64: exeRaw.toString('base64') },
          }),
        },
        { type: 'file_open', t: T0 + 20_000, file: file(300, 9, 3, path) },
        {
          type: 'file_open',
          t: T0 + 30_000,
          file: { ...file(300, 9, 4, ''), path: { b64: rawPath.toString('base64') } },
        },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, receivedAt: T0 + 1 });
      assert.equal(r.status, 'accepted', JSON.stringify(r));

      const row = await store.db
        .selectFrom('processes')
        .select(['cmdline', 'exe', 'exe_raw'])
        .where('pid', '=', 300)
        .executeTakeFirstOrThrow();
      assert.equal(row.cmdline, `/bin/java ${cmdline}`);
      assert.equal(row.exe, `/opt/${'\\xff'.repeat(3_995)}`);
      assert.deepEqual(Buffer.from(row.exe_raw as Uint8Array), exeRaw);

      const byCommand = await search(store, { kind: 'command', term: middle });
      assert.deepEqual(
        byCommand.map((h) => h.pid),
        [300],
      );
      const byPath = await search(store, { kind: 'path', term: path });
      assert.deepEqual(
        byPath.map((h) => h.summary),
        [`java opened ${path} (fd 3)`],
      );
      const stored = await store.db
        .selectFrom('file_opens')
        .select(['path', 'path_raw'])
        .where('fd', '=', 4)
        .executeTakeFirstOrThrow();
      assert.deepEqual(Buffer.from(stored.path_raw as Uint8Array), rawPath);
      const byRawPath = await search(store, { kind: 'path', term: stored.path });
      assert.deepEqual(
        byRawPath.map((h) => h.pid),
        [300],
      );
      // Two paths sharing their first thousand characters stay apart.
      const twin = await search(store, { kind: 'path', term: `${path.slice(0, -1)}!` });
      assert.deepEqual(twin, []);

      if (store.caps.engine === 'postgres') {
        // The prefix comparison is what lets PostgreSQL seek its path index (seq scans off, as on a big store).
        const plan = await store.db.transaction().execute(async (tx) => {
          await sql`SET LOCAL enable_seqscan = off`.execute(tx);
          const r = await sql<{
            'QUERY PLAN': string;
          }>`EXPLAIN SELECT f.id FROM file_opens f WHERE ${store.caps.pathEquals(sql.ref('f.path'), path)} ORDER BY f.first_seen DESC LIMIT 5`.execute(
            tx,
          );
          return r.rows.map((row) => row['QUERY PLAN']).join('\n');
        });
        assert.match(
          plan,
          /(Index Scan using|Index Scan on|Index Only Scan using) file_opens_\w*(path|substr)\w*/,
          plan,
        );
      }
    }));
}
