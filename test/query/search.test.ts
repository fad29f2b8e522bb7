import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { search } from '../../src/query/index.js';
import { trigramQuery } from '../../src/store/capabilities.js';
import { createMigrator, migrateToLatest, type Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, addProcess } from './fixtures.js';

/** Command lines a substring search must treat as plain text: wildcards, quotes, escapes, lines. */
const ARGVS: readonly (readonly string[])[] = [
  ['/usr/bin/pkexec', '--user', 'root', 'sh'],
  ['sudo', '-u', 'www-data', 'id'],
  ['SUDO', 'upper case is another command'],
  ['grep', '-E', '100%_done', 'log'],
  ['grep', '100%Xdone'],
  ['grep', '100X_done'],
  ['echo', 'it\'s "quoted"'],
  ['printf', 'a\\%b\\_c\\\\d'],
  ['sh', '-c', 'line one\nline two'],
  ['cat', 'caf\u00e9 \u65e5\u672c\u8a9e.txt'],
  ['cat', 'CAF\u00c9.txt'],
  // What ingest stores for an argument that is not UTF-8: its display text, \xNN per byte.
  ['touch', 'bad\\xff\\xfename'],
  ['ab'],
  ['x'],
  ['python3', '-c', 'print("%s" % 1)'],
  ['bash', '-c', 'echo \uFFFD replacement'],
  // Every trigram of "worker.py" and of "trigram" without either word: the index (which keeps no
  // positions, migration 0020) names these rows, and only the recheck leaves them out.
  ['orker.py', 'wor', 'grame', 'trig', 'rigr'],
  // A term with more trigrams than the index is asked for (it asks a spread of 32).
  ['/opt/a-rather-long-install-prefix/bin/service-daemon', '--config=/etc/service/daemon.conf'],
  ['/opt/a-rather-long-install-prefix/bin/service-daemon', '--config=/etc/service/other.conf'],
];

/**
 * Terms chosen to catch an index that answers differently from LIKE: LIKE's wildcards and escape
 * character, both quotes (FTS5's phrase syntax uses "), a newline, a display of non-UTF-8 bytes,
 * a lone surrogate (sent as U+FFFD), multi-byte text, case, and terms too short for a trigram.
 */
const TERMS: readonly string[] = [
  'pkexec',
  'sudo',
  'SUDO',
  'udo',
  '%',
  '_',
  '%_',
  '100%_',
  '0%X',
  '\\',
  '\\%',
  '\\\\',
  "'",
  "it's",
  '"',
  '"quoted"',
  '""',
  'e\nline',
  'one\nl',
  '\\xff\\xfe',
  '\\xff',
  '\uFFFD',
  '\uD800',
  '\u00e9 \u65e5',
  '\u65e5\u672c\u8a9e',
  '\u65e5\u672c',
  'CAF\u00c9',
  'caf\u00c9',
  'ab',
  'a',
  'x',
  'usr/bin',
  '/usr/bin/pkexec --user root sh',
  'print("%s"',
  'AND',
  'NEAR(a b)',
  '*',
  'no such command anywhere',
  'worker.py',
  'trigram',
  '/opt/a-rather-long-install-prefix/bin/service-daemon --config=/etc/service/daemon.conf',
  'prefix/bin/service-daemon --config=/etc/service/other',
];

/** What a substring search must find: rows whose command line or exe holds the term, as JS sees it. */
async function expected(store: Store, term: string): Promise<number[]> {
  const rows = await store.db.selectFrom('processes').select(['id', 'cmdline', 'exe']).execute();
  // The drivers send a lone surrogate as U+FFFD (UTF-8 cannot hold it).
  const t = term
    .trim()
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  return rows
    .filter((r) => (r.cmdline ?? '').includes(t) || (r.exe ?? '').includes(t))
    .map((r) => Number(r.id))
    .sort((a, b) => b - a);
}

