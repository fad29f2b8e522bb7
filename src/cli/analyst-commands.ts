import type { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import { PofrError } from '../errors.js';
import {
  DEFAULT_LIMIT,
  findEndpoints,
  findFiles,
  findProcesses,
  formatAddress,
  type HostState,
  hostStates,
  listHosts,
  resolveHosts,
  runSql,
  TIMELINE_KINDS,
  timeline,
  treeAt,
  type WindowOptions,
} from '../query/index.js';
import type { Store } from '../store/index.js';
import { defaultDataDir } from './data-dirs.js';
import { type Column, printRows } from './output.js';
import { formatTime, nowMicros, parseTimeArg } from './time-args.js';

/** One host's re-verification, as `pofr verify` prints it. */
export interface VerifyRow {
  host_id: string;
  host: string;
  batches: number;
  ok: boolean;
  gaps: number;
  sealed: boolean;
  complete: boolean;
  known_gaps: {
    kind: string;
    seq_from: number | null;
    seq_to: number | null;
    t_from: number | null;
    t_to: number | null;
    detail: string;
  }[];
  failures: { seq: number; code: string; reason: string }[];
  /** The host's latest prune: batches below before_seq were taken away on purpose. */
  pruned?: { before_seq: number; t_to: number; older_than: number; at: number } | null;
}

export interface AnalystDeps {
  openStoreForData(dataDir: string): Promise<Store>;
  verify(store: Store, opts: { hostId?: string; rederive?: boolean }): Promise<VerifyRow[]>;
  /** Where rows go (default process.stdout); tests pass a buffer. */
  readonly out?: Writable;
  /** Where notes go (default process.stderr). */
  readonly err?: Writable;
}

export interface CommonOpts {
  data: string;
  host?: string;
  from?: string;
  to?: string;
  json?: boolean;
  limit?: string;
}

interface Printed {
  readonly rows: readonly object[];
  readonly columns: readonly Column[];
  /** Rows as the table shows them, when it needs derived cells; JSON always prints `rows`. */
  readonly tableRows?: readonly object[];
  /** The query's row limit, to tell the analyst when it was reached. */
  readonly limit?: number;
}

const TIME_KEYS = [
  'time',
  'start',
  'end',
  'first_seen',
  'last_seen',
  't_from',
  't_to',
  'last_batch_at',
  'state_since',
  'last_heard',
] as const;

/**
 * Adds the analyst's read-only verbs (CLI.md "Analyst"): hosts, procs, files, net, timeline, tree,
 * sql, verify. Each opens the store, asks one question of src/query, prints rows and closes it.
 */
export function registerAnalystCommands(program: Command, deps: AnalystDeps): void {
  const withStore = async (o: { data: string }, fn: (store: Store) => Promise<Printed>, json: boolean) => {
    checkUsage(o as { from?: unknown; to?: unknown; at?: unknown; limit?: unknown });
    const store = await deps.openStoreForData(o.data);
    let printed: Printed;
    try {
      printed = await fn(store);
    } finally {
      await store.close();
    }
    const out = deps.out ?? process.stdout;
    const err = deps.err ?? process.stderr;
    printRows(
      json ? printed.rows : (printed.tableRows ?? printed.rows),
      { json, columns: printed.columns },
      out,
      err,
    );
    if (printed.limit !== undefined && printed.rows.length >= printed.limit) {
      err.write(
        `note: showing the first ${printed.limit} rows; narrow with --from/--to or filters, or raise --limit\n`,
      );
    }
  };

  common(program.command('hosts'))
    .description('monitored hosts: id, name, status, OS, kernel, timezone, first and last seen')
    .action((o: CommonOpts) =>
      withStore(
        o,
        async (store) => {
          const w = await windowOf(store, o);
          const ids = w.hosts ? new Set(w.hosts) : null;
          const states = await hostStates(store, { hosts: w.hosts });
          const rows = (await listHosts(store))
            .filter((h) => ids === null || ids.has(h.host_id))
            .filter((h) => w.to === undefined || (h.first_seen !== null && h.first_seen <= w.to))
            .filter((h) => w.from === undefined || (h.last_seen !== null && h.last_seen >= w.from))
            .slice(0, w.limit)
            .map((h) => withTimes({ ...h, ...recorderStateColumns(states.get(h.host_id)) }));
          return {
            rows,
            columns: [
              { key: 'host_id', header: 'HOST ID' },
              { key: 'name', header: 'NAME' },
              { key: 'status', header: 'STATUS' },
              { key: 'state', header: 'STATE' },
              { key: 'state_since', header: 'SINCE' },
              { key: 'os', header: 'OS', maxWidth: 40 },
              { key: 'kernel', header: 'KERNEL', maxWidth: 30 },
              { key: 'timezone', header: 'TZ' },
              { key: 'first_seen', header: 'FIRST SEEN' },
              { key: 'last_seen', header: 'LAST SEEN' },
              { key: 'last_seq', header: 'LAST SEQ', align: 'right' },
            ],
          };
        },
        Boolean(o.json),
      ),
    );

  common(program.command('procs'))
    .description('processes (one row per program image) that ran in the window')
    .option('--command <regex>', 'regular expression matched against the command line or the exe path')
    .option('--user <name|uid>', 'user name, or a uid matching the real or effective uid')
    .option('--pid <n>', 'process id')
    .option('--exclude-observer', "leave out the recorder's own processes")
    .option('--container <id>', 'processes of this container (its id or a prefix of it, as docker ps shows)')
    .action(
      (
        o: CommonOpts & {
          command?: string;
          user?: string;
          pid?: string;
          excludeObserver?: boolean;
          container?: string;
        },
      ) =>
        withStore(
          o,
          async (store) => {
            const w = await windowOf(store, o);
            const found = await findProcesses(store, {
              ...w,
              command: o.command,
              user: o.user,
              pid: intOption(o.pid, '--pid', 0, 0xffff_ffff),
              observer: o.excludeObserver ? false : undefined,
              container: o.container,
            });
            return {
              rows: found.map((p) => withTimes(p)),
              limit: w.limit,
              columns: [
                { key: 'host', header: 'HOST' },
                { key: 'pid', header: 'PID', align: 'right' },
                { key: 'ppid', header: 'PPID', align: 'right' },
                { key: 'start', header: 'START' },
                { key: 'end', header: 'END' },
                { key: 'user', header: 'USER', format: (v) => (v === null ? '-' : String(v)) },
                { key: 'cmdline', header: 'COMMAND', maxWidth: 100 },
              ],
            };
          },
          Boolean(o.json),
        ),
    );

  common(program.command('files'))
    .description('files held open in the window')
    .option('--path <glob>', 'path glob: * matches any characters, / included; ? one character')
    .option('--pid <n>', 'process id')
    .option('--kind <kind>', 'file, dir, dev, socket, pipe, anon or other')
    .option('--exclude-observer', "leave out files of the recorder's own processes")
    .action((o: CommonOpts & { path?: string; pid?: string; kind?: string; excludeObserver?: boolean }) =>
      withStore(
        o,
        async (store) => {
          const w = await windowOf(store, o);
          const found = await findFiles(store, {
            ...w,
            path: o.path,
            pid: intOption(o.pid, '--pid', 0, 0xffff_ffff),
            kind: o.kind,
            observer: o.excludeObserver ? false : undefined,
          });
          return {
            rows: found.map((f) => withTimes(f)),
            limit: w.limit,
            columns: [
              { key: 'host', header: 'HOST' },
              { key: 'pid', header: 'PID', align: 'right' },
              { key: 'comm', header: 'COMM' },
              { key: 'fd', header: 'FD', align: 'right' },
              { key: 'kind', header: 'KIND' },
              { key: 'first_seen', header: 'FIRST SEEN' },
              { key: 'last_seen', header: 'LAST SEEN' },
              { key: 'open', header: 'OPEN', format: (v) => (v ? 'yes' : 'no') },
              { key: 'path', header: 'PATH', maxWidth: 100 },
            ],
          };
        },
        Boolean(o.json),
      ),
    );

  common(program.command('net'))
    .description('network endpoints alive in the window')
    .option('--remote <ip>', 'remote address')
    .option('--port <n>', 'local or remote port')
    .option('--country <cc>', 'country code of the remote address (e.g. DE)')
    .option('--proto <proto>', 'tcp or udp')
    .option('--pid <n>', 'process id')
    .option('--exclude-observer', "leave out the recorder's own endpoints")
    .action(
      (
        o: CommonOpts & {
          remote?: string;
          port?: string;
          country?: string;
          proto?: string;
          pid?: string;
          excludeObserver?: boolean;
        },
      ) =>
        withStore(
          o,
          async (store) => {
            if (o.proto !== undefined && o.proto !== 'tcp' && o.proto !== 'udp') {
              throw new PofrError('POFR_USAGE', `--proto ${o.proto}: use tcp or udp`);
            }
            if (o.country !== undefined && !/^[A-Za-z]{2}$/.test(o.country)) {
              throw new PofrError(
                'POFR_USAGE',
                `--country ${o.country}: use a two-letter country code such as DE`,
              );
            }
            const w = await windowOf(store, o);
            const found = await findEndpoints(store, {
              ...w,
              remote: o.remote,
              port: intOption(o.port, '--port', 0, 65535),
              country: o.country,
              proto: o.proto,
              pid: intOption(o.pid, '--pid', 0, 0xffff_ffff),
              observer: o.excludeObserver ? false : undefined,
            });
            const rows = found.map((e) => withTimes(e));
            return {
              rows,
              limit: w.limit,
              tableRows: rows.map((e) => ({
                ...e,
                local: formatAddress(e.local_ip, e.local_port),
                remote: formatAddress(e.remote_ip, e.remote_port),
              })),
              columns: [
                { key: 'host', header: 'HOST' },
                { key: 'pid', header: 'PID', align: 'right' },
                { key: 'comm', header: 'COMM' },
                { key: 'proto', header: 'PROTO' },
                { key: 'local', header: 'LOCAL' },
                { key: 'remote', header: 'REMOTE' },
                { key: 'state', header: 'STATE' },
                { key: 'first_seen', header: 'FIRST SEEN' },
                { key: 'last_seen', header: 'LAST SEEN' },
                { key: 'country', header: 'CC' },
                { key: 'fqdn', header: 'FQDN', maxWidth: 50 },
              ],
            };
          },
          Boolean(o.json),
        ),
    );

  common(program.command('timeline'))
    .description('every event in the window in exact order')
    .option('--kind <kinds>', `only these event kinds, comma-separated: ${TIMELINE_KINDS.join(', ')}`)
    .option('--pid <n>', 'only events of this process id (gaps are always shown)')
    .option('--exclude-observer', "leave out the recorder's own processes and what they hold")
    .action((o: CommonOpts & { kind?: string; pid?: string; excludeObserver?: boolean }) =>
      withStore(
        o,
        async (store) => {
          const w = await windowOf(store, o);
          const events = await timeline(store, {
            ...w,
            kinds: o.kind?.split(',').map((k) => k.trim()),
            pid: intOption(o.pid, '--pid', 0, 0xffff_ffff),
            observer: o.excludeObserver ? false : undefined,
          });
          return {
            rows: events.map((e) => withTimes(e)),
            limit: w.limit,
            columns: [
              { key: 'time', header: 'TIME' },
              { key: 'host', header: 'HOST' },
              { key: 'kind', header: 'KIND' },
              { key: 'pid', header: 'PID', align: 'right' },
              { key: 'summary', header: 'SUMMARY', maxWidth: 120 },
            ],
          };
        },
        Boolean(o.json),
      ),
    );

  common(program.command('tree'), false)
    .description('the process tree alive at an instant (default: now)')
    .option('--at <time>', 'the instant: ISO 8601 or relative (-15m); default now')
    .option('--exclude-observer', "leave out the recorder's own processes")
    .action((o: CommonOpts & { at?: string; excludeObserver?: boolean }) =>
      withStore(
        o,
        async (store) => {
          if (o.from !== undefined || o.to !== undefined) {
            throw new PofrError('POFR_USAGE', 'tree shows one instant: use --at T instead of --from/--to');
          }
          const w = await windowOf(store, o);
          const at = o.at === undefined ? nowMicros() : parseTimeArg(o.at);
          const rows = (
            await treeAt(store, {
              hosts: w.hosts,
              at,
              limit: w.limit,
              observer: o.excludeObserver ? false : undefined,
            })
          ).map((p) => withTimes(p));
          return {
            rows,
            limit: w.limit,
            tableRows: rows.map((p) => ({
              ...p,
              tree: `${'  '.repeat(p.depth)}${p.cmdline || `[${p.comm}]`}`,
            })),
            columns: [
              { key: 'host', header: 'HOST' },
              { key: 'pid', header: 'PID', align: 'right' },
              { key: 'ppid', header: 'PPID', align: 'right' },
              { key: 'start', header: 'START' },
              { key: 'user', header: 'USER' },
              { key: 'tree', header: 'COMMAND', maxWidth: 120 },
            ],
          };
        },
        Boolean(o.json),
      ),
    );

  program
    .command('sql')
    .description('run one read-only SQL statement on the store (tables: docs/schema.md)')
    .argument('<statement>', 'e.g. "SELECT comm, count(*) AS n FROM processes GROUP BY comm"')
    .option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir())
    .option('--json', 'JSON Lines on stdout, one object per row')
    .option('--limit <n>', 'print at most N rows')
    .action((statement: string, o: { data: string; json?: boolean; limit?: string }) =>
      withStore(
        o,
        async (store) => {
          const limit = intOption(o.limit, '--limit', 1, Number.MAX_SAFE_INTEGER);
          const all = await runSql(store, statement);
          const rows = limit === undefined ? all : all.slice(0, limit);
          const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
          return {
            rows,
            columns: keys.map((k) => ({ key: k, header: k, format: formatSqlCell })),
          };
        },
        Boolean(o.json),
      ),
    );

  program
    .command('verify')
    .description(
      're-verify signatures, seals and hash chains of every stored batch, re-derive every row from them, and list known gaps; exit 0 authentic and complete, 1 any failure, 3 authentic with known gaps',
    )
    .option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir())
    .option('--host <name|id>', 'only this host')
    .option('--quick', 'check the signed evidence only; skip re-deriving rows (misses edited rows)')
    .option(
      '--allow-gaps',
      'exit 0 when the record is authentic, even with known gaps (they are still listed)',
    )
    .option('--json', 'JSON Lines on stdout, one object per host')
    .action((o: { data: string; host?: string; quick?: boolean; allowGaps?: boolean; json?: boolean }) =>
      withStore(
        o,
        async (store) => {
          const hostIds = o.host === undefined ? [undefined] : await resolveHosts(store, o.host);
          const reports: VerifyRow[] = [];
          for (const hostId of hostIds) {
            reports.push(...(await deps.verify(store, { hostId, rederive: !o.quick })));
          }
          const err = deps.err ?? process.stderr;
          for (const r of reports) {
            for (const g of r.known_gaps)
              err.write(`pofr: ${r.host} (${r.host_id}) known gap, ${g.kind}: ${g.detail}\n`);
          }
          if (reports.some((r) => !r.ok)) process.exitCode = 1;
          else if (reports.some((r) => !r.complete) && !o.allowGaps) {
            err.write(
              'pofr: authentic but incomplete: the gaps above are known (exit status 3; --allow-gaps accepts them)\n',
            );
            process.exitCode = 3;
          }
          return {
            rows: reports.map((r) => ({
              host: r.host,
              host_id: r.host_id,
              batches: r.batches,
              ok: r.ok,
              complete: r.complete,
              sealed: r.sealed,
              gaps: r.gaps,
              known_gaps: r.known_gaps.map((g) => withTimes(g)),
              failures: r.failures,
              pruned: r.pruned
                ? {
                    before_seq: r.pruned.before_seq,
                    t_to: formatTime(r.pruned.t_to),
                    older_than: formatTime(r.pruned.older_than),
                    at: formatTime(r.pruned.at),
                  }
                : null,
            })),
            tableRows: reports.map((r) => ({
              ...r,
              failures: describeFailures(r.failures),
              known_gaps: describeGaps(r.known_gaps),
              pruned: r.pruned
                ? `before batch ${r.pruned.before_seq} (to ${formatTime(r.pruned.t_to)})`
                : null,
            })),
            columns: [
              { key: 'host', header: 'HOST' },
              { key: 'host_id', header: 'HOST ID' },
              { key: 'batches', header: 'BATCHES', align: 'right' },
              { key: 'ok', header: 'OK', format: (v) => (v ? 'yes' : 'NO') },
              { key: 'complete', header: 'COMPLETE', format: (v) => (v ? 'yes' : 'NO') },
              { key: 'sealed', header: 'SEALED', format: (v) => (v ? 'yes' : 'no') },
              { key: 'gaps', header: 'GAPS', align: 'right' },
              { key: 'known_gaps', header: 'KNOWN GAPS', maxWidth: 80 },
              { key: 'failures', header: 'FAILURES', maxWidth: 120 },
              { key: 'pruned', header: 'PRUNED' },
            ],
          };
        },
        Boolean(o.json),
      ),
    );
}

