import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seedFleet } from '../../bench/seed/seed-fleet.js';
import { cursorOf, type TimelineEvent, timeline } from '../../src/query/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost } from './fixtures.js';

const END = 1_795_000_000_000_000;
const key = (e: TimelineEvent) => `${e.kind}:${cursorOf(e).id}:${e.time}:${e.ord}`;

/** The process image row an event is of, or null for gaps and the recorder's own events. */
function processOf(e: TimelineEvent): number | null {
  if (e.kind === 'gap' || e.kind.startsWith('recorder_')) return null;
  return (e as { process_id: number | null }).process_id;
}

/** What a command filter must give: the whole timeline, with only the matching processes' events. */
async function expected(store: Store, hosts: string[], re: RegExp, observer?: boolean) {
  const rows = await store.db.selectFrom('processes').select(['id', 'cmdline', 'exe']).execute();
  const matches = new Set(
    rows.filter((r) => re.test(r.cmdline ?? '') || re.test(r.exe ?? '')).map((r) => Number(r.id)),
  );
  const all = await timeline(store, { hosts, limit: 100_000, observer });
  return all.filter((e) => {
    if (e.kind === 'gap' || e.kind.startsWith('recorder_')) return true;
    const p = processOf(e);
    return p !== null && matches.has(p);
  });
}

// Patterns that mean the same to JavaScript (SQLite's regexp()) and to PostgreSQL's `~`: a plain
// word, an anchored path, an alternation (no one run is required), escapes, a class, a quantifier
// that allows zero, a run too short for a trigram, and one that matches nothing.
const PATTERNS = [
  'sudo',
  '^/usr/bin/s',
  'sshd|cron',
  '\\.conf',
  'python[0-9]',
  'bas?h',
  'ls',
  'no-such-command-anywhere',
];

