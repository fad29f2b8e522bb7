import type { Command } from 'commander';
import { runDemo } from '../roles/demo/run-demo.js';
import { parsePositiveInt } from './duration.js';
import { createLog } from './log.js';
import { printRows } from './output.js';
import { formatTime } from './time-args.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'record this machine for N seconds through a temporary server while a scripted incident runs',
    )
    .option('--seconds <n>', 'how long to record', '30')
    .option('--cleanup', 'delete the demo data afterwards instead of keeping it for exploration', false)
    .option('--json', 'print the incident timeline as JSON Lines', false)
    .action(async (o: { seconds: string; cleanup: boolean; json: boolean }) => {
      const say = (line: string) => process.stderr.write(`pofr demo: ${line}\n`);
      const result = await runDemo({
        seconds: parsePositiveInt(o.seconds, '--seconds'),
        keep: !o.cleanup,
        log: createLog({ name: 'pofr-demo', quiet: true }),
        say,
      });
      say(`incident timeline (${result.incidentEvents.length} events):`);
      printRows(
        result.incidentEvents.map((e) => ({ ...e, time: formatTime(e.time) })),
        {
          json: o.json,
          columns: [
            { key: 'time', header: 'TIME' },
            { key: 'kind', header: 'KIND' },
            { key: 'pid', header: 'PID' },
            { key: 'summary', header: 'SUMMARY', maxWidth: 100 },
          ],
        },
      );
      if (result.dataDir) {
        const d = result.dataDir;
        say(`the record is kept in ${d}; explore it with, for example:`);
        say(`  ./bin/pofr timeline --data ${d} --exclude-observer`);
        say(`  ./bin/pofr procs --data ${d} --command ${result.marker} --json`);
        say(`  ./bin/pofr net --data ${d} --proto tcp`);
        say(`  ./bin/pofr tree --data ${d} --at -1m`);
        say(`  ./bin/pofr verify --data ${d}`);
        say(`  ./bin/pofr web --data ${d}            # the web UI on http://127.0.0.1:8080/`);
      }
    });
}