/**
 * A host's recorder state as `hosts` and `server clients` print it (JSON keys `state`,
 * `state_since`, `state_detail`, `last_heard`, `heartbeat_ms`, `config_hash`, `recorder_pid`,
 * `recorder_version`, `last_stop`, `last_crash`); times stay µs for the caller to format.
 */
export function recorderStateColumns(s: HostState | undefined) {
  return {
    state: s?.state ?? null,
    state_since: s?.since ?? null,
    state_detail: s?.detail ?? null,
    last_heard: s?.last_heard ?? null,
    heartbeat_ms: s?.heartbeat_ms ?? null,
    config_hash: s?.started?.config_hash ?? null,
    recorder_pid: s?.started?.pid ?? null,
    recorder_version: s?.started?.version ?? null,
    last_stop: s?.stopped ? { ...s.stopped, t: formatTime(s.stopped.t) } : null,
    last_crash: formatTime(s?.last_crash ?? null),
  };
}

/**
 * The options every analyst verb takes (CLI.md conventions). `tree` looks at one instant: it still
 * accepts --from/--to (to explain that --at is wanted) but does not advertise them.
 */
export function common(cmd: Command, window = true): Command {
  const from = new Option(
    '--from <time>',
    'window start: ISO 8601 (2026-11-24T20:15:00Z, local time allowed) or relative (-15m)',
  );
  const to = new Option('--to <time>', 'window end: ISO 8601 or relative');
  return cmd
    .option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir())
    .option('--host <name|id>', 'only this host (name or host id)')
    .addOption(window ? from : from.hideHelp())
    .addOption(window ? to : to.hideHelp())
    .option('--json', 'JSON Lines on stdout, one object per row')
    .option('--limit <n>', `at most N rows (default ${DEFAULT_LIMIT})`);
}

