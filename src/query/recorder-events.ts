import type { Store } from '../store/index.js';
import type { WindowOptions } from './window.js';

/** The recorder's own health, as timeline kinds (recorder_heartbeat only when asked for by name). */
export const RECORDER_KINDS = Object.freeze([
  'recorder_start',
  'recorder_stop',
  'recorder_crash',
  'recorder_heartbeat',
] as const);
export type RecorderKind = (typeof RECORDER_KINDS)[number];

const STORED_KIND: Readonly<Record<RecorderKind, string>> = Object.freeze({
  recorder_start: 'start',
  recorder_stop: 'stop',
  recorder_crash: 'crash',
  recorder_heartbeat: 'heartbeat',
});

/**
 * One health record of a recorder. The record's own fields (`version`, `config`, `sources`,
 * `reason`, `signal`, `recovered_records`, `uptime_ms`, …) are spread beside these.
 */
export interface RecorderEvent {
  readonly time: number;
  readonly ord: number;
  readonly host: string;
  readonly host_id: string;
  readonly kind: RecorderKind;
  /** The recorder's pid. */
  readonly pid: number;
  readonly summary: string;
  readonly event_id: number;
  readonly seq: number;
  readonly boot_id: string;
  readonly config_hash: string | null;
  /** recorder_crash: the blind window, from the crashed run's last journal write to the restart. */
  readonly t_from: number | null;
  readonly t_to: number | null;
  /** recorder_start: the settings that differ from the host's previous start (`key: old → new`). */
  readonly config_changed: readonly string[] | null;
  readonly [field: string]: unknown;
}

/**
 * The recorder events of the window in (t, ord, host, id) order, the first `limit`. They concern the
 * whole host, so a pid filter does not remove them (as it does not remove gaps).
 */
export async function recorderEvents(
  store: Store,
  opts: WindowOptions,
  kinds: readonly RecorderKind[],
  limit: number,
): Promise<readonly RecorderEvent[]> {
  if (kinds.length === 0) return [];
  let q = store.db
    .selectFrom('recorder_events as r')
    .innerJoin('hosts as h', 'h.host_id', 'r.host_id')
    .select([
      'r.id',
      'r.host_id',
      'h.name as host',
      'r.boot_id',
      'r.seq',
      'r.ord',
      'r.t',
      'r.kind',
      'r.pid',
      'r.config_hash',
      'r.detail',
    ])
    .where(
      'r.kind',
      'in',
      kinds.map((k) => STORED_KIND[k]),
    );
  if (opts.from !== undefined) q = q.where('r.t', '>=', opts.from);
  if (opts.to !== undefined) q = q.where('r.t', '<=', opts.to);
  if (opts.hosts) q = q.where('r.host_id', 'in', opts.hosts);
  const rows = await q
    .orderBy('r.t')
    .orderBy('r.ord')
    .orderBy('r.host_id')
    .orderBy('r.id')
    .limit(limit)
    .execute();
  const out: RecorderEvent[] = [];
  for (const r of rows) {
    const kind = `recorder_${r.kind}` as RecorderKind;
    const detail = parseDetail(r.detail);
    const t = Number(r.t);
    const changed =
      kind === 'recorder_start' ? await configChanges(store, r.host_id, Number(r.ord), detail) : null;
    const { last_write: lastWrite, ...fields } = detail;
    out.push(
      Object.freeze({
        ...fields,
        time: t,
        ord: Number(r.ord),
        host: r.host,
        host_id: r.host_id,
        kind,
        pid: Number(r.pid),
        summary: summarize(kind, Number(r.pid), t, detail, changed),
        event_id: Number(r.id),
        seq: Number(r.seq),
        boot_id: r.boot_id,
        config_hash: r.config_hash,
        t_from: kind === 'recorder_crash' && typeof lastWrite === 'number' ? lastWrite : null,
        t_to: kind === 'recorder_crash' ? t : null,
        config_changed: changed,
      }),
    );
  }
  return out;
}

/** A recorder event's `detail` JSON as an object ({} when it is not one). */
export function parseDetail(json: string): Record<string, unknown> {
  try {
    return asObject(JSON.parse(json));
  } catch {
    return {};
  }
}

function asObject(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** What changed since the host's start before this one; null for its first start. */
async function configChanges(
  store: Store,
  hostId: string,
  ord: number,
  detail: Record<string, unknown>,
): Promise<string[] | null> {
  const prev = await store.db
    .selectFrom('recorder_events')
    .select('detail')
    .where('host_id', '=', hostId)
    .where('kind', '=', 'start')
    .where('ord', '<', ord)
    .orderBy('ord', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!prev) return null;
  const before = asObject(parseDetail(prev.detail).config);
  const now = asObject(detail.config);
  const keys = [...new Set([...Object.keys(before), ...Object.keys(now)])].sort();
  return keys
    .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(now[k]))
    .map((k) => `${k}: ${show(before[k])} → ${show(now[k])}`);
}

function show(v: unknown): string {
  return v === undefined ? '(none)' : JSON.stringify(v);
}

function summarize(
  kind: RecorderKind,
  pid: number,
  t: number,
  d: Record<string, unknown>,
  changed: readonly string[] | null,
): string {
  switch (kind) {
    case 'recorder_start': {
      const hash = typeof d.config_hash === 'string' ? d.config_hash.slice(0, 12) : '?';
      const delta =
        changed === null
          ? ''
          : changed.length === 0
            ? ', same configuration as before'
            : `, CONFIGURATION CHANGED (${changed.join(', ')})`;
      return `recorder started: pofr ${String(d.version)}, pid ${pid}, config ${hash}${delta}; sources ${modes(d.sources)}`;
    }
    case 'recorder_stop':
      return d.reason === 'deregister'
        ? `recorder stopped cleanly (pid ${pid}): the host was deregistered`
        : `recorder stopped cleanly (pid ${pid}, ${String(d.signal ?? d.reason)})`;
    case 'recorder_crash': {
      const how = d.rebooted
        ? 'the host booted again without the recorder stopping'
        : 'the recorder ended without a clean stop';
      const blind =
        typeof d.last_write === 'number'
          ? `blind for ${seconds(t - d.last_write)} since its last write`
          : 'blind since an unknown time';
      const lost =
        typeof d.journal_lost === 'number' && d.journal_lost > 0 ? `, ${d.journal_lost} records lost` : '';
      return `recorder back (pid ${pid}) after a crash: ${how} (pid ${String(d.crashed_pid ?? '?')}), ${blind}; recovered ${String(d.recovered_records ?? 0)} records from its journal${lost}`;
    }
    case 'recorder_heartbeat':
      return `recorder alive (pid ${pid}, up ${seconds(Number(d.uptime_ms ?? 0) * 1000)}, spool ${String(d.spool_depth ?? '?')} batches)`;
  }
}

function modes(sources: unknown): string {
  if (!Array.isArray(sources) || sources.length === 0) return '-';
  return sources
    .map((s) => {
      const o = s as { name?: unknown; mode?: unknown; limited?: unknown };
      return `${String(o.name)}:${String(o.mode)}${o.limited ? ' (limited)' : ''}`;
    })
    .join(', ');
}

function seconds(us: number): string {
  const s = us / 1e6;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
