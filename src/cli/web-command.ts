import type { Command } from 'commander';
import { createWebToken } from '../roles/server/web-tokens.js';
import type { Store } from '../store/index.js';
import { startWeb } from '../web/index.js';
import { defaultDataDir } from './data-dirs.js';
import { parseListen } from './duration.js';
import { createLog } from './log.js';
import { openStoreForData } from './server-commands.js';
import { untilSignal } from './signals.js';

/** `pofr web --data DIR [--listen HOST:PORT]`: the web UI over a store, without the SSH listener. */
export function registerWebCommand(program: Command): void {
  program
    .command('web')
    .description('serve the read-only web UI over a store (127.0.0.1:8080 by default) until SIGINT/SIGTERM')
    .option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir())
    .option(
      '--listen <host:port>',
      'address of the web UI; other than loopback needs `pofr server token --web`',
      '127.0.0.1:8080',
    )
    .action(async (o: { data: string; listen: string }) => {
      const { host, port } = parseListen(o.listen, '--listen');
      const log = createLog({ name: 'pofr-web' });
      const store = await openStoreForData(o.data);
      try {
        const web = await startWeb({ store, host, port, log });
        process.stdout.write(`${web.url}\n`);
        const sig = await untilSignal();
        log('shutting down', { signal: sig });
        await web.close();
      } finally {
        await store.close();
      }
    });
}

/** `pofr server token --web`: one web access token on stdout. */
export async function printWebToken(store: Store): Promise<void> {
  process.stdout.write(`${await createWebToken(store)}\n`);
}