/** Bad times and limits are usage errors (exit 2), found before any store is opened. */
export function checkUsage(o: { from?: unknown; to?: unknown; at?: unknown; limit?: unknown }): void {
  for (const t of [o.from, o.to, o.at]) if (typeof t === 'string') parseTimeArg(t);
  if (typeof o.limit === 'string') intOption(o.limit, '--limit', 1, Number.MAX_SAFE_INTEGER);
}

export async function windowOf(store: Store, o: CommonOpts): Promise<WindowOptions & { limit: number }> {
  // One clock reading for both ends, so "-1h" and "-0m" describe the same hour.
  const now = nowMicros();
  const from = o.from === undefined ? undefined : parseTimeArg(o.from, now);
  const to = o.to === undefined ? undefined : parseTimeArg(o.to, now);
  if (from !== undefined && to !== undefined && from > to) {
    throw new PofrError('POFR_USAGE', `--from ${o.from} is after --to ${o.to}; swap them`);
  }
  const limit = intOption(o.limit, '--limit', 1, Number.MAX_SAFE_INTEGER) ?? DEFAULT_LIMIT;
  const hosts = o.host === undefined ? undefined : await resolveHosts(store, o.host);
  return { hosts, from, to, limit };
}

function intOption(s: string | undefined, option: string, min: number, max: number): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!/^\d+$/.test(s.trim()) || n < min || n > max) {
    throw new PofrError('POFR_USAGE', `${option} ${s} is not a whole number from ${min} to ${max}`);
  }
  return n;
}

