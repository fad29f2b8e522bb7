import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Alert,
  type CompiledRule,
  compileRule,
  hunt,
  huntSql,
  liveVerdicts,
  loadRules,
  parseRule,
  recordAlerts,
  type SigmaRule,
  writtenAgainstStored,
} from '../../src/detect/index.js';
import { type IngestContext, ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from '../ingest/host-fixture.js';
import { huntFixture, NETWORK_CASES, PROCESS_CASES, rule } from './detect-fixture.js';

/**
 * Live detection tests each rule on a batch's rows in JavaScript (src/detect/predicate.ts) and
 * confirms in SQL only the rows it may match: these tests hold the JavaScript verdict against the
 * rule's SQL, row by row, so a wrong "false" (a missed alert) cannot hide behind the confirmation.
 */

/** The id of the row an alert matched, in its own table. */
function rowId(a: Alert): number {
  return Number({ processes: a.process_id, endpoints: a.endpoint_id, file_opens: a.file_id }[a.table]);
}

/**
 * For every rule and every row of batches 1..seqs: the in-memory verdict equals the SQL answer (hunt
 * over the store), or is null (unknown) only where the engine alone runs a regular expression.
 */
async function assertAgree(
  store: Store,
  host: TestHost,
  rules: readonly CompiledRule[],
): Promise<{ pairs: number; matches: number; unknown: number; rulesMatching: number }> {
  const bySql = new Map<CompiledRule, Set<number>>();
  for (const c of rules)
    bySql.set(c, new Set((await huntSql(store.db, [c], { limit: 1_000_000 })).map(rowId)));
  let pairs = 0;
  let matches = 0;
  let unknown = 0;
  const seen = new Map<CompiledRule, number>();
  for (let seq = 1; seq <= host.seq; seq++) {
    for (const v of await liveVerdicts(store.db, rules, { hostId: host.hostId, seq })) {
      pairs++;
      const want = bySql.get(v.rule)!.has(v.id);
      if (want) seen.set(v.rule, (seen.get(v.rule) ?? 0) + 1);
      if (v.verdict === null) {
        unknown++;
        // A regular expression JavaScript cannot stand in for, or a text beyond ASCII (PostgreSQL).
        assert.ok(
          store.caps.regexTest?.('a')?.total !== true && JSON.stringify(v.rule.rule.searches).includes('|re'),
          `${v.rule.rule.file}: unknown verdict on row ${v.id} without a regular expression`,
        );
        continue;
      }
      if (want) matches++;
      assert.equal(
        v.verdict,
        want,
        `${v.rule.rule.file} (${v.rule.rule.title}) on ${v.rule.source.table} row ${v.id}`,
      );
    }
  }
  // hunt (the same in-memory tests over the whole history, confirmed in SQL) finds what SQL finds.
  const key = (a: Alert) => `${a.rule_id} ${a.table} ${rowId(a)}`;
  const bySqlAll = (await huntSql(store.db, rules, { limit: 1_000_000 })).map(key).sort();
  assert.deepEqual((await hunt(store, rules, { limit: 1_000_000 })).map(key).sort(), bySqlAll);
  assert.deepEqual(
    (await hunt(store, rules, { limit: 1_000_000, pageRows: 7 })).map(key).sort(),
    bySqlAll,
    'read a few rows at a time',
  );
  for (const limit of [1, 3]) {
    assert.deepEqual(
      (await hunt(store, rules, { limit })).map(key).sort(),
      (await huntSql(store.db, rules, { limit })).map(key).sort(),
      `the first ${limit} matches of each rule`,
    );
  }
  // Every row SQL matched was seen by the live path (each row belongs to exactly one batch).
  for (const [c, ids] of bySql)
    assert.equal(seen.get(c) ?? 0, ids.size, `${c.rule.file}: rows outside every batch`);
  return { pairs, matches, unknown, rulesMatching: [...seen.keys()].length };
}

const compiled = (store: Store, yaml: string, file: string): CompiledRule => {
  const c = compileRule(parseRule(yaml, file), store.caps);
  assert.equal(c.status, 'ok', c.status === 'unsupported' ? `${file}: ${c.reason}` : '');
  return c as CompiledRule;
};

/** Rows where JavaScript and SQL could part: case outside ASCII, LIKE's own wildcards, newlines, empty values. */
async function edgeBatch(
  store: Store,
  host: TestHost,
  onApplied?: IngestContext['onApplied'],
): Promise<void> {
  const at = (n: number) => T0 + (100 + n) * 1_000_000;
  const records: PofrRecord[] = [
    {
      type: 'process_start',
      t: at(1),
      proc: proc(500, 50, { exe: '/opt/CAFÉ/Σigma', argv: ['ΣIGMA', 'İstanbul'] }),
    },
    {
      type: 'process_start',
      t: at(2),
      proc: proc(501, 51, { exe: '/usr/bin/X', argv: ['', 'a\nb', 'c%d_e'] }),
    },
    { type: 'process_start', t: at(3), proc: proc(502, 52, { exe: '/tmp/a\\b', argv: ['x*y?z'], cwd: '' }) },
    { type: 'file_open', t: at(4), file: file(500, 50, 3, '/home/ALICE/.ssh/Authorized_Keys') },
    {
      type: 'endpoint_open',
      t: at(5),
      endpoint: endpoint('e6', {
        pid: 501,
        start_ticks: 51,
        family: 6,
        local_ip: 'fe80::2',
        remote_ip: 'FE80::ABCD',
        remote_port: 22,
      }),
    },
  ];
  const b = host.next(records);
  assert.equal((await ingestBatch(store, b.bytes, { principal: host.hostId, onApplied })).status, 'accepted');
}

const EDGE_RULES: [string, string][] = [
  ['non-ASCII case', `  sel:\n    Image|contains: 'café'\n  condition: sel`],
  ['non-ASCII cased', `  sel:\n    Image|contains|cased: 'CAFÉ'\n  condition: sel`],
  ['sigma', `  sel:\n    CommandLine|startswith: 'σigma'\n  condition: sel`],
  ['dotted I', `  sel:\n    CommandLine|contains: 'istanbul'\n  condition: sel`],
  ['? is one character', `  sel:\n    Image: '/opt/caf?/?igma'\n  condition: sel`],
  ['newline in *', `  sel:\n    CommandLine: '* a*b c*'\n  condition: sel`],
  ['literal % and _', `  sel:\n    CommandLine|contains: 'c%d_e'\n  condition: sel`],
  ['% is not a wildcard', `  sel:\n    CommandLine|contains: 'c%e'\n  condition: sel`],
  ['backslash', `  sel:\n    Image|endswith: 'a\\b'\n  condition: sel`],
  ['escaped wildcards', `  sel:\n    CommandLine: 'x\\*y\\?z'\n  condition: sel`],
  ['empty value', `  sel:\n    CurrentDirectory: ''\n  condition: sel`],
  ['null value', `  sel:\n    CurrentDirectory: null\n  condition: sel`],
  ['exists true', `  sel:\n    ParentImage|exists: true\n  condition: sel`],
  [
    'not of a list',
    `  sel:\n    Image|startswith: '/'\n  f:\n    Image|endswith: [/X, /curl]\n  condition: sel and not f`,
  ],
  ['re with newline', `  sel:\n    CommandLine|re: 'a.b'\n  condition: sel`],
  ['re anchored', `  sel:\n    CommandLine|re: '^ΣIGMA'\n  condition: sel`],
  ['int as text pattern', `  sel:\n    ProcessId: '50*'\n  condition: sel`],
  ['int compare', `  sel:\n    ProcessId|lte: 501\n    ProcessId|gte: 500\n  condition: sel`],
  ['Uid', `  sel:\n    Uid: 1000\n  condition: sel`],
  // Every process: more matches than a small limit keeps, so hunt must keep the first ones.
  ['every process', `  sel:\n    Image|startswith: '/'\n  condition: sel`],
];

for (const dialect of DIALECTS) {
  test(`[${dialect}] the in-memory test of every modifier and condition form agrees with its SQL, row by row`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await huntFixture(store);
      await edgeBatch(store, host);
      const rules = [
        ...PROCESS_CASES.map(([n, d]) => compiled(store, rule(d), `${n}.yml`)),
        ...NETWORK_CASES.map(([n, d]) => compiled(store, rule(d, 'network_connection'), `${n}.yml`)),
        ...EDGE_RULES.map(([n, d]) => compiled(store, rule(d), `${n}.yml`)),
        compiled(
          store,
          rule(`  sel:\n    DestinationIp|cidr: 'fe80::/10'\n  condition: sel`, 'network_connection'),
          'cidr6.yml',
        ),
        compiled(
          store,
          rule(
            `  sel:\n    TargetFilename|endswith: '/.ssh/authorized_keys'\n  condition: sel`,
            'file_event',
          ),
          'keys.yml',
        ),
        compiled(
          store,
          rule(`  sel:\n    TargetFilename|startswith: /etc/sha\n  condition: sel`, 'file_create'),
          'shadow.yml',
        ),
      ];
      const r = await assertAgree(store, host, rules);
      t.diagnostic(JSON.stringify(r));
      assert.ok(r.matches >= 40, `too few matches to prove anything: ${JSON.stringify(r)}`);
    }));

  test(`[${dialect}] the rows live detection takes as ingest wrote them hold what the store reads`, (t) =>
    withStore(t, dialect, async (store) => {
      const written: Parameters<typeof writtenAgainstStored>[2][] = [];
      const keep: IngestContext['onApplied'] = async (_trx, b) => {
        written.push(b);
      };
      const { host } = await huntFixture(store, keep);
      await edgeBatch(store, host, keep);
      const rules = [
        ...PROCESS_CASES.map(([n, d]) => compiled(store, rule(d), `${n}.yml`)),
        ...EDGE_RULES.map(([n, d]) => compiled(store, rule(d), `${n}.yml`)),
        ...loadRules('bundled')
          .flatMap((l) => ('rule' in l ? [compileRule(l.rule, store.caps)] : []))
          .filter((c): c is CompiledRule => c.status === 'ok'),
        compiled(
          store,
          rule(
            `  sel:\n    TargetFilename|endswith: '/.ssh/authorized_keys'\n    User: alice\n    Uid: 1000\n  condition: sel`,
            'file_event',
          ),
          'keys.yml',
        ),
      ];
      const text = (v: unknown) => (v === null || v === undefined ? null : String(v));
      let rows = 0;
      let all = 0;
      for (const b of written) {
        all += b.rows.processes.length + b.rows.files.length;
        for (const r of await writtenAgainstStored(store.db, rules, b)) {
          rows++;
          assert.ok(r.stored !== undefined, `${r.table} row ${r.id} is not among the batch's rows`);
          assert.deepEqual(r.written.map(text), r.stored.map(text), `${r.table} row ${r.id}`);
        }
      }
      t.diagnostic(`${rows} of ${all} written rows tested as written`);
      assert.ok(rows >= 5 && rows < all, `some rows as written, some read (${rows} of ${all})`);
    }));

  test(`[${dialect}] on events made from the bundled rules, the in-memory tests agree with SQL and live alerts equal hunt`, (t) =>
    withStore(t, dialect, async (store) => {
      const rules = loadRules('bundled')
        .flatMap((l) => ('rule' in l ? [compileRule(l.rule, store.caps)] : []))
        .filter((c): c is CompiledRule => c.status === 'ok');
      const host = await addHost(store, { name: 'corpus1' });
      const onApplied = (trx: Parameters<typeof recordAlerts>[0], b: { hostId: string; seq: number }) =>
        recordAlerts(trx, rules, b).then(() => {});
      const events = corpusEvents(rules.map((c) => c.rule));
      for (let i = 0; i < events.length; i += 200) {
        const b = host.next(
          i === 0 ? [inventory(T0), ...events.slice(i, i + 200)] : events.slice(i, i + 200),
        );
        const r = await ingestBatch(store, b.bytes, { principal: host.hostId, onApplied });
        assert.equal(r.status, 'accepted', JSON.stringify(r));
      }
      const r = await assertAgree(store, host, rules);
      t.diagnostic(`${events.length} records, ${host.seq} batches: ${JSON.stringify(r)}`);
      assert.ok(r.rulesMatching >= rules.length / 2, `only ${r.rulesMatching} rules match their own events`);
      // The same matches by both paths: alerts written live, and hunt over the stored history.
      const key = (rule: string, table: string, id: number) => `${rule} ${table} ${id}`;
      const hunted = (await hunt(store, rules, { limit: 1_000_000 })).map((a) =>
        key(a.rule_id, a.table, rowId(a)),
      );
      const live = (
        await store.db.selectFrom('alerts').select(['rule', 'source_table', 'row_id']).execute()
      ).map((a) => key(a.rule, a.source_table ?? '', Number(a.row_id)));
      assert.deepEqual(live.sort(), hunted.sort());
      assert.ok(live.length > 0);
    }));
}

