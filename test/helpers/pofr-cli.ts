import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { cleanStaleTracing, locateTracefs } from '../../src/recorder/index.js';
import { initDbArgs } from './data-dir-engine.js';

function removeStaleTracing(): void {
  if (process.getuid?.() !== 0) return;
  const where = locateTracefs();
  if (where.ok) cleanStaleTracing(where.root);
}

/** The built CLI entry point, run as a real process exactly as users run `pofr`. */
export const POFR_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `pofr ARGS` as a real process. `server init --data DIR` without `--db` makes DIR's store on
 * the engine POFR_TEST_ENGINE names (data-dir-engine.ts), so every CLI and e2e test can run on
 * PostgreSQL unchanged.
 */
export async function pofr(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<CliResult> {
  const argv = [...args, ...(await engineInitArgs(args))];
  const child = spawn(process.execPath, [POFR_MAIN, ...argv], {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(opts.input ?? '');
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

async function engineInitArgs(args: readonly string[]): Promise<string[]> {
  if (args[0] !== 'server' || args[1] !== 'init' || args.includes('--db')) return [];
  const at = args.indexOf('--data');
  return at > 0 && at + 1 < args.length ? initDbArgs(args[at + 1]) : [];
}

/** Parses JSON Lines output, failing loudly on anything else on stdout. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The hash of stored batch `seq` (of the store's one host), read with `pofr sql` as an analyst would. */
export async function storedBatchHash(data: string, seq: number): Promise<unknown> {
  const out = await pofr([
    'sql',
    '--data',
    data,
    '--json',
    `SELECT hash FROM batches WHERE seq = ${Number(seq)}`,
  ]);
  return jsonLines(out.stdout)[0]?.hash;
}

/** A long-running pofr process (server or client) whose stderr is collected. */
export interface Daemon {
  readonly child: ChildProcess;
  stderr(): string;
  /** Resolves with the first stderr match of `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export function startPofr(args: readonly string[], env: NodeJS.ProcessEnv = {}): Daemon {
  const child = spawn(process.execPath, [POFR_MAIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...waiters]) {
      const m = err.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    stderr: () => err,
    // A wait for readiness, not a timing claim: a server loading its rules and country databases
    // took over 20 s to print its port once on a CI machine shared with other runs (load ~150).
    waitFor(re, timeoutMs = 60_000) {
      const m = err.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${re} in stderr:\n${err}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (mm) => {
            clearTimeout(timer);
            resolve(mm);
          },
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`process exited (${code}) before ${re} appeared; stderr:\n${err}`));
        });
      });
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, graceMs);
      const code = await exited;
      clearTimeout(timer);
      // A recorder killed cannot remove its tracing instance and probes: do it for it, as the next
      // recorder's start would, so that no test leaves tracing behind.
      if (killed) removeStaleTracing();
      return code;
    },
  };
}

/** Polls `probe` every 200 ms until it returns something, failing after `timeoutMs` (loaded machines are slow). */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
