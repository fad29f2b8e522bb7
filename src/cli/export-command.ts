import type { Command } from 'commander';
import { PofrError } from '../errors.js';
import { type ExportFormat, exportWindow } from '../ingest/index.js';
import { resolveHosts } from '../query/index.js';
import type { Store } from '../store/index.js';
import { defaultDataDir } from './data-dirs.js';
import { parseTimeArg } from './time-args.js';

const FORMATS: readonly ExportFormat[] = ['sqlite', 'jsonl', 'csv'];

/**
 * `pofr export --host H [--from T] [--to T] --format sqlite|jsonl|csv --out PATH` (CLI.md "Added for
 * the second wave"): one host's window as a file of its own, with `PATH.manifest.json` beside it.
 */
export function registerExportCommand(
  program: Command,
  openStoreForData: (data: string) => Promise<Store>,
): void {
  program
    .command('export')
    .description(
      "one host's window as a standalone file and a manifest of hashes; a sqlite export carries the signed batches, so pofr verify --data EXPORT re-verifies it anywhere",
    )
    .option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir())
    .requiredOption('--host <name|id>', 'the host')
    .option('--from <time>', 'start of the window (ISO 8601, or -15m, -2d …)')
    .option('--to <time>', 'end of the window')
    .requiredOption('--format <format>', 'sqlite, jsonl or csv')
    .requiredOption('--out <path>', 'the file to write (must not exist)')
    .action(
      async (o: { data: string; host: string; from?: string; to?: string; format: string; out: string }) => {
        if (!FORMATS.includes(o.format as ExportFormat)) {
          throw new PofrError('POFR_USAGE', `--format ${o.format} is not one of ${FORMATS.join(', ')}`);
        }
        const from = o.from === undefined ? undefined : parseTimeArg(o.from);
        const to = o.to === undefined ? undefined : parseTimeArg(o.to);
        const store = await openStoreForData(o.data);
        try {
          const hosts = await resolveHosts(store, o.host);
          if (hosts.length !== 1) {
            throw new PofrError('POFR_USAGE', `--host ${o.host} names ${hosts.length} hosts; give its id`);
          }
          const m = await exportWindow(store, {
            hostId: hosts[0] as string,
            from,
            to,
            format: o.format as ExportFormat,
            out: o.out,
          });
          process.stdout.write(`${o.out}\t${m.file.bytes}\n${o.out}.manifest.json\n`);
          process.stderr.write(
            `pofr: exported ${m.batches} batches (${m.records} records) of ${m.host} (${m.host_id}), sha256 ${m.file.sha256}\n`,
          );
        } finally {
          await store.close();
        }
      },
    );
}