/**
 * Records that a rule's searches describe: for each map of each search, one process (with its
 * parent, file or connection) whose fields take the map's first values, every other one in upper
 * case so case folding is exercised. Filters get their events too: those rows must not match.
 */
function corpusEvents(rules: readonly SigmaRule[]): PofrRecord[] {
  const out: PofrRecord[] = [];
  let pid = 10_000;
  let n = 0;
  for (const r of rules) {
    for (const search of Object.values(r.searches)) {
      const maps = (Array.isArray(search) ? search : [search]).filter(
        (m): m is Record<string, unknown> => typeof m === 'object' && m !== null && !Array.isArray(m),
      );
      for (const map of maps) {
        n++;
        const f: Record<string, string | number> = {};
        for (const [key, value] of Object.entries(map)) {
          const [field, ...mods] = key.split('|');
          const s = sampleOf(value, mods, n % 2 === 0 && !mods.includes('cased'));
          if (s !== null) f[field] = s;
        }
        const t = T0 + n * 1_000_000;
        const parentPid = ++pid;
        const childPid = ++pid;
        if (f.ParentImage !== undefined || f.ParentCommandLine !== undefined) {
          out.push({
            type: 'process_start',
            t,
            proc: proc(parentPid, parentPid, {
              start: t,
              exe: String(f.ParentImage ?? '/usr/bin/parent'),
              argv: [String(f.ParentCommandLine ?? 'parent')],
            }),
          });
        }
        out.push({
          type: 'process_start',
          t: t + 1,
          proc: proc(childPid, childPid, {
            start: t + 1,
            ppid: parentPid,
            parent_start_ticks: parentPid,
            exe: String(f.Image ?? '/usr/bin/child'),
            argv: [String(f.CommandLine ?? 'child')],
            cwd: f.CurrentDirectory === undefined ? '/' : String(f.CurrentDirectory),
          }),
        });
        if (f.TargetFilename !== undefined) {
          out.push({
            type: 'file_open',
            t: t + 2,
            file: file(childPid, childPid, 3, String(f.TargetFilename)),
          });
        }
        if (f.DestinationIp !== undefined || f.DestinationPort !== undefined) {
          out.push({
            type: 'endpoint_open',
            t: t + 3,
            endpoint: endpoint(`c${n}`, {
              pid: childPid,
              start_ticks: childPid,
              remote_ip: String(f.DestinationIp ?? '192.0.2.9'),
              remote_port: Number(f.DestinationPort ?? 443) || 443,
            }),
          });
        }
      }
    }
  }
  return out;
}

/** A text the value matches under its modifiers (a stand-in for each wildcard), or null. */
function sampleOf(value: unknown, mods: readonly string[], upper: boolean): string | number | null {
  const values = (Array.isArray(value) ? value : [value]).filter((v) => v !== null && typeof v !== 'object');
  if (values.length === 0 || mods.some((m) => ['re', 'exists', 'gt', 'gte', 'lt', 'lte'].includes(m)))
    return null;
  if (mods.includes('cidr')) return String(values[0]).split('/')[0];
  const texts = (mods.includes('all') ? values : values.slice(0, 1)).map((v) =>
    String(v).replace(/\\([*?\\])|\*|\?/g, (m, lit: string | undefined) => lit ?? (m === '*' ? 'ab' : 'c')),
  );
  if (typeof values[0] === 'number' && texts.length === 1 && !mods.length) return values[0];
  let s = texts.join(' ');
  if (mods.includes('contains')) s = `x ${s} y`;
  else if (mods.includes('startswith')) s = `${s} tail`;
  else if (mods.includes('endswith')) s = `/head${s}`;
  return upper ? s.toUpperCase() : s;
}
