import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
// Not data-dir-engine.ts: importing it registers a test hook, and this file is no test.
import { ENGINE_ENV, PG_URL_ENV } from './helpers/store-dialects.js';

/**
 * The second pass of `npm test`: the suites that reach the store only through a data directory
 * (`pofr server init`, then real `pofr` processes) run again with POFR_TEST_ENGINE=postgres, each
 * data directory on a database of its own (test/helpers/data-dir-engine.ts). Store-backed unit tests
 * are not in it: they loop over both engines in the first pass already. docs/benchmarks.md
 * ("test-suite-engines") says why each suite is in or out and what the pass costs.
 *
 * `node --test dist/test/` loads every file under test/ (helpers too), so this one does nothing
 * unless it is run with `--run`.
 */
export const DATA_DIR_SUITES = [
  // analyst commands, hunt, alerts, server init --rules, audit: every query path of the CLI
  'cli/analyst-commands.test.js',
  'cli/audit-command.test.js',
  'cli/detect-commands.test.js',
  // the contract's commands on an empty store; init's idempotence on a PostgreSQL data directory
  'e2e/cli-contract.test.js',
  // record → SSH → ingest → query → verify, tampering included
  'e2e/spine.test.js',
  // live rules at ingest, then hunt and alerts over what a real recorder sent
  'e2e/detection.test.js',
  // OpenSSH mode: the forced command ingests from its data directory, without a server process
  'e2e/openssh.test.js',
  // a server restarted under a client: resumed chains, seals and gaps after loss
  'e2e/sealing.test.js',
  'e2e/loss-reported.test.js',
  // enrollment with a registration password kept in the store
  'e2e/password-enrollment.test.js',
  // 200 hosts sending at once to one server: on PostgreSQL, its pool and the per-host row locks
  'e2e/fleet.test.js',
];

function runPass(): number {
  if (!process.env[PG_URL_ENV]) {
    process.stdout.write(
      `# PostgreSQL pass skipped: ${PG_URL_ENV} not set (e.g. ${PG_URL_ENV}=postgres://postgres@127.0.0.1:5432/test)\n`,
    );
    return 0;
  }
  const files = DATA_DIR_SUITES.map((f) => fileURLToPath(new URL(f, import.meta.url)));
  process.stdout.write(`# PostgreSQL pass: ${files.length} suites with ${ENGINE_ENV}=postgres\n`);
  const run = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], {
    env: { ...process.env, [ENGINE_ENV]: 'postgres' },
    stdio: 'inherit',
  });
  if (run.error) throw run.error;
  return run.status ?? 1;
}

if (process.argv.includes('--run')) process.exitCode = runPass();