for (const dialect of DIALECTS) {
  test(`[${dialect}] a command filter keeps exactly the matching processes' events, page after page`, (t) =>
    withStore(t, dialect, async (store) => {
      const r = await seedFleet(store, { events: 6000, hosts: 2, days: 1, end: END, seed: 21 });
      const hosts = [r.hosts.find((h) => h.incident)?.host_id ?? r.hosts[0].host_id];
      let nonEmpty = 0;
      for (const pattern of PATTERNS) {
        for (const observer of [undefined, false]) {
          const want = await expected(store, hosts, new RegExp(pattern, 'u'), observer);
          const got = await timeline(store, { hosts, limit: 100_000, command: pattern, observer });
          assert.deepEqual(got.map(key), want.map(key), `command ${pattern}, observer ${observer}`);
          if (want.some((e) => processOf(e) !== null)) nonEmpty++;
        }
        // Paging through it gives the same events, once each.
        const want = await expected(store, hosts, new RegExp(pattern, 'u'));
        const paged: TimelineEvent[] = [];
        let after: ReturnType<typeof cursorOf> | undefined;
        for (let i = 0; i < 40; i++) {
          const page = await timeline(store, { hosts, limit: 25, command: pattern, after });
          paged.push(...page);
          if (page.length < 25) break;
          after = cursorOf(page[page.length - 1]);
        }
        assert.deepEqual(paged.map(key), want.map(key).slice(0, paged.length), `paged ${pattern}`);
        assert.equal(paged.length, Math.min(want.length, 40 * 25), `paged ${pattern}`);
        // Within a window too.
        const from = want[Math.floor(want.length / 3)]?.time;
        if (from !== undefined) {
          const windowed = await timeline(store, { hosts, command: pattern, from, limit: 100_000 });
          assert.deepEqual(
            windowed.map(key),
            want
              .filter((e) => e.time >= from || (e.kind === 'gap' && windowed.some((w) => key(w) === key(e))))
              .map(key),
            `from ${from}, ${pattern}`,
          );
        }
      }
      assert.ok(nonEmpty >= 8, `${nonEmpty} of the filters found something`);
    }));

  test(`[${dialect}] a command filter over two hosts, in a window, with kinds, page after page, is the reference's`, (t) =>
    withStore(t, dialect, async (store) => {
      // Pages end where the sources' (process_id, time, ord) keys say (migration 0018): small pages
      // over two hosts cut inside runs of equal times, and a window and a kind list bound each source.
      const r = await seedFleet(store, { events: 6000, hosts: 2, days: 1, end: END, seed: 22 });
      const hosts = r.hosts.map((h) => h.host_id);
      let compared = 0;
      for (const pattern of ['sudo', 'sshd|cron', 'bas?h']) {
        for (const observer of [undefined, false]) {
          const all = await expected(store, hosts, new RegExp(pattern, 'u'), observer);
          const activity = all.filter((e) => processOf(e) !== null);
          if (activity.length < 10) continue;
          const from = activity[Math.floor(activity.length / 4)].time;
          const to = activity[Math.floor((activity.length * 3) / 4)].time;
          for (const kinds of [undefined, ['process_exec', 'file_open', 'endpoint_state', 'gap']]) {
            const ref = await timeline(store, { hosts, from, to, kinds, observer, limit: 100_000 });
            const want = ref.filter((e) => all.some((a) => key(a) === key(e)));
            const paged: TimelineEvent[] = [];
            let after: ReturnType<typeof cursorOf> | undefined;
            for (let i = 0; i < 200; i++) {
              const page = await timeline(store, {
                hosts,
                from,
                to,
                kinds,
                observer,
                command: pattern,
                after,
                limit: 7,
              });
              paged.push(...page);
              if (page.length < 7) break;
              after = cursorOf(page[page.length - 1]);
            }
            const label = `${pattern}, observer ${observer}, kinds ${kinds}`;
            assert.deepEqual(paged.map(key), want.map(key).slice(0, paged.length), label);
            assert.equal(paged.length, Math.min(want.length, 200 * 7), label);
            assert.ok(
              paged.every((e) => (e.time >= from && e.time <= to) || e.kind === 'gap'),
              label,
            );
            compared += paged.length;
          }
        }
      }
      assert.ok(compared > 100, `${compared} events compared`);
    }));

  test(`[${dialect}] a command matching more process images than are resolved first walks the time index, same events`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      // More than the resolve limit (5,000), inserted in chunks the engines' parameter limits take.
      const rows = Array.from({ length: 5100 }, (_, i) => ({
        host_id: 'h1',
        boot_id: 'b',
        pid: 1000 + i,
        start_ticks: i,
        exec_index: 0,
        start: 10_000 + i * 10,
        end: i % 3 === 0 ? null : 10_000 + i * 10 + 5,
        end_reason: i % 3 === 0 ? null : 'exit',
        ppid: 1,
        parent_id: null,
        exe: i % 2 === 0 ? '/usr/bin/worker' : '/usr/bin/other',
        exe_raw: null,
        comm: 'worker',
        comm_raw: null,
        argv: JSON.stringify(['worker', String(i)]),
        argv_raw: null,
        cmdline: `worker ${i}`,
        cwd: '/',
        cwd_raw: null,
        ruid: 0,
        euid: 0,
        rgid: 0,
        egid: 0,
        user: 'root',
        source: 'trace',
        observer: 0,
        open_ord: i,
        close_ord: i % 3 === 0 ? null : i,
      }));
      for (let i = 0; i < rows.length; i += 500) {
        await store.db
          .insertInto('processes')
          .values(rows.slice(i, i + 500))
          .execute();
      }
      for (const pattern of ['worker', 'bin/worker', '7$']) {
        const want = await expected(store, ['h1'], new RegExp(pattern, 'u'));
        const got = await timeline(store, { hosts: ['h1'], limit: 100_000, command: pattern });
        assert.deepEqual(got.map(key), want.map(key), pattern);
        const page = await timeline(store, { hosts: ['h1'], limit: 30, command: pattern, from: 20_000 });
        assert.deepEqual(
          page.map(key),
          want
            .filter((e) => e.time >= 20_000)
            .slice(0, 30)
            .map(key),
          `${pattern} from 20000`,
        );
      }
    }));
}
