import type { Command } from 'commander';
import { PofrError } from '../errors.js';
import { DEFAULT_LIMIT, listAuditEvents, resolveHosts } from '../query/index.js';
import { AUDIT_KINDS } from '../roles/server/audit-kinds.js';
import type { Store } from '../store/index.js';
import { parsePositiveInt } from './duration.js';
import { printRows } from './output.js';
import { formatTime, nowMicros, parseTimeArg } from './time-args.js';

interface AuditOpts {
  data: string;
  from?: string;
  to?: string;
  kind?: string;
  host?: string;
  json?: boolean;
  limit?: string;
}

/** `pofr server audit` (CLI.md "Added for the second wave"): every refused attempt, oldest first. */
export function registerAuditCommand(
  server: Command,
  withStore: <T>(dataDir: string, fn: (store: Store) => Promise<T>) => Promise<T>,
  dataOpt: (c: Command) => Command,
): void {
  dataOpt(server.command('audit'))
    .description(
      'every refused attempt: unknown, revoked or misused keys, refused channels and commands, bad frames, refused batches (bad signature or seal, replay), rate limits',
    )
    .option('--from <time>', 'from this time: ISO 8601 or relative (-1h)')
    .option('--to <time>', 'up to this time')
    .option('--kind <kinds>', `only these kinds, comma-separated (${Object.keys(AUDIT_KINDS).join(', ')})`)
    .option('--host <name|id>', 'only refusals that named this host')
    .option('--json', 'JSON Lines on stdout', false)
    .option('--limit <n>', `at most N rows (default ${DEFAULT_LIMIT})`)
    .action(async (o: AuditOpts) => {
      const now = nowMicros();
      const from = o.from === undefined ? undefined : parseTimeArg(o.from, now);
      const to = o.to === undefined ? undefined : parseTimeArg(o.to, now);
      const limit = o.limit === undefined ? DEFAULT_LIMIT : parsePositiveInt(o.limit, '--limit');
      const kinds = o.kind
        ?.split(',')
        .map((k) => k.trim())
        .filter((k) => k.length > 0);
      for (const k of kinds ?? []) {
        if (!(k in AUDIT_KINDS)) {
          throw new PofrError(
            'POFR_USAGE',
            `--kind ${k} is not an audit kind; use one of ${Object.keys(AUDIT_KINDS).join(', ')}`,
          );
        }
      }
      const rows = await withStore(o.data, async (store) => {
        const hosts = o.host === undefined ? undefined : await resolveHosts(store, o.host);
        return listAuditEvents(store, { from, to, kinds, hosts, limit });
      });
      printRows(
        rows.map((r) => ({
          time: formatTime(r.time),
          remote: r.remote,
          fingerprint: r.fingerprint,
          host: r.host,
          kind: r.kind,
          reason: r.reason,
          host_id: r.host_id,
          ssh_user: r.ssh_user,
          code: r.code,
          source: r.source,
          suppressed: r.suppressed,
        })),
        {
          json: Boolean(o.json),
          columns: [
            { key: 'time', header: 'TIME' },
            { key: 'remote', header: 'REMOTE' },
            { key: 'kind', header: 'KIND' },
            { key: 'host', header: 'HOST', maxWidth: 36 },
            { key: 'fingerprint', header: 'FINGERPRINT' },
            { key: 'suppressed', header: 'SUPPRESSED', align: 'right', format: (v) => (v ? String(v) : '-') },
            { key: 'reason', header: 'REASON', maxWidth: 120 },
          ],
        },
      );
      if (rows.length >= limit) {
        process.stderr.write(
          `note: showing the first ${limit} rows; narrow with --from/--to or --kind, or raise --limit\n`,
        );
      }
    });
}
