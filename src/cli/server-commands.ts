import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { PofrError } from '../errors.js';
import { hostStates } from '../query/index.js';
import { createToken, listClients, removeHost, setHostStatus } from '../roles/server/enrollment.js';
import { ensureHostKey, ensureSharedHostKey } from '../roles/server/host-key.js';
import { loadLiveRules } from '../roles/server/live-rules.js';
import { clearRegistrationPassword, setRegistrationPassword } from '../roles/server/registration-password.js';
import { runServer } from '../roles/server/run-server.js';
import {
  initStoreConfig,
  openStore,
  readStoreConfig,
  type Store,
  writeConfiguredRules,
} from '../store/index.js';
import { startWeb } from '../web/index.js';
import { recorderStateColumns } from './analyst-commands.js';
import { registerAuditCommand } from './audit-command.js';
import { defaultDataDir } from './data-dirs.js';
import { parseDuration, parseListen, parsePositiveInt } from './duration.js';
import { createLog } from './log.js';
import { registerOpensshCommands } from './openssh-commands.js';
import { printRows } from './output.js';
import { registerPruneCommand } from './prune-command.js';
import { readSecret } from './secret-input.js';
import { untilSignal } from './signals.js';
import { formatTime } from './time-args.js';
import { printWebToken } from './web-command.js';

export async function openStoreForData(dataDir: string): Promise<Store> {
  // A file rather than a directory: a SQLite store of its own, such as a `pofr export --format sqlite`.
  if (existsSync(dataDir) && statSync(dataDir).isFile()) return openStore({ kind: 'sqlite', path: dataDir });
  return openStore(readStoreConfig(dataDir));
}