/** The same row with its µs times as ISO 8601 UTC strings (CLI.md: times out). */
function withTimes<T extends object>(
  row: T,
): { [K in keyof T]: K extends (typeof TIME_KEYS)[number] ? string | null : T[K] } {
  const out: Record<string, unknown> = { ...(row as Record<string, unknown>) };
  for (const k of TIME_KEYS) {
    const v = out[k];
    if (typeof v === 'number' || (v === null && k in out)) out[k] = formatTime(v);
  }
  return out as { [K in keyof T]: K extends (typeof TIME_KEYS)[number] ? string | null : T[K] };
}

function describeFailures(failures: readonly { seq: number; code: string; reason: string }[]): string {
  if (failures.length === 0) return '-';
  const first = failures
    .slice(0, 2)
    .map((f) => `seq ${f.seq} ${f.code}: ${f.reason}`)
    .join('; ');
  return `${failures.length}: ${first}${failures.length > 2 ? '; …' : ''}`;
}

function describeGaps(
  gaps: readonly { kind: string; seq_from: number | null; seq_to: number | null }[],
): string {
  if (gaps.length === 0) return '-';
  const seqs = (g: { seq_from: number | null; seq_to: number | null }) =>
    g.seq_from === null
      ? ''
      : g.seq_from === g.seq_to
        ? ` seq ${g.seq_from}`
        : ` seq ${g.seq_from}–${g.seq_to}`;
  const first = gaps
    .slice(0, 2)
    .map((g) => `${g.kind}${seqs(g)}`)
    .join('; ');
  return `${gaps.length}: ${first}${gaps.length > 2 ? '; …' : ''}`;
}

function formatSqlCell(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}
