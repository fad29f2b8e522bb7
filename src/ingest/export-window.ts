import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { PofrError } from '../errors.js';
import { decodeRecords, readBatchFrame } from '../protocol/index.js';
import { openStore, type Store } from '../store/index.js';
import { pofrVersion } from '../version.js';
import { ingestBatch } from './apply-batch.js';
import { seedStateAt, stateAt, stateDigest } from './state-at-cut.js';

export type ExportFormat = 'sqlite' | 'jsonl' | 'csv';

export interface ExportOptions {
  readonly hostId: string;
  /** The window, µs: batches whose records reach into it (t_to ≥ from, t_from ≤ to). */
  readonly from?: number;
  readonly to?: number;
  readonly format: ExportFormat;
  /** The file written; `PATH.manifest.json` is written beside it. Neither may exist. */
  readonly out: string;
}

/** What `pofr export` wrote, also the content of its manifest. */
export interface ExportManifest {
  pofr_version: string;
  format: ExportFormat;
  host_id: string;
  host: string;
  from: number | null;
  to: number | null;
  seq_from: number | null;
  seq_to: number | null;
  batches: number;
  records: number;
  created_at: number;
  /** The exported file: its name (beside the manifest), size and sha256. */
  file: { name: string; bytes: number; sha256: string };
  /** Every exported batch's seq and chain hash (the sha256 the host signed), in order. */
  chain: { seq: number; hash: string }[];
  /** The hash the first exported batch links to (its predecessor's), to check against the source. */
  prev_hash: string | null;
}

/**
 * Writes one host's window as a standalone file and a manifest of hashes beside it.
 *
 * `sqlite`: a pofr store of its own holding the host's signed batches of the window as received,
 * and the rows derived from them by ingesting them again; it starts from the state the source held
 * open when the window began (recorded as a prune at the window's first batch), so
 * `pofr verify --data EXPORT` re-verifies it anywhere: signatures, chain, every derived row.
 * `jsonl` and `csv`: the batches' records, one per line, with the batch's seq and hash.
 *
 * @example
 * await exportWindow(store, { hostId, from, to, format: 'sqlite', out: '/tmp/web1.sqlite' });
 */