/** The LIKE scan this index replaced, run directly: what the results must stay. */
async function likeScan(store: Store, term: string): Promise<number[]> {
  const like = `%${term.trim().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const rows = await sql<{ id: number }>`SELECT id FROM processes
    WHERE cmdline LIKE ${like} ESCAPE '\\' OR exe LIKE ${like} ESCAPE '\\' ORDER BY id DESC`.execute(
    store.db,
  );
  return rows.rows.map((r) => Number(r.id));
}

async function found(store: Store, term: string, limit = 1000): Promise<number[]> {
  const hits = await search(store, { kind: 'command', term, limit });
  return hits.map((h) => h.process_id!).sort((a, b) => b - a);
}

async function addAll(store: Store, argvs: readonly (readonly string[])[], pid0 = 100): Promise<void> {
  for (const [i, argv] of argvs.entries()) {
    await addProcess(store, {
      pid: pid0 + i,
      start: 1_000 + i,
      argv: [...argv],
      comm: argv[0].split('/').pop()!.slice(0, 15),
      exe: argv[0].startsWith('/') ? argv[0] : `/usr/bin/${argv[0]}`,
    });
  }
}

async function assertSameAsLike(store: Store, why: string): Promise<void> {
  for (const term of TERMS) {
    const want = await expected(store, term);
    assert.deepEqual(
      await likeScan(store, term),
      want,
      `${why}: the LIKE scan itself for ${JSON.stringify(term)}`,
    );
    assert.deepEqual(await found(store, term), want, `${why}: search for ${JSON.stringify(term)}`);
  }
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] a command search through the trigram index finds exactly what LIKE finds, hostile terms too`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addAll(store, ARGVS);
      await assertSameAsLike(store, 'inserted');
      if (store.caps.engine === 'sqlite') {
        // The index keeps no positions (migration 0020): it takes no phrase, and a term's trigrams
        // ANDed name a row that holds them apart, which the recheck drops.
        const candidates = async (term: string) =>
          (
            await sql<{
              rowid: number;
            }>`SELECT rowid FROM processes_trigram WHERE processes_trigram MATCH ${trigramQuery(term)}`.execute(
              store.db,
            )
          ).rows.map((r) => Number(r.rowid));
        const scattered = (await expected(store, 'orker.py wor'))[0];
        assert.ok((await candidates('worker.py')).includes(scattered));
        assert.ok(!(await found(store, 'worker.py')).includes(scattered));
        await assert.rejects(
          sql`SELECT rowid FROM processes_trigram WHERE processes_trigram MATCH '"worker.py"'`.execute(
            store.db,
          ),
          /phrase queries are not supported/,
        );
      }
      // A term with NUL matches nothing (no argument holds one) instead of failing or matching more.
      assert.deepEqual(await found(store, 'pk\0exec'), []);
      await assert.rejects(search(store, { kind: 'command', term: '  ' }), /needs a term/);
    }));

  test(`[${dialect}] the index follows edits and deletes of processes rows`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addAll(store, ARGVS);
      const [pk] = await found(store, 'pkexec');
      await store.db
        .updateTable('processes')
        .set({ cmdline: 'renamed-binary --flag', exe: '/opt/renamed' })
        .where('id', '=', pk)
        .execute();
      assert.deepEqual(await found(store, 'pkexec'), []);
      assert.deepEqual(await found(store, 'renamed-binary'), [pk]);
      // Ending a process does not touch the indexed text.
      await store.db
        .updateTable('processes')
        .set({ end: 5_000, end_reason: 'exit' })
        .where('id', '=', pk)
        .execute();
      assert.deepEqual(await found(store, '/opt/renamed'), [pk]);
      const sudo = await found(store, 'sudo');
      await store.db.deleteFrom('processes').where('id', 'in', sudo).execute();
      assert.deepEqual(await found(store, 'sudo'), []);
      await assertSameAsLike(store, 'after edits and deletes');
    }));

  test(`[${dialect}] a common term returns the newest hits up to the limit, on the named hosts only`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addHost(store, 'h2', 'db');
      for (let i = 0; i < 30; i++) {
        await addProcess(store, {
          host_id: i % 2 === 0 ? 'h1' : 'h2',
          pid: 10 + i,
          start: 100 + i,
          argv: ['bash', '-c', `job ${i}`],
        });
      }
      const all = await expected(store, 'bash');
      assert.equal(all.length, 30);
      assert.deepEqual(await found(store, 'bash', 7), all.slice(0, 7));
      const h2 = await search(store, { kind: 'command', term: 'job', hosts: ['h2'], limit: 4 });
      assert.deepEqual(
        h2.map((h) => h.host_id),
        ['h2', 'h2', 'h2', 'h2'],
      );
      assert.deepEqual(
        h2.map((h) => h.pid),
        [39, 37, 35, 33],
      );
    }));

  test(`[${dialect}] migrating a store that already holds processes indexes them`, (t) =>
    withStore(t, dialect, async (store) => {
      // Back to the schema before 0016, rows stored there, then forward again (what a store made
      // by an earlier pofr goes through).
      const down = await createMigrator(store.db, store.caps).migrateTo('0015-time-partitions');
      assert.equal(down.error, undefined);
      assert.equal(down.results?.at(-1)?.migrationName, '0016-search-and-tree-indexes');
      await addHost(store, 'h1', 'web');
      await addAll(store, ARGVS);
      await migrateToLatest(store.db, store.caps);
      await assertSameAsLike(store, 'backfilled');
      await addAll(store, [['/usr/bin/pkexec', 'again']], 900);
      assert.equal((await found(store, 'pkexec')).length, 2);
    }));
}
