import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { PofrError } from '../errors.js';
import { ProcfsSampler, parseSources } from '../recorder/index.js';
import {
  loadEnrollment,
  readStateFile,
  STATE_FILES,
  wipeState,
  writeStateFile,
} from '../roles/client/client-state.js';
import { enrollClient } from '../roles/client/enroll-client.js';
import type { StopReason } from '../roles/client/recorder-health.js';
import { runClient } from '../roles/client/run-client.js';
import { boundYoungGeneration } from '../roles/client/young-generation.js';
import { defaultStateDir } from './data-dirs.js';
import { parseByteSize, parseNonNegativeInt, parsePositiveInt } from './duration.js';
import { createLog } from './log.js';
import { printRows } from './output.js';
import { readSecret } from './secret-input.js';
import { untilSignal } from './signals.js';

async function askYesNo(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** "120 records at 2026-…Z: spool … is full" for the table; the JSON keeps the object. */
function lossLine(loss: unknown): string {
  if (loss === null || typeof loss !== 'object') return '';
  const l = loss as { at?: string; dropped?: number; reason?: string };
  return `${l.dropped ?? '?'} records at ${l.at ?? '?'}: ${l.reason ?? ''}`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone or `timeoutMs` passed; true when it is gone. */
async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

function readPid(stateDir: string): number | null {
  const text = readStateFile(stateDir, STATE_FILES.pid);
  if (text === null) return null;
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  return isAlive(pid) ? pid : null;
}

interface RecorderFlags {
  readonly state: string;
  readonly interval: string;
  readonly batch: string;
  readonly keyframe: string;
  readonly spoolMax: string;
  readonly heartbeat: string;
  readonly journal: boolean;
  readonly journalMax: string;
  readonly journalSync: string;
  readonly sources: string;
  readonly traceBuffer: string;
}

/** The recorder flags as runClient takes them; a bad value is a usage error naming its flag. */
function recorderSettings(o: RecorderFlags) {
  const sources = parseSources(o.sources);
  if (typeof sources === 'string') throw new PofrError('POFR_USAGE', `--sources ${o.sources}: ${sources}`);
  return {
    intervalMs: parsePositiveInt(o.interval, '--interval'),
    batchMs: parsePositiveInt(o.batch, '--batch'),
    keyframeMs: parsePositiveInt(o.keyframe, '--keyframe'),
    spoolMaxBytes: parseByteSize(o.spoolMax, '--spool-max'),
    heartbeatMs: parsePositiveInt(o.heartbeat, '--heartbeat'),
    journal: o.journal,
    journalMaxBytes: parseByteSize(o.journalMax, '--journal-max'),
    journalSyncMs: o.journalSync === 'off' ? null : parseNonNegativeInt(o.journalSync, '--journal-sync'),
    sources,
    traceBufferKb: parsePositiveInt(o.traceBuffer, '--trace-buffer'),
    // Where tracefs is mounted, for hosts that keep it elsewhere (and tests that want none).
    tracefsRoots: process.env.POFR_TRACEFS ? process.env.POFR_TRACEFS.split(':') : undefined,
  };
}

/** The same flags again, for the daemon `client start` forks. */
function recorderArgs(o: RecorderFlags): string[] {
  return [
    ...['--state', o.state, '--interval', o.interval, '--batch', o.batch, '--keyframe', o.keyframe],
    ...['--spool-max', o.spoolMax, '--heartbeat', o.heartbeat],
    ...['--journal-max', o.journalMax, '--journal-sync', o.journalSync],
    ...['--sources', o.sources, '--trace-buffer', o.traceBuffer],
    ...(o.journal ? [] : ['--no-journal']),
  ];
}

/** Why the recorder is asked to stop: `client deregister` leaves a note before its SIGTERM. */
function stopReason(stateDir: string, signal: NodeJS.Signals): StopReason {
  const note = readStateFile(stateDir, STATE_FILES.stopReason);
  rmSync(join(stateDir, STATE_FILES.stopReason), { force: true });
  return note?.trim() === 'deregister' ? { reason: 'deregister', signal } : { reason: 'signal', signal };
}

/** How `start` launches this same program's `run` in the background. */
export interface ClientCommandsOptions {
  /** The arguments before `run …` that reach these commands with process.execPath. */
  readonly relaunchArgs: () => readonly string[];
}

/** `pofr client …`: the client commands under `client`, relaunched as `node main.js client run`. */
export function registerClientCommands(program: Command): void {
  const client = program.command('client').description('the recorder on a monitored host');
  addClientCommands(client, {
    relaunchArgs: () => [fileURLToPath(new URL('./main.js', import.meta.url)), 'client'],
  });
}

/**
 * Adds enroll, run, start, stop, status, tune and deregister to `client`: under `pofr client`, or
 * at the top of the single-file `pofr-client`.
 */
export function addClientCommands(client: Command, opts: ClientCommandsOptions): void {
  const stateOpt = (c: Command) =>
    c.option('--state <dir>', 'state directory ($POFR_STATE, else /var/lib/pofr)', defaultStateDir());

  stateOpt(client.command('enroll'))
    .description("create this client's keys, pin the server key and register")
    .requiredOption('--server <host:port>', 'the pofr server')
    .option('--token <token>', 'enrollment token from `pofr server token`')
    .option(
      '--password',
      'enroll with the registration password (from $POFR_ENROLL_PASSWORD, stdin, or a prompt)',
    )
    .option('--fingerprint <SHA256:…>', "the server's fingerprint (`pofr server fingerprint`)")
    .option('--name <name>', 'host name to register (default: this hostname)')
    .option('--ssh-user <user>', "OpenSSH mode: the pofr account on the site's own sshd (remembered for run)")
    .option('--yes', 'trust the server key without asking', false)
    .option('--if-needed', 'do nothing when this state directory is already enrolled', false)
    .action(
      async (
        o: {
          state: string;
          server: string;
          token?: string;
          password?: boolean;
          fingerprint?: string;
          name?: string;
          sshUser?: string;
          yes: boolean;
          ifNeeded: boolean;
        },
        cmd: Command,
      ) => {
        if (o.ifNeeded && readStateFile(o.state, STATE_FILES.enrollment) !== null) {
          const e = loadEnrollment(o.state);
          process.stderr.write(`pofr: already enrolled as ${e.name} (${e.host_id}) with ${o.state}\n`);
          return;
        }
        // A packaged token is a default: --password on the command line replaces it.
        if (o.password && cmd.getOptionValueSource('token') === 'config') o.token = undefined;
        if (o.password && o.token)
          throw new PofrError('POFR_USAGE', 'give either --token or --password, not both');
        if (!o.password && !o.token) {
          throw new PofrError('POFR_USAGE', 'enroll needs --token (from `pofr server token`) or --password');
        }
        const password = o.password
          ? await readSecret('Registration password: ', 'POFR_ENROLL_PASSWORD')
          : undefined;
        const e = await enrollClient({
          stateDir: o.state,
          server: o.server,
          token: o.token,
          password,
          name: o.name,
          fingerprint: o.fingerprint,
          sshUser: o.sshUser,
          confirm: o.yes
            ? async () => true
            : (fp) => askYesNo(`Server ${o.server} presents key ${fp}. Trust it? [y/N] `),
        });
        process.stderr.write(
          `pofr: enrolled as ${e.name} (${e.host_id}), status ${e.status}, server key ${e.server_fingerprint}\n`,
        );
      },
    );

  const recorderOpts = (c: Command) =>
    c
      .option('--interval <ms>', 'sampling interval in milliseconds', '1000')
      .option('--batch <ms>', 'longest a record waits before its batch is sealed', '5000')
      .option('--keyframe <ms>', 'full-state keyframe period in milliseconds', '60000')
      .option(
        '--spool-max <size>',
        'bound of the batches waiting for the server (e.g. 512M, 2G); past it, losses become gap records',
        '512M',
      )
      .option(
        '--sources <list>',
        'what records: tracefs (exact exec/exit/TCP events), uprobes (argv at the first instruction), procfs (sampling, always on); procfs alone is POFR-style sampling',
        'tracefs,uprobes,procfs',
      )
      .option(
        '--trace-buffer <KiB>',
        'kernel event buffer per CPU in KiB; a burst larger than it between two reads becomes a gap record',
        '8192',
      )
      .option(
        '--heartbeat <ms>',
        'how often the recorder says it is alive (the server calls it late past that)',
        '30000',
      )
      .option('--no-journal', 'no crash journal: a SIGKILL loses what was not sealed into a batch yet')
      .option(
        '--journal-max <size>',
        'bound of the crash journal (e.g. 64M); past it, what a crash would lose is counted',
        '64M',
      )
      .option(
        '--journal-sync <ms|off>',
        'fdatasync the crash journal at most once per this many ms (0: every cycle; off: never)',
        '1000',
      );

  recorderOpts(stateOpt(client.command('run')))
    .description('record in the foreground until SIGINT/SIGTERM, then flush')
    .action(async (o: RecorderFlags) => {
      // First, before recording allocates: this process is the recorder (see young-generation.ts).
      boundYoungGeneration();
      // One recorder per state directory: two would both extend the spool's chain.
      const other = readPid(o.state);
      if (other !== null && other !== process.pid) {
        throw new PofrError(
          'POFR_USAGE',
          `a client already records with ${o.state} (pid ${other}); stop it first (if that pid is not pofr, delete ${join(o.state, STATE_FILES.pid)})`,
        );
      }
      const log = createLog({ name: 'pofr-client' });
      if (process.getuid?.() !== 0) {
        log('not running as root: other users’ open files, executables and sockets stay invisible', {});
      }
      const settings = recorderSettings(o);
      loadEnrollment(o.state);
      const pidFile = join(o.state, STATE_FILES.pid);
      writeStateFile(o.state, STATE_FILES.pid, `${process.pid}\n`, 0o644);
      let running: Awaited<ReturnType<typeof runClient>>;
      try {
        running = await runClient({ stateDir: o.state, ...settings, log });
      } catch (e) {
        rmSync(pidFile, { force: true });
        throw e;
      }
      const sig = await untilSignal();
      const why = stopReason(o.state, sig);
      log('stopping, flushing spool', { signal: sig, reason: why.reason });
      await running.stop(10_000, why);
      rmSync(pidFile, { force: true });
    });

  recorderOpts(stateOpt(client.command('start')))
    .description('run the recorder as a background daemon')
    .action(async (o: RecorderFlags) => {
      // Checked here so a typo fails now, not in the daemon's log.
      recorderSettings(o);
      loadEnrollment(o.state);
      const running = readPid(o.state);
      if (running !== null) throw new PofrError('POFR_USAGE', `the client already runs as pid ${running}`);
      const logFd = openSync(join(o.state, STATE_FILES.log), 'a', 0o600);
      const child = spawn(process.execPath, [...opts.relaunchArgs(), 'run', ...recorderArgs(o)], {
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
      closeSync(logFd);
      writeStateFile(o.state, STATE_FILES.pid, `${child.pid}\n`, 0o644);
      child.unref();
      process.stderr.write(`pofr: client started, pid ${child.pid}, log ${join(o.state, STATE_FILES.log)}\n`);
    });

  stateOpt(client.command('stop'))
    .description('stop the background recorder (it flushes first)')
    .option('--wait', 'return only once it has exited (up to a minute)', false)
    .action(async (o: { state: string; wait: boolean }) => {
      const pid = readPid(o.state);
      if (pid === null) throw new PofrError('POFR_USAGE', `no running client for ${o.state}`);
      process.kill(pid, 'SIGTERM');
      process.stderr.write(`pofr: sent SIGTERM to ${pid}\n`);
      if (!o.wait) return;
      // The recorder seals and tries to deliver for up to 10 s before it exits.
      if (!(await exited(pid, 60_000)))
        throw new PofrError('POFR_USAGE', `client pid ${pid} still runs a minute after SIGTERM`);
      process.stderr.write(`pofr: client pid ${pid} has stopped\n`);
    });

  stateOpt(client.command('status'))
    .description('pid, spool depth, last ACK, source modes')
    .option('--json', 'JSON Lines output', false)
    .action((o: { state: string; json: boolean }) => {
      const e = loadEnrollment(o.state);
      const text = readStateFile(o.state, STATE_FILES.status);
      const st = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      const pid = readPid(o.state);
      const sources = (st.sources ?? {}) as Record<string, { mode?: string; reason?: string }>;
      printRows(
        [
          {
            host_id: e.host_id,
            name: e.name,
            server: `${e.server_host}:${e.server_port}`,
            running: pid !== null,
            pid,
            spool_depth: st.spool_depth ?? null,
            last_ack_at: st.last_ack_at ?? null,
            last_error: st.last_error ?? null,
            last_loss: st.last_loss ?? null,
            lost: lossLine(st.last_loss),
            sources: Object.entries(sources)
              .map(([k, v]) => `${k}:${v.mode ?? '?'}${v.reason ? ` (${v.reason})` : ''}`)
              .join(','),
            config_hash: st.config_hash ?? null,
            heartbeat_ms: st.heartbeat_ms ?? null,
            journal: st.journal ?? null,
            source_health: sources,
            updated_at: st.updated_at ?? null,
          },
        ],
        {
          json: o.json,
          columns: [
            { key: 'name', header: 'NAME' },
            { key: 'running', header: 'RUNNING' },
            { key: 'pid', header: 'PID' },
            { key: 'spool_depth', header: 'SPOOL' },
            { key: 'last_ack_at', header: 'LAST_ACK_AT' },
            { key: 'sources', header: 'SOURCES', maxWidth: 80 },
            { key: 'last_error', header: 'LAST_ERROR', maxWidth: 60 },
            { key: 'lost', header: 'LAST_LOSS', maxWidth: 60 },
          ],
        },
      );
    });

  stateOpt(client.command('tune'))
    .description('measure a sampling cycle on this host and recommend --interval')
    .action(() => {
      const sampler = new ProcfsSampler({ observerPids: () => new Set([process.pid]) });
      sampler.poll(Date.now() * 1000);
      const times: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = process.cpuUsage();
        sampler.poll(Date.now() * 1000);
        const d = process.cpuUsage(t0);
        times.push((d.user + d.system) / 1000);
      }
      times.sort((a, b) => a - b);
      const median = times[times.length >> 1];
      // Aim at 5 % of one core, never faster than 250 ms.
      const interval = Math.max(250, Math.ceil(median / 0.05 / 50) * 50);
      process.stdout.write(`cycle_cpu_ms ${median.toFixed(2)}\nrecommended_interval_ms ${interval}\n`);
    });

  stateOpt(client.command('deregister'))
    .description('stop recording, delete local keys and state')
    .option('--yes', 'do not ask', false)
    .action(async (o: { state: string; yes: boolean }) => {
      if (!existsSync(o.state)) throw new PofrError('POFR_NOT_ENROLLED', `${o.state} does not exist`);
      if (!o.yes && !(await askYesNo(`Delete keys, enrollment and unsent spool in ${o.state}? [y/N] `))) {
        throw new PofrError('POFR_USAGE', 'deregister cancelled');
      }
      const pid = readPid(o.state);
      if (pid !== null) {
        // The recorder's last batch says it was deregistered; its state goes only once it is gone.
        writeStateFile(o.state, STATE_FILES.stopReason, 'deregister\n');
        process.kill(pid, 'SIGTERM');
        if (!(await exited(pid, 20_000))) {
          process.stderr.write(
            `pofr: the client (pid ${pid}) did not stop within 20 s; removing its state anyway\n`,
          );
        }
      }
      wipeState(o.state);
      const leftover = existsSync(join(o.state, STATE_FILES.enrollment));
      process.stderr.write(
        `pofr: ${leftover ? 'could not remove all state' : 'deregistered'} (${o.state})\n`,
      );
    });
}