export async function exportWindow(store: Store, opts: ExportOptions): Promise<ExportManifest> {
  const manifestPath = `${opts.out}.manifest.json`;
  for (const p of [opts.out, manifestPath]) {
    if (existsSync(p)) {
      throw new PofrError('POFR_USAGE', `${p} exists; export writes new files only: choose another --out`);
    }
  }
  const host = await store.db
    .selectFrom('hosts')
    .selectAll()
    .where('host_id', '=', opts.hostId)
    .executeTakeFirst();
  if (!host) {
    throw new PofrError(
      'POFR_HOST_UNKNOWN',
      `no enrolled host has id ${opts.hostId}; list hosts with pofr hosts`,
    );
  }
  let q = store.db
    .selectFrom('batches')
    .select(['seq', 'hash', 'prev_hash', 'received_at', 't_to'])
    .where('host_id', '=', opts.hostId);
  if (opts.from !== undefined) q = q.where('t_to', '>=', opts.from);
  if (opts.to !== undefined) q = q.where('t_from', '<=', opts.to);
  const batches = (await q.orderBy('seq').execute()).map((b) => ({
    seq: Number(b.seq),
    hash: b.hash,
    prev_hash: b.prev_hash,
    received_at: Number(b.received_at),
  }));
  const manifest: ExportManifest = {
    pofr_version: pofrVersion(),
    format: opts.format,
    host_id: host.host_id,
    host: host.name,
    from: opts.from ?? null,
    to: opts.to ?? null,
    seq_from: batches[0]?.seq ?? null,
    seq_to: batches.at(-1)?.seq ?? null,
    batches: batches.length,
    records: 0,
    created_at: Date.now() * 1000,
    file: { name: basename(opts.out), bytes: 0, sha256: '' },
    chain: batches.map((b) => ({ seq: b.seq, hash: b.hash })),
    prev_hash: batches[0]?.prev_hash ?? null,
  };
  const raw = async (seq: number) => {
    const ev = await store.db
      .selectFrom('batch_evidence')
      .select('raw')
      .where('host_id', '=', opts.hostId)
      .where('seq', '=', seq)
      .executeTakeFirst();
    if (!ev) {
      throw new PofrError(
        'POFR_VERIFY_FAILED',
        `batch ${opts.hostId}#${seq} has no evidence; run pofr verify`,
      );
    }
    return Buffer.from(ev.raw);
  };
  if (opts.format === 'sqlite') {
    manifest.records = await writeSqlite(store, host, batches, raw, opts.out);
  } else {
    manifest.records = await writeLines(batches, raw, opts.format, opts.out);
  }
  const bytes = readFileSync(opts.out);
  manifest.file.bytes = bytes.length;
  manifest.file.sha256 = createHash('sha256').update(bytes).digest('hex');
  const fd = openSync(manifestPath, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(manifest, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
  return manifest;
}

type HostRow = {
  host_id: string;
  name: string;
  ssh_key: string;
  ssh_fingerprint: string;
  signing_key: string;
};
type BatchKey = { seq: number; hash: string; prev_hash: string; received_at: number };

async function writeSqlite(
  src: Store,
  host: HostRow & { enrolled_at: number; boot_id: string | null },
  batches: readonly BatchKey[],
  raw: (seq: number) => Promise<Buffer>,
  out: string,
): Promise<number> {
  const dst = await openStore({ kind: 'sqlite', path: out });
  try {
    const first = batches[0];
    const before =
      first === undefined
        ? undefined
        : await src.db
            .selectFrom('batches')
            .select(['seq', 'hash', 'boot_id', 't_to'])
            .where('host_id', '=', host.host_id)
            .where('seq', '=', first.seq - 1)
            .executeTakeFirst();
    // The seal seed stays on the server: with it, anyone could seal batches as this host.
    await dst.db
      .insertInto('hosts')
      .values({
        host_id: host.host_id,
        name: host.name,
        status: 'approved',
        ssh_key: host.ssh_key,
        ssh_fingerprint: host.ssh_fingerprint,
        signing_key: host.signing_key,
        enrolled_at: Number(host.enrolled_at),
        approved_at: Number(host.enrolled_at),
        boot_id: before?.boot_id ?? null,
      })
      .execute();
    if (first !== undefined && before) {
      // The window starts mid-chain: the state open then comes along, recorded as a prune.
      await seedStateAt(src.db, dst.db, host.host_id, first.seq, Number(before.t_to), true);
      const digest = stateDigest(await stateAt(dst.db, host.host_id, first.seq, Number(before.t_to)));
      await dst.db
        .insertInto('prunes')
        .values({
          host_id: host.host_id,
          before_seq: first.seq,
          last_hash: before.hash,
          boot_id: before.boot_id,
          t_to: Number(before.t_to),
          older_than: Number(before.t_to),
          at: Date.now() * 1000,
          batches: 0,
          rows: 0,
          state_sha256: digest,
        })
        .execute();
    }
    let records = 0;
    // In the order the source applied them: rows depend on it (a gap filled late).
    const order = [...batches].sort((a, b) => a.received_at - b.received_at || a.seq - b.seq);
    for (const b of order) {
      const r = await ingestBatch(dst, await raw(b.seq), {
        principal: host.host_id,
        receivedAt: b.received_at,
      });
      if (r.status !== 'accepted') {
        throw new PofrError(
          'POFR_VERIFY_FAILED',
          `batch ${host.host_id}#${b.seq} does not ingest again (${r.status === 'refused' ? r.reason : r.status}); run pofr verify`,
        );
      }
      records += r.records;
    }
    return records;
  } finally {
    await dst.close();
  }
}

const CSV_COLUMNS = ['seq', 'batch_hash', 'index', 't', 'type', 'record'] as const;

async function writeLines(
  batches: readonly BatchKey[],
  raw: (seq: number) => Promise<Buffer>,
  format: 'jsonl' | 'csv',
  out: string,
): Promise<number> {
  const fd = openSync(out, 'wx', 0o600);
  let records = 0;
  try {
    if (format === 'csv') writeSync(fd, `${CSV_COLUMNS.join(',')}\n`);
    for (const b of batches) {
      const recs = decodeRecords(readBatchFrame(await raw(b.seq)));
      const lines: string[] = [];
      recs.forEach((r, index) => {
        const t = 't' in r ? r.t : null;
        if (format === 'jsonl')
          lines.push(JSON.stringify({ seq: b.seq, batch_hash: b.hash, index, record: r }));
        else
          lines.push(
            [b.seq, b.hash, index, t ?? '', r.type, JSON.stringify(r)]
              .map((v) => csvField(String(v)))
              .join(','),
          );
      });
      records += recs.length;
      if (lines.length > 0) writeSync(fd, `${lines.join('\n')}\n`);
    }
  } finally {
    closeSync(fd);
  }
  return records;
}

/** RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled. */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