async function withStore<T>(dataDir: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStoreForData(dataDir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The `--data` option every server command takes. */
export const dataOpt = (c: Command) =>
  c.option('--data <dir>', 'data directory ($POFR_DATA, else ./pofr-data)', defaultDataDir());

/** Registers `pofr server …` and returns the `server` command, so other groups can add to it. */
export function registerServerCommands(program: Command): Command {
  const server = program.command('server').description('the central server: SSH listener, ingest, store');

  dataOpt(server.command('init'))
    .description('create the store (SQLite unless --db postgres://…) and the SSH host key; idempotent')
    .option('--db <url>', 'postgres://user@host/db to store in PostgreSQL instead of SQLite')
    .option(
      '--rules <dir|file|bundled>',
      'Sigma rules every ingest path of this data directory evaluates on each batch (`server run` and OpenSSH mode); repeatable, replaces the recorded list',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--no-rules', 'forget the recorded rules: ingest without live detection')
    .action(async (o: { data: string; db?: string; rules: string[] | false }) => {
      const config = initStoreConfig(o.data, o.db);
      const store = await openStore(config);
      let key: Awaited<ReturnType<typeof ensureSharedHostKey>>;
      try {
        // On a PostgreSQL store that other nodes already use, this node takes their host key.
        key = await ensureSharedHostKey(store, o.data);
        if (o.rules === false) writeConfiguredRules(o.data, []);
        else if (o.rules.length > 0) {
          // Checked now (an invalid file is refused here, not at the first batch); recorded absolute,
          // since the forced command of OpenSSH mode runs from another directory.
          const rules = o.rules.map((r) => (r === 'bundled' ? r : resolve(r)));
          const n = loadLiveRules(rules, store.caps, () => {}).length;
          writeConfiguredRules(o.data, rules);
          process.stderr.write(`pofr: ${n} rules evaluated on every batch (${rules.join(', ')})\n`);
        }
      } finally {
        await store.close();
      }
      process.stderr.write(`pofr: store ready (${config.kind}) in ${o.data}\n`);
      process.stdout.write(`${key.fingerprint}\n`);
    });

  dataOpt(server.command('run'))
    .description('run the SSH listener and ingest until SIGINT/SIGTERM')
    .option('--listen <host:port>', 'SSH listen address', '0.0.0.0:2222')
    .option(
      '--web <host:port>',
      'also serve the read-only web UI there (other than loopback needs `server token --web`)',
    )
    .option(
      '--geoip <file.mmdb>',
      'country database for endpoints (MaxMind format; default: the bundled DB-IP Lite)',
    )
    .option('--no-geoip', 'leave endpoint countries empty')
    .option('--geoip-city <file.mmdb>', 'a city database (MaxMind format, e.g. GeoLite2-City) for endpoints')
    .option(
      '--geoip-asn <file.mmdb>',
      'an ASN database (MaxMind format, e.g. GeoLite2-ASN); default: the bundled DB-IP ASN Lite',
    )
    .option('--no-rdns', 'do not resolve remote addresses to names (reverse DNS)')
    .option(
      '--rules <dir|file|bundled>',
      'Sigma rules evaluated on every ingested batch into alerts (repeatable; `bundled`: the SigmaHQ Linux rules); default: those `server init --rules` recorded',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(
      async (o: {
        data: string;
        rules: string[];
        listen: string;
        web?: string;
        geoip?: string | false;
        geoipCity?: string;
        geoipAsn?: string;
        rdns: boolean;
      }) => {
        const { host, port } = parseListen(o.listen, '--listen');
        const web = o.web === undefined ? null : parseListen(o.web, '--web');
        const log = createLog({ name: 'pofr-server' });
        const geoip = o.geoip === false ? null : (o.geoip ?? undefined);
        const running = await runServer({
          dataDir: o.data,
          host,
          port,
          log,
          geoip,
          geoipCity: o.geoipCity,
          geoipAsn: o.geoipAsn,
          rdns: o.rdns,
          // --rules replaces what `server init --rules` recorded for this data directory (read by
          // runServer after the options are checked: a bad --geoip is a usage error, exit 2).
          rules: o.rules.length > 0 ? o.rules : undefined,
        });
        let ui: Awaited<ReturnType<typeof startWeb>> | null = null;
        try {
          if (web) ui = await startWeb({ store: running.store, host: web.host, port: web.port, log });
        } catch (e) {
          await running.close();
          throw e;
        }
        const sig = await untilSignal();
        log('shutting down', { signal: sig });
        await ui?.close();
        await running.close();
      },
    );

  dataOpt(server.command('fingerprint'))
    .description("print the server's SSH host key fingerprint (SHA256:…)")
    .action((o: { data: string }) => {
      readStoreConfig(o.data);
      process.stdout.write(`${ensureHostKey(o.data).fingerprint}\n`);
    });

  dataOpt(server.command('token'))
    .description('print a new enrollment token')
    .option('--ttl <duration>', 'validity, e.g. 24h', '24h')
    .option('--uses <n>', 'how many clients may enroll with it', '1')
    .option('--approve', 'approve clients that use it at once', false)
    .option(
      '--web',
      'print an access token for the web UI instead (needed on any address but loopback)',
      false,
    )
    .action(async (o: { data: string; ttl: string; uses: string; approve: boolean; web: boolean }) => {
      if (o.web) {
        await withStore(o.data, printWebToken);
        return;
      }
      const ttlMs = parseDuration(o.ttl, '--ttl');
      const uses = parsePositiveInt(o.uses, '--uses');
      const token = await withStore(o.data, (s) => createToken(s, { ttlMs, uses, approve: o.approve }));
      process.stdout.write(`${token}\n`);
    });

  dataOpt(server.command('password'))
    .description('set the registration password clients may enroll with (`pofr client enroll --password`)')
    .option(
      '--approve',
      'approve clients that enroll with it at once (default: they wait for `approve`)',
      false,
    )
    .option('--clear', 'remove the registration password: only tokens enroll', false)
    .action(async (o: { data: string; approve: boolean; clear: boolean }) => {
      if (o.clear) {
        await withStore(o.data, clearRegistrationPassword);
        process.stderr.write('pofr: registration password removed\n');
        return;
      }
      const password = await readSecret('New registration password: ', 'POFR_ENROLL_PASSWORD');
      await withStore(o.data, (s) => setRegistrationPassword(s, password, o.approve));
      process.stderr.write(
        `pofr: registration password set; clients using it are ${o.approve ? 'approved at once' : 'pending until approved'}\n`,
      );
    });

  dataOpt(server.command('clients'))
    .description('list enrolled clients')
    .option('--json', 'JSON Lines output', false)
    .action(async (o: { data: string; json: boolean }) => {
      const { rows, states } = await withStore(o.data, async (s) => ({
        rows: await listClients(s),
        states: await hostStates(s),
      }));
      printRows(
        rows.map((r) => {
          const st = recorderStateColumns(states.get(r.host_id));
          return {
            host_id: r.host_id,
            name: r.name,
            status: r.status,
            enrolled_at: formatTime(r.enrolled_at),
            last_batch_at: formatTime(r.last_batch_at),
            last_seq: r.last_seq,
            fingerprint: r.ssh_fingerprint,
            client_version: r.client_version,
            ...st,
            state_since: formatTime(st.state_since),
            last_heard: formatTime(st.last_heard),
          };
        }),
        {
          json: o.json,
          columns: [
            { key: 'host_id', header: 'HOST_ID' },
            { key: 'name', header: 'NAME', maxWidth: 32 },
            { key: 'status', header: 'STATUS' },
            { key: 'state', header: 'STATE' },
            { key: 'state_since', header: 'SINCE' },
            { key: 'enrolled_at', header: 'ENROLLED_AT' },
            { key: 'last_batch_at', header: 'LAST_BATCH_AT' },
            { key: 'last_seq', header: 'LAST_SEQ' },
            { key: 'client_version', header: 'VERSION' },
            { key: 'fingerprint', header: 'FINGERPRINT' },
          ],
        },
      );
    });

  for (const verb of ['approve', 'revoke'] as const) {
    dataOpt(server.command(verb))
      .argument('<host>', 'host name or id')
      .description(verb === 'approve' ? 'let a pending client send data' : 'refuse a client key from now on')
      .action(async (ref: string, o: { data: string }) => {
        const host = await withStore(o.data, (s) =>
          setHostStatus(s, ref, verb === 'approve' ? 'approved' : 'revoked'),
        );
        process.stderr.write(`pofr: ${host.name} (${host.host_id}) is ${host.status}\n`);
      });
  }

  registerAuditCommand(server, withStore, dataOpt);
  registerOpensshCommands(server, withStore, dataOpt);
  registerPruneCommand(server, withStore, dataOpt);

  dataOpt(server.command('remove'))
    .argument('<host>', 'host name or id')
    .description('delete a client and all its data')
    .option('--yes', 'do not ask for confirmation', false)
    .action(async (ref: string, o: { data: string; yes: boolean }) => {
      if (!o.yes) {
        if (!process.stdin.isTTY)
          throw new PofrError('POFR_USAGE', `remove ${ref}: confirm with --yes when not on a terminal`);
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(`Delete host ${ref} and everything recorded for it? Type yes: `);
        rl.close();
        if (answer.trim() !== 'yes') throw new PofrError('POFR_USAGE', 'remove cancelled');
      }
      const host = await withStore(o.data, (s) => removeHost(s, ref));
      process.stderr.write(`pofr: removed ${host.name} (${host.host_id}) and its data\n`);
    });
  return server;
}
