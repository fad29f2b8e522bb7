import type { Command } from 'commander';
import {
  type Alert,
  type CompiledRule,
  compileRule,
  hunt,
  type LoadedRule,
  loadRules,
} from '../detect/index.js';
import { PofrError } from '../errors.js';
import { listAlerts } from '../query/index.js';
import { type Store, sqliteCapabilities } from '../store/index.js';
import { type CommonOpts, checkUsage, common, windowOf } from './analyst-commands.js';
import { printRows } from './output.js';
import { formatTime } from './time-args.js';

/** One row of `pofr rules check` (CLI.md): ok, unsupported (with the reason) or error. */
interface CheckRow {
  file: string;
  id: string | null;
  title: string | null;
  status: 'ok' | 'unsupported' | 'error';
  reason: string | null;
}

/**
 * `pofr rules check DIR|FILE` and `pofr hunt` (CLI.md "Added for the second wave"): Sigma rules
 * checked without a store, and run over the stored history of the analyst's store.
 */
export function registerDetectCommands(
  program: Command,
  openStoreForData: (dir: string) => Promise<Store>,
): void {
  const rules = program.command('rules').description('Sigma detection rules');
  rules
    .command('check')
    .description('parse and compile a Sigma rule file or directory: one row per rule; exit 1 on any error')
    .argument('<dir|file>', 'a rule file, a directory of them (searched recursively), or "bundled"')
    .option('--json', 'JSON Lines on stdout, one object per rule')
    .action((where: string, o: { json?: boolean }) => {
      // Compiling needs no store: the SQLite capabilities stand for both engines (what compiles is
      // the same; only the regular-expression operator differs).
      const rows = loadRules(where).map((l) => checkRow(l));
      printRows(rows, {
        json: Boolean(o.json),
        columns: [
          { key: 'status', header: 'STATUS' },
          { key: 'file', header: 'FILE', maxWidth: 90 },
          { key: 'title', header: 'TITLE', maxWidth: 60 },
          { key: 'reason', header: 'REASON', maxWidth: 100 },
        ],
      });
      const count = (s: CheckRow['status']) => rows.filter((r) => r.status === s).length;
      process.stderr.write(
        `${rows.length} rules: ${count('ok')} ok, ${count('unsupported')} unsupported, ${count('error')} error\n`,
      );
      if (count('error') > 0) process.exitCode = 1;
    });

  common(program.command('hunt'))
    .description(
      'run Sigma rules over the stored history: one row per match, with the batch that recorded it',
    )
    .option(
      '--rules <dir|file|bundled>',
      'rules to run (default: the bundled SigmaHQ Linux rules)',
      'bundled',
    )
    .action(async (o: CommonOpts & { rules: string }) => {
      checkUsage(o as { from?: unknown; to?: unknown; limit?: unknown });
      const loaded = loadRules(o.rules);
      const bad = loaded.flatMap((l) => ('error' in l ? [l.error.message] : []));
      if (bad.length > 0) {
        throw new PofrError(
          'POFR_RULE_INVALID',
          `${bad.length} rule file(s) are invalid (pofr rules check ${o.rules} lists them); first: ${bad[0]}`,
        );
      }
      const store = await openStoreForData(o.data);
      let alerts: Alert[];
      let unsupported = 0;
      try {
        const w = await windowOf(store, o);
        const compiled: CompiledRule[] = [];
        for (const l of loaded) {
          if (!('rule' in l)) continue;
          const c = compileRule(l.rule, store.caps);
          if (c.status === 'ok') compiled.push(c);
          else unsupported++;
        }
        alerts = await hunt(store, compiled, { hosts: w.hosts, from: w.from, to: w.to, limit: w.limit });
      } finally {
        await store.close();
      }
      const rows = alerts.map((a) => ({ ...a, time: formatTime(a.time) }));
      // The table's WHAT column is derived here; JSON rows keep the matched columns themselves.
      printRows(o.json ? rows : rows.map((r) => ({ ...r, what: whatOf(r) })), {
        json: Boolean(o.json),
        columns: ALERT_COLUMNS,
      });
      if (unsupported > 0) {
        process.stderr.write(
          `note: ${unsupported} rule(s) cannot run on what pofr records (pofr rules check ${o.rules} says why)\n`,
        );
      }
    });

  registerAlertsCommand(program, openStoreForData);
}

/** `pofr alerts`: the alerts live detection wrote at ingest, oldest first, keyed as `hunt` prints. */
function registerAlertsCommand(program: Command, openStoreForData: (dir: string) => Promise<Store>): void {
  common(program.command('alerts'))
    .description(
      'alerts raised at ingest by pofr server run --rules, with the batch that recorded each match',
    )
    .action(async (o: CommonOpts) => {
      checkUsage(o as { from?: unknown; to?: unknown; limit?: unknown });
      const store = await openStoreForData(o.data);
      let rows: Record<string, unknown>[];
      try {
        const w = await windowOf(store, o);
        const found = await listAlerts(store, { ...w, order: 'asc' });
        rows = found.map((a) => ({
          time: formatTime(a.t),
          host: a.host,
          pid: a.pid,
          rule_id: a.rule,
          title: a.summary,
          level: a.severity,
          author: a.author,
          batch_seq: a.batch_seq,
          batch_hash: a.batch_hash,
          host_id: a.host_id,
          table: a.source_table,
          ...matchedRow(a.detail),
        }));
      } finally {
        await store.close();
      }
      printRows(o.json ? rows : rows.map((r) => ({ ...r, what: whatOf(r) })), {
        json: Boolean(o.json),
        columns: ALERT_COLUMNS,
      });
    });
}

function matchedRow(detail: string | null): Record<string, unknown> {
  if (detail === null) return {};
  try {
    const v = JSON.parse(detail) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : { detail };
  } catch {
    return { detail };
  }
}

function checkRow(l: LoadedRule): CheckRow {
  if ('error' in l) return { file: l.file, id: null, title: null, status: 'error', reason: l.error.message };
  const c = compileRule(l.rule, sqliteCapabilities);
  return {
    file: l.file,
    id: l.rule.id,
    title: l.rule.title,
    status: c.status,
    reason: c.status === 'unsupported' ? c.reason : null,
  };
}

/** The matched row in a few words: the command line, the file, or the remote end and program. */
const ALERT_COLUMNS = [
  { key: 'time', header: 'TIME' },
  { key: 'host', header: 'HOST' },
  { key: 'pid', header: 'PID', align: 'right' as const },
  { key: 'level', header: 'LEVEL' },
  { key: 'title', header: 'RULE', maxWidth: 50 },
  { key: 'author', header: 'AUTHOR', maxWidth: 30 },
  { key: 'batch_seq', header: 'BATCH', align: 'right' as const },
  { key: 'what', header: 'WHAT', maxWidth: 80 },
];

function whatOf(a: Record<string, unknown>): string {
  if (a.table === 'file_opens') return `${String(a.exe ?? '?')} opened ${String(a.path)}`;
  if (a.table === 'endpoints') {
    const name = (a.looked_up ?? a.fqdn) as string | null;
    return `${String(a.exe ?? '?')} → ${String(a.remote_ip)}:${String(a.remote_port)}${name ? ` (${name})` : ''}`;
  }
  return String(a.cmdline ?? a.exe ?? '');
}
