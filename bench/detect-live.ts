import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CompiledRule, compileRule, hunt, loadRules, recordAlerts } from '../src/detect/index.js';
import { ingestBatch } from '../src/ingest/index.js';
import { generateSigningKeyPair } from '../src/protocol/index.js';
import { openStore, type Store, sqliteCapabilities } from '../src/store/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';
import { makeBatches } from './ingest-throughput.js';

/**
 * Detection on SQLite: the cost of live rules (the bundled SigmaHQ rules evaluated on every batch,
 * in its transaction) as a ratio to ingest without rules, same batches, same run, alternating
 * rounds; then the retro-hunt of every compiled rule over the store that ingest left.
 */
const BATCHES = 30;
const ROUNDS = 3;

async function withStore<T>(fn: (store: Store) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-detect-'));
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'pofr.db') });
  try {
    return await fn(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function ingestAll(store: Store, rules: readonly CompiledRule[] | null): Promise<number> {
  const keys = generateSigningKeyPair();
  const hostId = 'bench-detect';
  await store.db
    .insertInto('hosts')
    .values({
      host_id: hostId,
      name: hostId,
      status: 'approved',
      ssh_key: 'ssh-ed25519 AAAA bench',
      ssh_fingerprint: `SHA256:${hostId}`,
      signing_key: keys.publicPem,
      enrolled_at: 0,
      approved_at: 0,
    })
    .execute();
  const batches = makeBatches(hostId, keys.privatePem, BATCHES);
  const onApplied = rules
    ? async (trx: Parameters<typeof recordAlerts>[0], b: { hostId: string; seq: number }) => {
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

export async function run(): Promise<BenchResult> {
  const rules = loadRules('bundled')
    .flatMap((l) => ('rule' in l ? [compileRule(l.rule, sqliteCapabilities)] : []))
    .filter((c): c is CompiledRule => c.status === 'ok');
  const plain: number[] = [];
  const live: number[] = [];
  let huntMs = 0;
  let rows = 0;
  for (let i = 0; i < ROUNDS; i++) {
    plain.push(await withStore((s) => ingestAll(s, null)));
    live.push(
      await withStore(async (s) => {
        const ms = await ingestAll(s, rules);
        const t0 = process.hrtime.bigint();
        await hunt(s, rules, { limit: 10_000 });
        huntMs = Number(process.hrtime.bigint() - t0) / 1e6;
        const n = await s.db
          .selectFrom('processes')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirst();
        rows = Number(n?.n);
        return ms;
      }),
    );
  }
  const ratio = median(live) / median(plain);
  return {
    name: 'detect-live',
    lines: [
      `${rules.length} bundled rules; ${BATCHES} batches (${rows} processes, 6 files and 1 endpoint each), SQLite, ${ROUNDS} rounds`,
      `ingest without rules (baseline): median ${median(plain).toFixed(0)} ms`,
      `ingest with live rules: median ${median(live).toFixed(0)} ms — ratio ${ratio.toFixed(2)}× (goal ≤ 1.3×)`,
      `retro-hunt of all rules over that store: ${huntMs.toFixed(0)} ms`,
    ],
    metrics: { plain_ms: median(plain), live_ms: median(live), ratio, hunt_ms: huntMs, rules: rules.length },
  };
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
