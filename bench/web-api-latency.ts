import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, readStoreConfig, type Store } from '../src/store/index.js';
import { captureSql, startWeb } from '../src/web/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';
import { Random } from './seed/random.js';
import { seedFleet } from './seed/seed-fleet.js';

/**
 * The web API's latency over HTTP on loopback (median and p95 of each call the issue names: the
 * fleet, a host timeline page, the tree at an instant, a process page, a search), on the store of
 * POFR_BENCH_WEB_DATA (a data directory, e.g. one `npm run seed -- --events 10M` filled; several,
 * comma-separated, to measure SQLite and PostgreSQL in one run), else on a 200k-event store seeded
 * here. Baseline, same run: the SQL statements each call ran, executed directly on the store — what
 * the database itself costs. Then the host page in Chromium: first contentful paint and the time
 * until its timeline and tree are on screen, beside a bare page's first paint.
 */
const SAMPLES = Number(process.env.POFR_BENCH_WEB_SAMPLES ?? 40);

interface Call {
  readonly name: string;
  url(rng: Random): string;
}

function p95(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)];
}

async function callsFor(store: Store): Promise<Call[]> {
  const hosts = await store.db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'first_seen', 'last_seen'])
    .execute();
  const live = hosts.filter((h) => h.first_seen !== null && h.last_seen !== null);
  const anyProcess = await store.db
    .selectFrom('processes')
    .select((eb) => [eb.fn.max('id').as('max')])
    .executeTakeFirst();
  const maxId = Number(anyProcess?.max ?? 1);
  // Ids are not dense (PostgreSQL hands them out in blocks, prune leaves holes): the row at or after
  // a random id, so every process page asked for exists.
  const pick = new Random(7);
  const processIds: number[] = [];
  for (let i = 0; i < 64; i++) {
    const r = await store.db
      .selectFrom('processes')
      .select('id')
      .where('id', '>=', pick.int(1, maxId))
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    if (r !== undefined) processIds.push(Number(r.id));
  }
  const at = (rng: Random, h: (typeof live)[number]) =>
    Math.floor(h.first_seen! + rng.next() * (h.last_seen! - h.first_seen!));
  return [
    { name: 'fleet', url: () => '/api/fleet' },
    {
      name: 'host timeline page (500 events)',
      url: (rng) => {
        const h = rng.pick(live);
        return `/api/hosts/${h.host_id}/timeline?from=${at(rng, h)}&limit=500&observer=false`;
      },
    },
    {
      name: 'host timeline, filtered (command)',
      url: (rng) => {
        const h = rng.pick(live);
        return `/api/hosts/${h.host_id}/timeline?from=${at(rng, h)}&limit=500&command=sudo`;
      },
    },
    {
      name: 'tree at an instant',
      url: (rng) => {
        const h = rng.pick(live);
        return `/api/hosts/${h.host_id}/tree?at=${at(rng, h)}&observer=false`;
      },
    },
    { name: 'process page', url: (rng) => `/api/processes/${rng.pick(processIds)}` },
    { name: 'search path (who opened /etc/shadow)', url: () => '/api/search?kind=path&term=/etc/shadow' },
    {
      name: 'search ip (who talked to it)',
      url: () => '/api/search?kind=ip&term=193.0.6.139',
    },
    { name: 'search user', url: () => '/api/search?kind=user&term=www-data' },
    { name: 'search command (substring)', url: () => '/api/search?kind=command&term=pkexec' },
    {
      name: 'activity chart',
      url: (rng) => `/api/hosts/${rng.pick(live).host_id}/activity?buckets=240`,
    },
  ];
}

async function measure(
  store: Store,
  label: string,
): Promise<{ lines: string[]; metrics: Record<string, number> }> {
  const web = await startWeb({ store, host: '127.0.0.1', port: 0, log: () => {} });
  const lines: string[] = [];
  const metrics: Record<string, number> = {};
  try {
    const calls = await callsFor(store);
    for (const call of calls) {
      const rng = new Random(42);
      const api: number[] = [];
      const db: number[] = [];
      // One warm-up call: the first query of a kind pays for plans and cold pages, as after a restart.
      await fetch(new URL(call.url(new Random(1)), web.url));
      for (let i = 0; i < SAMPLES; i++) {
        const url = call.url(rng);
        const t0 = performance.now();
        const res = await fetch(new URL(url, web.url));
        const body = (await res.json()) as { sql?: string[] };
        api.push(performance.now() - t0);
        if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
        const t1 = performance.now();
        for (const s of body.sql ?? []) await store.readOnlyQuery(s);
        db.push(performance.now() - t1);
      }
      const key = call.name.replace(/[^a-z]+/gi, '_').toLowerCase();
      metrics[`${key}_p50_ms`] = median(api);
      metrics[`${key}_p95_ms`] = p95(api);
      metrics[`${key}_sql_p50_ms`] = median(db);
      lines.push(
        `  ${label} ${call.name.padEnd(38)} p50 ${median(api).toFixed(1).padStart(7)} ms  p95 ${p95(api).toFixed(1).padStart(7)} ms   baseline (its SQL alone) p50 ${median(db).toFixed(1).padStart(7)} ms  p95 ${p95(db).toFixed(1).padStart(7)} ms`,
      );
    }
    lines.push(...(await paint(web.url, store, label, metrics)));
  } finally {
    await web.close();
  }
  return { lines, metrics };
}

