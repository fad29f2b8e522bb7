import type { Command } from 'commander';
import { pruneStore } from '../ingest/index.js';
import type { Store } from '../store/index.js';
import { parseDuration } from './duration.js';
import { printRows } from './output.js';
import { formatTime } from './time-args.js';

/**
 * `pofr server prune --older-than 90d [--yes]` (CLI.md "Added for the second wave"): retention.
 * Without --yes it only says what would go.
 */
export function registerPruneCommand(
  server: Command,
  withStore: <T>(dataDir: string, fn: (store: Store) => Promise<T>) => Promise<T>,
  dataOpt: (c: Command) => Command,
): void {
  dataOpt(server.command('prune'))
    .description(
      "drop each host's batches older than a duration, with their evidence and the rows only they derived (pofr verify then reports the window as pruned)",
    )
    .requiredOption('--older-than <duration>', 'e.g. 90d: batches whose newest record is older go')
    .option('--host <id>', 'only this host')
    .option('--yes', 'prune (without it: only list what would go)', false)
    .option('--json', 'JSON Lines output', false)
    .action(async (o: { data: string; olderThan: string; host?: string; yes: boolean; json: boolean }) => {
      const olderThan = (Date.now() - parseDuration(o.olderThan, '--older-than')) * 1000;
      const started = process.hrtime.bigint();
      let weeks = 0;
      const reports = await withStore(o.data, (s) =>
        pruneStore(s, {
          olderThan,
          hostId: o.host,
          dryRun: !o.yes,
          onPartitionDropped: () => {
            weeks++;
          },
        }),
      );
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      printRows(
        reports.filter((r) => r.batches > 0),
        {
          json: o.json,
          columns: [
            { key: 'host_id', header: 'HOST_ID' },
            { key: 'from_seq', header: 'FROM_SEQ', align: 'right' },
            { key: 'to_seq', header: 'TO_SEQ', align: 'right' },
            { key: 'batches', header: 'BATCHES', align: 'right' },
            { key: 'rows', header: 'ROWS', align: 'right' },
          ],
        },
      );
      const batches = reports.reduce((n, r) => n + r.batches, 0);
      process.stderr.write(
        o.yes
          ? `pofr: pruned ${batches} batches older than ${formatTime(olderThan)} in ${ms.toFixed(0)} ms${weeks > 0 ? ` (${weeks} weekly partitions dropped whole)` : ''}\n`
          : `pofr: ${batches} batches are older than ${formatTime(olderThan)}; nothing pruned: rerun with --yes\n`,
      );
    });
}