/** First contentful paint and time to a usable host page (timeline rows and tree shown) in Chromium. */
async function paint(
  base: string,
  store: Store,
  label: string,
  metrics: Record<string, number>,
): Promise<string[]> {
  // Imported here: a machine without playwright-core or Chromium still runs the API figures.
  const launch = await import('./chromium-launch.js').catch(() => null);
  if (launch === null || launch.chromiumMissing() !== null) {
    return [
      `  ${label} browser timings: skipped (${launch?.chromiumMissing() ?? 'playwright-core not installed'})`,
    ];
  }
  const browser = await launch.launchChromium().catch(() => null);
  if (browser === null) return [`  ${label} browser timings: skipped (no Chromium at /usr/bin/chromium)`];
  try {
    const host = await store.db
      .selectFrom('hosts')
      .select(['host_id', 'first_seen', 'last_seen'])
      .where('last_seen', 'is not', null)
      .executeTakeFirstOrThrow();
    const fcp: number[] = [];
    const ready: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < 5; i++) {
      const ctx = await browser.newContext({ viewport: { width: 1400, height: 950 } });
      const page = await ctx.newPage();
      const t0 = Date.now();
      await page.goto(new URL(`/host/${host.host_id}`, base).toString());
      await page
        .getByTestId('timeline-count')
        .filter({ hasText: /^[1-9]/ })
        .waitFor({ timeout: 60_000 });
      await page.getByTestId('tree-count').waitFor({ timeout: 60_000 });
      ready.push(Date.now() - t0);
      fcp.push(
        await page.evaluate(
          () => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? Number.NaN,
        ),
      );
      // The browser's own floor: a one-line HTML page (a JSON document gets Chromium's viewer,
      // which records no contentful paint).
      const plain = await ctx.newPage();
      await plain.goto('data:text/html,<!doctype html><title>bare</title><p>bare page</p>');
      const entry = await plain.waitForFunction(
        () => performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
        undefined,
        { timeout: 10_000 },
      );
      bare.push(Number(await entry.jsonValue()));
      await ctx.close();
    }
    metrics.host_page_fcp_ms = median(fcp);
    metrics.host_page_ready_ms = median(ready);
    metrics.bare_page_fcp_ms = median(bare);
    return [
      `  ${label} host page in Chromium (median of 5, new context each): first contentful paint ${median(fcp).toFixed(0)} ms, timeline and tree on screen ${median(ready).toFixed(0)} ms; baseline: a bare HTML page's first paint ${median(bare).toFixed(0)} ms`,
    ];
  } finally {
    await browser.close();
  }
}

export async function run(): Promise<BenchResult> {
  const dirs = (process.env.POFR_BENCH_WEB_DATA ?? '').split(',').filter((d) => d !== '');
  const lines: string[] = [];
  const metrics: Record<string, number> = {};
  if (dirs.length === 0) {
    const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-web-'));
    try {
      const store = await openStore({ kind: 'sqlite', path: join(dir, 'pofr.db') });
      try {
        const seeded = await seedFleet(store, { events: 200_000, hosts: 10, days: 7 });
        lines.push(
          `store: SQLite seeded here, ${seeded.events.toLocaleString('en')} events, 10 hosts, 7 days (set POFR_BENCH_WEB_DATA=DIR[,DIR] for a 10 M-event store from npm run seed); ${SAMPLES} samples a call`,
        );
        const r = await measure(store, 'sqlite');
        lines.push(...r.lines);
        Object.assign(metrics, r.metrics);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  for (const dir of dirs) {
    const config = readStoreConfig(dir);
    const store = await openStore(config);
    try {
      const n = await captureSql(store, async (s) =>
        s.db
          .selectFrom('batches')
          .select((eb) => eb.fn.sum<number>('record_count').as('n'))
          .executeTakeFirst(),
      );
      lines.push(
        `store: ${config.kind} ${dir}, ${Number(n.result?.n ?? 0).toLocaleString('en')} records; ${SAMPLES} samples a call`,
      );
      const r = await measure(store, config.kind);
      lines.push(...r.lines);
      for (const [k, v] of Object.entries(r.metrics)) metrics[`${config.kind}_${k}`] = v;
    } finally {
      await store.close();
    }
  }
  return { name: 'web-api-latency', lines, metrics };
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
